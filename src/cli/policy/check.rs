//! `behavry policy check`: compile a set as the wrapper would and report every error.

use std::io::Write;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::{dirs_or_default, eval_timeout, plural, print_errors, require_dirs, shown_dirs, AUTHZ};
use crate::policy::engine::sample_input;
use crate::policy::source::{self, Scan};
use crate::policy::{inspect, PolicySet};

/// Compile policies as `behavry wrap` would load them, and report every error
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry policy check\n  \
    behavry policy check ./team-policies\n\n\
    Errors are printed as FILE:LINE:COL: MESSAGE and the exit status is 1. Files other users can write \
    are errors too (fix: chmod go-w FILE): `behavry wrap` refuses them. `*_test.rego` files are not \
    enforced and not checked here; `behavry policy test` compiles and runs them.")]
pub(super) struct CheckArgs {
    /// Policy directories [default: the policy directory]
    #[arg(value_name = "DIR")]
    dirs: Vec<PathBuf>,
}

pub(super) fn check(args: CheckArgs) -> anyhow::Result<i32> {
    let dirs = dirs_or_default(args.dirs)?;
    if let Err(e) = require_dirs(&dirs) {
        crate::note!("{e}");
        return Ok(1);
    }
    let set = PolicySet::from_scan(source::scan(&dirs, Scan::ENFORCE), eval_timeout()?);
    let mut errors = set.diagnostics().to_vec();
    if let Some(engine) = set.engine() {
        for input in [json!({}), sample_input()] {
            for d in inspect::evaluate_every_rule(engine, &input) {
                if !errors.contains(&d) {
                    errors.push(d);
                }
            }
        }
    }
    if !errors.is_empty() {
        print_errors(&errors);
        let consequence = if set.error().is_some() {
            "`behavry wrap` would deny every governed call until they are fixed"
        } else {
            "calls whose evaluation reaches these rules would be denied"
        };
        eprintln!("{}; {consequence}", plural(errors.len(), "error", "errors"));
        return Ok(1);
    }
    let Some(engine) = set.engine() else {
        return Ok(1);
    };
    let modules = inspect::modules(engine);
    let data = data_documents(&set.data_files);
    let mut out = std::io::stdout().lock();
    let width = modules
        .iter()
        .map(|m| m.file.len())
        .chain(data.iter().map(|(f, _)| f.len()))
        .max()
        .unwrap_or(0);
    let pwidth = modules
        .iter()
        .map(|m| m.package_path().len())
        .max()
        .unwrap_or(0)
        .max("(data)".len());
    let mut packages: Vec<String> = Vec::new();
    let mut rules = 0;
    for m in &modules {
        let names: Vec<String> = m
            .rules
            .iter()
            .map(|r| {
                if r.function {
                    format!("{}()", r.name)
                } else {
                    r.name.clone()
                }
            })
            .collect();
        rules += names.len();
        let package = m.package_path();
        writeln!(
            out,
            "{:<width$}  {package:<pwidth$}  {}",
            m.file,
            names.join(", ")
        )?;
        if !packages.contains(&package) {
            packages.push(package);
        }
    }
    for (file, keys) in &data {
        writeln!(
            out,
            "{file:<width$}  {:<pwidth$}  {}",
            "(data)",
            keys.join(", ")
        )?;
    }
    writeln!(
        out,
        "ok: {}, {}, {}{}; policy hash {}",
        plural(modules.len(), "file", "files"),
        plural(packages.len(), "package", "packages"),
        plural(rules, "rule", "rules"),
        match data.len() {
            0 => String::new(),
            n => format!(", {}", plural(n, "data document", "data documents")),
        },
        set.hash
    )?;
    if modules.is_empty() {
        eprintln!(
            "warning: no policy files in {}: every governed call would be denied (default deny)",
            shown_dirs(&dirs)
        );
    } else if !modules.iter().any(|m| m.package == AUTHZ) {
        eprintln!(
            "warning: no file declares `package behavry.authz`, so no rule allows anything: every governed call would be denied"
        );
    }
    Ok(0)
}

/// Each data document's name and top-level keys.
fn data_documents(files: &[PathBuf]) -> Vec<(String, Vec<String>)> {
    files
        .iter()
        .map(|f| {
            let keys = std::fs::read_to_string(f)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
                .unwrap_or_default();
            (f.display().to_string(), keys)
        })
        .collect()
}
