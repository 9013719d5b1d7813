//! `behavry policy add`: validate a file with the installed set, then install it atomically.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use super::{eval_timeout, print_errors, AUTHZ};
use crate::config::Paths;
use crate::policy::diagnostic::shell_quote;
use crate::policy::source::{self, Kind, Scan, SourceFile};
use crate::policy::{inspect, PolicySet};

/// Validate a policy file with the installed set, then install it
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry policy add my-first-policy.rego\n  \
    behavry policy add ./prod-guard.rego --name prod\n  \
    behavry policy add allowlist.json\n  \
    behavry policy add policies/examples/seed.rego --replace base.rego\n\n\
    The file is compiled together with every policy already installed; only if the whole set compiles \
    is it written (atomically, mode 0644) into the policy directory, replacing a file of the same name. \
    Otherwise nothing changes and the errors are printed. Running wrappers reload it within a second.\n\n\
    Files in the same package add up: a new file in `package behavry.authz` next to an installed one \
    puts the rules of both in force, and `add` warns about it. --replace FILE installs the new file \
    instead of FILE: the set is checked without FILE, the new file is written, then FILE is removed.\n\n\
    Before installing, the new set is replayed against the calls of the last 7 days (`behavry policy \
    replay`); if any decision would change, the summary is shown and, on a terminal, you are asked \
    to confirm (--yes skips the question).")]
pub(super) struct AddArgs {
    /// The .rego policy (or .json data document) to install
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Install under this name [default: the file's name]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Remove this installed file (a name in the policy directory, e.g. base.rego) once FILE is in
    /// place, so FILE takes its place instead of adding to it
    #[arg(long, value_name = "FILE")]
    replace: Option<PathBuf>,
    /// Do not ask before installing a policy that changes decisions of the last 7 days
    #[arg(long)]
    yes: bool,
}

pub(super) fn add(args: AddArgs) -> anyhow::Result<i32> {
    let paths = Paths::resolve()?;
    let timeout = eval_timeout()?;
    let file = &args.file;
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {shown}"))?;
    let Some(kind) = source::kind_of(file, true) else {
        bail!("{shown}: only .rego policies and .json data documents can be added (and not hidden files)");
    };
    let name = install_name(file, args.name.as_deref(), kind)?;
    let dir = paths.policy_dir();
    let dest = dir.join(&name);
    if let Some(problem) = writable_by_others(&dir) {
        crate::note!("{problem}");
        return Ok(1);
    }
    // The file being replaced, unless it is the namesake the write itself replaces.
    let old = match &args.replace {
        Some(replace) => Some(installed_file(&dir, replace)?).filter(|old| *old != dest),
        None => None,
    };

    // The set as it would be: everything installed, with this file in place of any namesake and
    // of the file it replaces.
    let mut sources = source::scan(std::slice::from_ref(&dir), Scan::ENFORCE);
    sources
        .files
        .retain(|f| f.path != dest && Some(&f.path) != old.as_ref());
    sources.files.push(SourceFile {
        path: file.clone(),
        kind,
        text: text.clone(),
    });
    let set = PolicySet::from_scan(sources, timeout);
    if !set.diagnostics().is_empty() {
        print_errors(set.diagnostics());
        eprintln!(
            "not installed: with {shown}, the policies in {} would not compile; nothing was changed",
            dir.display()
        );
        return Ok(1);
    }
    if kind == Kind::Rego && !name.ends_with("_test.rego") {
        if let Some(engine) = set.engine() {
            let modules = inspect::modules(engine);
            if let Some(new) = modules.iter().find(|m| m.file == shown) {
                let sharing: Vec<String> = modules
                    .iter()
                    .filter(|m| m.file != shown && m.package == new.package)
                    .map(|m| relative_name(&dir, &m.file))
                    .collect();
                if let Some(first) = sharing.first() {
                    // Rego merges files of one package: both sets of rules now decide together,
                    // which is rarely what "add this policy" meant.
                    eprintln!(
                        "warning: {shown} declares `package {}`, as {} already {}; the rules of both are in force together. \
                         To install it instead of {first}, run: behavry policy add {} --replace {}",
                        new.package.join("."),
                        sharing.join(", "),
                        if sharing.len() == 1 { "does" } else { "do" },
                        shell_quote(&shown),
                        shell_quote(first)
                    );
                }
            }
            // A file that writes decision rules in another package (an example not yet switched
            // over) decides nothing; a helper library in its own package is fine.
            let misplaced = modules
                .into_iter()
                .find(|m| m.file == shown)
                .filter(|m| m.package != AUTHZ)
                .filter(|m| {
                    m.rules
                        .iter()
                        .any(|r| ["allow", "deny", "escalate"].contains(&r.name.as_str()))
                })
                .map(|m| m.package);
            if let Some(package) = misplaced {
                eprintln!(
                    "warning: {shown} declares `package {}`; only rules in `package behavry.authz` decide calls",
                    package.join(".")
                );
            }
        }
    }

    if !confirm_replay(&set, args.yes)? {
        eprintln!("not installed: nothing was changed");
        return Ok(1);
    }
    let replaced = dest.exists();
    install(&dir, &name, text.as_bytes())
        .with_context(|| format!("cannot install {}", dest.display()))?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} {} (sha256 {})",
        if replaced { "replaced" } else { "installed" },
        dest.display(),
        &source::sha256(&text)[..12]
    )?;
    if let Some(old) = &old {
        // After the write, so a wrapper reloading in between sees both files (and keeps its
        // previous set if the two do not compile together), never neither.
        std::fs::remove_file(old).with_context(|| {
            format!(
                "{} is installed, but {} could not be removed, so both are in force; remove it with: rm {}",
                dest.display(),
                old.display(),
                shell_quote(&old.display().to_string())
            )
        })?;
        writeln!(out, "removed {} (replaced by {name})", old.display())?;
    }
    let now = PolicySet::load(std::slice::from_ref(&dir), timeout);
    writeln!(
        out,
        "policy hash {}; running `behavry wrap` processes reload it within a second",
        now.hash
    )?;
    Ok(0)
}

/// Replays the last 7 days against the set as it would be and shows what would change; whether
/// to go on (always with `yes`, else a person at the terminal says so).
fn confirm_replay(set: &PolicySet, yes: bool) -> anyhow::Result<bool> {
    const WEEK: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
    let Some(report) = super::replay::run(set, WEEK, None)? else {
        return Ok(true);
    };
    let mut err = std::io::stderr().lock();
    if report.changed.is_empty() {
        writeln!(err, "replay of the last 7 days: {}", report.summary())?;
        return Ok(true);
    }
    writeln!(err, "replay of the last 7 days:")?;
    super::replay::print(&mut err, &report, 3)?;
    // Without a person at a terminal (a script, CI) the summary is all: nobody could answer.
    use std::io::IsTerminal;
    if yes || !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    write!(err, "install anyway? [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// The file name to install under: `--name` (with the file's extension added when missing), or
/// the file's own name. Never a path, never hidden.
fn install_name(file: &Path, name: Option<&str>, kind: Kind) -> anyhow::Result<String> {
    let ext = match kind {
        Kind::Rego => ".rego",
        Kind::Data => ".json",
    };
    let name = match name {
        Some(name) if name.ends_with(ext) => name.to_owned(),
        Some(name) => format!("{name}{ext}"),
        None => file
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("{}: no file name", file.display()))?,
    };
    if name.contains('/') || name.starts_with('.') || name.len() == ext.len() {
        bail!("--name {name:?} must be a plain file name (no '/', not hidden, not empty)");
    }
    Ok(name)
}

/// The installed file `--replace` names: a path relative to the policy directory (or an absolute
/// path inside it), naming an existing policy or data file. Never a path that climbs out.
fn installed_file(dir: &Path, replace: &Path) -> anyhow::Result<PathBuf> {
    use std::path::Component;
    let shown = replace.display();
    let inside = if replace.is_absolute() {
        replace.strip_prefix(dir).ok()
    } else {
        Some(replace)
    };
    let Some(relative) =
        inside.filter(|p| p.components().all(|c| matches!(c, Component::Normal(_))))
    else {
        bail!(
            "--replace {shown}: not a file in the policy directory {}; give its name as `behavry policy list` shows it",
            dir.display()
        );
    };
    let path = dir.join(relative);
    if !path.is_file() || source::kind_of(&path, true).is_none() {
        bail!(
            "--replace {shown}: no policy file {} is installed; `behavry policy list` shows what is",
            path.display()
        );
    }
    Ok(path)
}

/// `file` as a name relative to the policy directory when it is inside it (how `--replace`
/// takes it).
fn relative_name(dir: &Path, file: &str) -> String {
    Path::new(file)
        .strip_prefix(dir)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| file.to_owned())
}

/// The refusal for a policy directory that group or others can write (the wrapper would refuse
/// everything in it).
fn writable_by_others(dir: &Path) -> Option<String> {
    let mode = std::fs::metadata(dir).ok()?.permissions().mode();
    (mode & 0o022 != 0).then(|| {
        format!(
            "not installed: {} is writable by group or others (mode {:04o}), so `behavry wrap` would refuse it. Fix: chmod go-w {}",
            dir.display(),
            mode & 0o7777,
            shell_quote(&dir.display().to_string())
        )
    })
}

/// Writes `dir/name` atomically: a hidden temporary file (which the wrapper's scan skips), synced,
/// then renamed over the destination. On failure nothing is left behind.
fn install(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(bytes)?;
        // The umask may have narrowed the mode; 0644 exactly (readable, writable only by us).
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
