//! `behavry policy test`: run the `test_*` rules (OPA's convention).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::{dirs_or_default, print_errors, require_dirs, shown_dirs};
use crate::policy::source::{self, Scan};
use crate::policy::{testing, PolicySet};

/// A test may take longer than a decision on the proxy path, but not forever.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Run the `test_*` rules in policy directories (OPA's convention)
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry policy test\n  \
    behavry policy test policies/ --verbose\n\n\
    Every `test_*` rule in every .rego file (including `*_test.rego`) is a test; it passes when it is \
    defined and not false. Give it input with `with input as {...}`. `data.behavry.decision.decision` is \
    the final decision (\"allow\", \"deny\" or \"escalate\") as the wrapper combines your rules:\n\n  \
    test_prod_writes_denied if {\n      \
    data.behavry.decision.decision == \"deny\" with input as {\"action\": {\"type\": \"write\"}, \"resource\": {\"path\": \"/prod/x\"}}\n  \
    }\n\n\
    The last line is `N passed, N failed`; the exit status is 1 if any test failed.")]
pub(super) struct TestArgs {
    /// Policy directories [default: the policy directory]
    #[arg(value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Also list the tests that passed
    #[arg(short, long)]
    verbose: bool,
}

pub(super) fn test(args: TestArgs) -> anyhow::Result<i32> {
    let dirs = dirs_or_default(args.dirs)?;
    if let Err(e) = require_dirs(&dirs) {
        crate::note!("{e}");
        return Ok(1);
    }
    let set = PolicySet::from_scan(source::scan(&dirs, Scan::TEST), TEST_TIMEOUT);
    let Some(engine) = set.engine() else {
        print_errors(set.diagnostics());
        eprintln!("the policies do not compile; no test was run");
        return Ok(1);
    };
    let cases = testing::cases(engine);
    let mut out = std::io::stdout().lock();
    let (mut passed, mut failed) = (0, 0);
    for case in &cases {
        let report = testing::run(engine, case);
        let at = format!("{}:{}", case.file, case.line);
        match &report.outcome {
            testing::Outcome::Pass => {
                passed += 1;
                if args.verbose {
                    let ms = report.elapsed.as_secs_f64() * 1000.0;
                    writeln!(out, "PASS {at}: {} ({ms:.1} ms)", case.path)?;
                }
            }
            testing::Outcome::Fail { value } => {
                failed += 1;
                writeln!(out, "FAIL {at}: {} ({value})", case.path)?;
            }
            testing::Outcome::Error(d) => {
                failed += 1;
                writeln!(out, "FAIL {at}: {} (error)", case.path)?;
                for line in d.render().lines() {
                    writeln!(out, "    {line}")?;
                }
            }
        }
    }
    if cases.is_empty() {
        eprintln!("warning: no test_* rules in {}", shown_dirs(&dirs));
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(if failed > 0 { 1 } else { 0 })
}
