//! The fuzz targets on the stable toolchain: every seed in `fuzz/corpus/<target>/`, then random
//! mutations of them, through the same functions the `cargo fuzz` targets call
//! (`fuzz/harness.rs`). Not coverage-guided, so it is a smoke run, not a substitute: see
//! docs/hardening.md for running the real fuzzers.
//!
//! `BEHAVRY_FUZZ_ITERS=<n>` sets the mutations per target (default 3000); `BEHAVRY_FUZZ_SEED`
//! picks the random sequence (default: fixed, so a CI failure reproduces).

#[path = "../../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

/// Byte strings that make interesting mutations for a JSON/path parser.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"\\udc00",
    b"\\u0000",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"\n",
    b"\r\n",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"%",
    b"%25",
    b"%2e%2e",
    b"%00",
    b"..",
    b"/",
    b"~",
    b"file://",
    b"FILE:///",
    b"-0",
    b"1.0",
    b"1e999",
    b"18446744073709551616",
    b"\"method\"",
    b"\"id\"",
    b"\"tools/call\"",
    b"\"params\"",
    b"\"arguments\"",
    b"\"path\"",
    b"null",
    b"true",
    b"link",
    b"own",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: plenty for picking mutations.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(7) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 => input.insert(at, rng.next() as u8),
            2 if !input.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(input.len());
                input.drain(at.min(end)..end);
            }
            3 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                input.splice(at..at, token.iter().copied());
            }
            4 if !input.is_empty() => {
                // Repeat a chunk (nesting, long runs).
                let start = rng.below(input.len());
                let end = (start + 1 + rng.below(16)).min(input.len());
                let chunk = input[start..end].to_vec();
                for _ in 0..1 + rng.below(64) {
                    input.splice(at..at, chunk.iter().copied());
                }
            }
            5 => {
                // Splice in part of another seed.
                let other = &seeds[rng.below(seeds.len())];
                let start = rng.below(other.len());
                let end = (start + rng.below(64)).min(other.len());
                input.splice(at..at, other[start..end].iter().copied());
            }
            _ => input.truncate(at),
        }
    }
    input.truncate(1 << 16);
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("read seed"))
        .collect();
    assert!(seeds.len() >= 20, "{target}: the corpus shrank");
    seeds
}

fn iterations() -> usize {
    std::env::var("BEHAVRY_FUZZ_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000)
}

/// Runs the seeds and `iterations()` mutations; on a panic, prints the input that caused it.
fn smoke(target: &str, run: fn(&[u8])) {
    let seeds = corpus(target);
    let seed = std::env::var("BEHAVRY_FUZZ_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0x5EED_BEAF_u64);
    let mut rng = Rng(seed | 1);
    let total = seeds.len() + iterations();
    for i in 0..total {
        let input = match seeds.get(i) {
            Some(s) => s.clone(),
            None => {
                let mut input = seeds[rng.below(seeds.len())].clone();
                mutate(&mut rng, &seeds, &mut input);
                input
            }
        };
        let result = std::panic::catch_unwind(|| run(&input));
        if result.is_err() {
            panic!(
                "{target}: execution {i} (seed {seed}) panicked on input {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
    eprintln!("{target}: {total} executions, 0 crashes");
}

#[test]
fn frame_message_smoke() {
    smoke("frame_message", harness::frame_message);
}

#[test]
fn input_canon_smoke() {
    smoke("input_canon", harness::input_canon);
}
