//! Path extraction + canonicaliser + policy input builder, on arbitrary tool arguments.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::input_canon(data));
