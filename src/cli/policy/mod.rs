//! `behavry policy`: check, evaluate, benchmark, test, install and list Rego policies, one
//! subcommand per file. Every command loads
//! and compiles files exactly as `behavry wrap` does ([`crate::policy::source`],
//! [`PolicySet`]), so what these commands accept is what the wrapper enforces.
//!
//! Results go to stdout; errors and warnings to stderr. Exit codes: 0 success, 1 when a check
//! finds errors, a test fails, or an add is refused (2 is clap's, for bad usage).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;

use crate::config::{Config, Paths};
use crate::policy::Diagnostic;

mod add;
mod bench;
mod check;
mod eval;
mod list;
mod replay;
mod test;

/// The package whose rules decide calls, as `package` lines spell it.
const AUTHZ: &[&str] = &["behavry", "authz"];

/// Check, try out, test and install Rego policies
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry policy check\n  \
    behavry policy eval --input input.json\n  \
    behavry policy bench --input input.json -n 10000\n  \
    behavry policy test policies/\n  \
    behavry policy add my-first-policy.rego\n  \
    behavry policy list\n  \
    behavry policy replay --policies ./candidate\n\n\
    Policies are .rego files (rules in `package behavry.authz`: allow, deny, escalate, reasons) and .json \
    data documents (merged into `data`) in the policy directory (`behavry paths`). Running wrappers reload \
    them when they change; a set that does not compile never replaces a good one.")]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    Check(check::CheckArgs),
    Eval(eval::EvalArgs),
    Bench(bench::BenchArgs),
    Test(test::TestArgs),
    Add(add::AddArgs),
    List(list::ListArgs),
    Replay(replay::ReplayArgs),
}

pub fn run(args: PolicyArgs) -> anyhow::Result<i32> {
    match args.command {
        PolicyCommand::Check(args) => check::check(args),
        PolicyCommand::Eval(args) => eval::eval(args),
        PolicyCommand::Bench(args) => bench::bench(args),
        PolicyCommand::Test(args) => test::test(args),
        PolicyCommand::Add(args) => add::add(args),
        PolicyCommand::List(args) => list::list(args),
        PolicyCommand::Replay(args) => replay::replay(args),
    }
}

/// The directories given, or the policy directory.
fn dirs_or_default(dirs: Vec<PathBuf>) -> anyhow::Result<Vec<PathBuf>> {
    if dirs.is_empty() {
        Ok(vec![Paths::resolve()?.policy_dir()])
    } else {
        Ok(dirs)
    }
}

/// Directories a command was asked to read must exist (a typo should not pass as "no policies").
fn require_dirs(dirs: &[PathBuf]) -> Result<(), String> {
    for dir in dirs {
        if !dir.is_dir() {
            let hint = if dir.exists() {
                "is not a directory"
            } else {
                "does not exist (install a policy with `behavry policy add FILE`)"
            };
            return Err(format!("{} {hint}", dir.display()));
        }
    }
    Ok(())
}

/// The evaluation time limit `behavry wrap` uses, from config.toml.
fn eval_timeout() -> anyhow::Result<Duration> {
    let config = Config::load(&Paths::resolve()?.config_file())?;
    Ok(Duration::from_millis(config.wrap.eval_timeout_ms))
}

fn print_errors(errors: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in errors {
        let _ = writeln!(err, "{}", d.render());
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn shown_dirs(dirs: &[PathBuf]) -> String {
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    shown.join(", ")
}
