//! Frame reader + strict parser + message checks, on arbitrary client bytes.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::frame_message(data));
