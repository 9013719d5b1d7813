//! `behavry policy list`: installed files with their packages and hashes.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::{dirs_or_default, eval_timeout, plural, require_dirs};
use crate::policy::diagnostic::shell_quote;
use crate::policy::engine::new_engine;
use crate::policy::source::{self, Kind, Scan, SourceFile};
use crate::policy::PolicySet;

/// Show installed policy files with their packages and hashes
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry policy list\n  \
    behavry policy list ./team-policies\n\n\
    The policy hash at the end is the `policy_hash` that `behavry log` records for decisions made by \
    wrappers that load only that directory.")]
pub(super) struct ListArgs {
    /// Policy directories [default: the policy directory]
    #[arg(value_name = "DIR")]
    dirs: Vec<PathBuf>,
}

pub(super) fn list(args: ListArgs) -> anyhow::Result<i32> {
    let dirs = dirs_or_default(args.dirs)?;
    if let Err(e) = require_dirs(&dirs) {
        crate::note!("{e}");
        return Ok(1);
    }
    let timeout = eval_timeout()?;
    let mut out = std::io::stdout().lock();
    for dir in &dirs {
        let all = source::scan(
            std::slice::from_ref(dir),
            Scan {
                include_tests: true,
                check_permissions: true,
            },
        );
        writeln!(out, "{}", dir.display())?;
        let rows: Vec<(String, String, String)> = all
            .files
            .iter()
            .map(|f| {
                let name = f
                    .path
                    .strip_prefix(dir)
                    .unwrap_or(&f.path)
                    .display()
                    .to_string();
                (name, describe(f), source::sha256(&f.text)[..12].to_owned())
            })
            .collect();
        let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
        let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(7);
        if rows.is_empty() {
            writeln!(out, "  (no policy files)")?;
        } else {
            writeln!(out, "  {:<w0$}  {:<w1$}  SHA-256", "FILE", "PACKAGE")?;
            for (name, what, hash) in rows {
                writeln!(out, "  {name:<w0$}  {what:<w1$}  {hash}")?;
            }
        }
        for problem in &all.problems {
            eprintln!("warning: {problem}");
        }
        let set = PolicySet::load(std::slice::from_ref(dir), timeout);
        match set.error() {
            None => writeln!(out, "  policy hash {}", set.hash)?,
            Some(_) => writeln!(
                out,
                "  does not compile ({}); run `behavry policy check {}`",
                plural(set.diagnostics().len(), "error", "errors"),
                shell_quote(&dir.display().to_string())
            )?,
        }
    }
    Ok(0)
}

/// A file's package (or what it is, when it has none), for `policy list`.
fn describe(file: &SourceFile) -> String {
    match file.kind {
        Kind::Data => "(data document)".into(),
        Kind::Rego => {
            let mut engine = new_engine(Duration::from_secs(1));
            let package = engine
                .add_policy(file.name(), file.text.clone())
                .map(|p| p.trim_start_matches("data.").to_owned())
                .unwrap_or_else(|_| "(syntax error)".into());
            if file.is_test() {
                format!("{package} (tests)")
            } else {
                package
            }
        }
    }
}
