//! `behavry policy bench`: how long the user's policy set takes to decide one input.

use std::io::Write;
use std::time::{Duration, Instant};

use super::eval::{load_set, InputArgs};

/// Decide one input many times and print how long a decision takes
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry policy bench --input input.json\n  \
    behavry policy bench --mcp call.json --server filesystem -n 10000\n  \
    behavry policy bench --input input.json --policies ./team-policies\n\n\
    The input is given as for `behavry policy eval` (--input, or --mcp with --server; - reads stdin). \
    Each evaluation is the one `behavry wrap` runs for a call (once per path the call names), after \
    a warm-up of a tenth as many. Output:\n\n  \
    decision: allow\n  \
    10000 evaluations: p50 14.2 µs  p99 25.0 µs  mean 15.1 µs  max 90.3 µs\n\n\
    Times depend on the machine and its load; compare policies on the same machine in the same minute.")]
pub(super) struct BenchArgs {
    #[command(flatten)]
    given: InputArgs,
    /// How many evaluations to time
    #[arg(short = 'n', long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,
}

pub(super) fn bench(args: BenchArgs) -> anyhow::Result<i32> {
    let given = args.given.load()?;
    let set = match load_set(&given) {
        Ok(set) => set,
        Err(code) => return Ok(code),
    };
    let input = &given.input;
    let verdict = set.decide(input);
    for _ in 0..args.count / 10 {
        std::hint::black_box(set.decide(input));
    }
    let mut times: Vec<Duration> = (0..args.count)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(set.decide(std::hint::black_box(input)));
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    // Nearest rank: the smallest time with at least p% of the evaluations at or below it.
    let pct = |p: usize| us(times[(p * times.len()).div_ceil(100).clamp(1, times.len()) - 1]);
    let mean = us(times.iter().sum::<Duration>()) / times.len() as f64;
    let max = times.last().map_or(0.0, |d| us(*d));
    let mut out = std::io::stdout().lock();
    writeln!(out, "decision: {}", verdict.decision.as_str())?;
    writeln!(
        out,
        "{} evaluations: p50 {:.1} µs  p99 {:.1} µs  mean {mean:.1} µs  max {max:.1} µs",
        times.len(),
        pct(50),
        pct(99)
    )?;
    Ok(0)
}
