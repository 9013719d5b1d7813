//! `behavry policy`: check, evaluate, test, install and list Rego policies. Every command loads
//! and compiles files exactly as `behavry wrap` does ([`crate::policy::source`],
//! [`PolicySet`]), so what these commands accept is what the wrapper enforces.
//!
//! Results go to stdout; errors and warnings to stderr. Exit codes: 0 success, 1 when a check
//! finds errors, a test fails, or an add is refused (2 is clap's, for bad usage).

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{Config, Paths};
use crate::policy::diagnostic::shell_quote;
use crate::policy::engine::{new_engine, sample_input};
use crate::policy::input::{self, Governed};
use crate::policy::source::{self, Kind, Scan, SourceFile};
use crate::policy::{inspect, testing, Diagnostic, PolicySet};

/// The package whose rules decide calls, as `package` lines spell it.
const AUTHZ: &[&str] = &["behavry", "authz"];

/// A test may take longer than a decision on the proxy path, but not forever.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Check, try out, test and install Rego policies
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry policy check\n  \
    behavry policy eval --input input.json\n  \
    behavry policy test policies/\n  \
    behavry policy add my-first-policy.rego\n  \
    behavry policy list\n\n\
    Policies are .rego files (rules in `package behavry.authz`: allow, deny, escalate, reasons) and .json \
    data documents (merged into `data`) in the policy directory (`behavry paths`). Running wrappers reload \
    them when they change; a set that does not compile never replaces a good one.")]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    Check(CheckArgs),
    Eval(EvalArgs),
    Test(TestArgs),
    Add(AddArgs),
    List(ListArgs),
}

/// Compile policies as `behavry wrap` would load them, and report every error
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry policy check\n  \
    behavry policy check ./team-policies\n\n\
    Errors are printed as FILE:LINE:COL: MESSAGE and the exit status is 1. Files other users can write \
    are errors too (fix: chmod go-w FILE): `behavry wrap` refuses them. `*_test.rego` files are not \
    enforced and not checked here; `behavry policy test` compiles and runs them.")]
struct CheckArgs {
    /// Policy directories [default: the policy directory]
    #[arg(value_name = "DIR")]
    dirs: Vec<PathBuf>,
}

/// Decide one input (or one MCP request) and show why
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry policy eval --input input.json\n  \
    behavry policy eval --input input.json --policies policies/examples --json\n  \
    behavry policy eval --mcp call.json --server filesystem\n  \
    behavry policy eval --mcp call.json --server filesystem --print-input > input.json\n\n\
    --input takes the policy input object (agent, action, resource, session, requester). --mcp takes a \
    raw JSON-RPC request (tools/call, resources/read or prompts/get) and builds the input the wrapper \
    would, from config.toml, CLAUDE_PROJECT_DIR and the current directory. FILE may be - for stdin.\n\n\
    --json prints {\"decision\": \"...\", \"allow\": bool, \"deny\": bool, \"escalate\": bool, \"reasons\": [...]}.")]
struct EvalArgs {
    /// The policy input, as JSON
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "mcp",
        conflicts_with = "mcp"
    )]
    input: Option<PathBuf>,
    /// A raw MCP request to build the input from
    #[arg(long, value_name = "FILE", requires = "server")]
    mcp: Option<PathBuf>,
    /// The server name the request is for (`input.resource.server`), with --mcp
    #[arg(long, value_name = "NAME", requires = "mcp")]
    server: Option<String>,
    /// Load policies from DIR instead of the policy directory (repeatable)
    #[arg(long = "policies", value_name = "DIR")]
    policies: Vec<PathBuf>,
    /// Print the decision as one JSON object
    #[arg(long)]
    json: bool,
    /// Print the input built from --mcp and stop
    #[arg(long, requires = "mcp", conflicts_with = "json")]
    print_input: bool,
}

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
struct TestArgs {
    /// Policy directories [default: the policy directory]
    #[arg(value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Also list the tests that passed
    #[arg(short, long)]
    verbose: bool,
}

/// Validate a policy file with the installed set, then install it
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry policy add my-first-policy.rego\n  \
    behavry policy add ./prod-guard.rego --name prod\n  \
    behavry policy add allowlist.json\n\n\
    The file is compiled together with every policy already installed; only if the whole set compiles \
    is it written (atomically, mode 0644) into the policy directory, replacing a file of the same name. \
    Otherwise nothing changes and the errors are printed. Running wrappers reload it within a second.")]
struct AddArgs {
    /// The .rego policy (or .json data document) to install
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Install under this name [default: the file's name]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

/// Show installed policy files with their packages and hashes
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry policy list\n  \
    behavry policy list ./team-policies\n\n\
    The policy hash at the end is the `policy_hash` that `behavry log` records for decisions made by \
    wrappers that load only that directory.")]
struct ListArgs {
    /// Policy directories [default: the policy directory]
    #[arg(value_name = "DIR")]
    dirs: Vec<PathBuf>,
}

pub fn run(args: PolicyArgs) -> anyhow::Result<i32> {
    match args.command {
        PolicyCommand::Check(args) => check(args),
        PolicyCommand::Eval(args) => eval(args),
        PolicyCommand::Test(args) => test(args),
        PolicyCommand::Add(args) => add(args),
        PolicyCommand::List(args) => list(args),
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

fn check(args: CheckArgs) -> anyhow::Result<i32> {
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

fn shown_dirs(dirs: &[PathBuf]) -> String {
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    shown.join(", ")
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

/// The decision as `--json` prints it; the field order is part of the contract.
#[derive(Serialize)]
struct EvalOutput<'a> {
    decision: &'a str,
    allow: bool,
    deny: bool,
    escalate: bool,
    reasons: &'a [String],
}

fn eval(args: EvalArgs) -> anyhow::Result<i32> {
    let paths = Paths::resolve()?;
    let config = Config::load(&paths.config_file())?;
    let dirs = if args.policies.is_empty() {
        vec![paths.policy_dir()]
    } else {
        args.policies
    };
    let (input, built) = match (&args.input, &args.mcp) {
        (Some(file), _) => (read_json(file)?, false),
        (None, Some(file)) => {
            let server = args.server.clone().unwrap_or_default();
            (
                input_from_mcp(&read_json(file)?, &server, &config, &paths, &dirs)?,
                true,
            )
        }
        (None, None) => bail!("give --input FILE or --mcp FILE --server NAME"),
    };
    let mut out = std::io::stdout().lock();
    if args.print_input {
        writeln!(out, "{}", serde_json::to_string_pretty(&input)?)?;
        return Ok(0);
    }
    let set = PolicySet::load(&dirs, Duration::from_millis(config.wrap.eval_timeout_ms));
    if !set.diagnostics().is_empty() {
        print_errors(set.diagnostics());
        eprintln!(
            "the policies in {} do not compile; `behavry wrap` would deny every governed call",
            shown_dirs(&dirs)
        );
        return Ok(1);
    }
    if set.files.is_empty() {
        eprintln!(
            "warning: no policy files in {}: every call is denied (default deny)",
            shown_dirs(&dirs)
        );
    }
    let verdict = set.decide(&input);
    if args.json {
        let output = EvalOutput {
            decision: verdict.decision.as_str(),
            allow: verdict.allow,
            deny: verdict.deny,
            escalate: verdict.escalate,
            reasons: &verdict.reasons,
        };
        writeln!(out, "{}", serde_json::to_string(&output)?)?;
        return Ok(0);
    }
    if built {
        writeln!(out, "input:\n{}\n", serde_json::to_string_pretty(&input)?)?;
    }
    writeln!(out, "decision: {}", verdict.decision.as_str())?;
    writeln!(out, "  allow:    {}", verdict.allow)?;
    writeln!(out, "  deny:     {}", verdict.deny)?;
    writeln!(out, "  escalate: {}", verdict.escalate)?;
    if verdict.reasons.is_empty() {
        let why = match (verdict.deny, verdict.escalate, verdict.allow) {
            (false, false, false) => "reasons: none (no rule allowed it: default deny)",
            _ => "reasons: none",
        };
        writeln!(out, "{why}")?;
    } else {
        writeln!(out, "reasons:")?;
        for reason in &verdict.reasons {
            writeln!(out, "  - {reason}")?;
        }
    }
    Ok(0)
}

fn read_json(file: &Path) -> anyhow::Result<Value> {
    let shown = file.display();
    let text = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read stdin")?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {shown}"))?
    };
    serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{shown}:{}:{}: not valid JSON: {e}", e.line(), e.column()))
}

/// Builds the input `behavry wrap --name SERVER` would build for `request`.
fn input_from_mcp(
    request: &Value,
    server: &str,
    config: &Config,
    paths: &Paths,
    dirs: &[PathBuf],
) -> anyhow::Result<Value> {
    if server.is_empty() || server.contains('/') {
        bail!("--server {server:?} must be non-empty and contain no '/'");
    }
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    let governed = match Governed::from_request(method, request.get("params")) {
        Some(Ok(governed)) => governed,
        Some(Err(reason)) => bail!("the wrapper would deny this request as malformed: {reason}"),
        None => bail!(
            "{method:?} is not a governed request (tools/call, resources/read, prompts/get); the wrapper relays it without asking the policy"
        ),
    };
    let ctx = config.input_context(server, "policy-eval".into(), paths.behavry_dirs(dirs));
    // Paths are canonicalised exactly as the wrapper does, symlinks and own-file refusal included.
    let resolver = crate::policy::canon::Resolver::new(
        ctx.cwd.clone(),
        ctx.home.clone(),
        paths.own_dirs(dirs),
    );
    let resolved = resolver.resolve_call(&input::path_args(&governed, None));
    let facts = input::Facts {
        paths: &resolved,
        ..input::Facts::default()
    };
    let built = input::build(&ctx, &governed, &facts);
    if let Some(why) = built.refused {
        bail!("the wrapper would deny this request before evaluating any policy: {why}");
    }
    Ok(built.input)
}

fn test(args: TestArgs) -> anyhow::Result<i32> {
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

fn add(args: AddArgs) -> anyhow::Result<i32> {
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

    // The set as it would be: everything installed, with this file in place of any namesake.
    let mut sources = source::scan(std::slice::from_ref(&dir), Scan::ENFORCE);
    sources.files.retain(|f| f.path != dest);
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
            // A file that writes decision rules in another package (an example not yet switched
            // over) decides nothing; a helper library in its own package is fine.
            let misplaced = inspect::modules(engine)
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

    let replaced = dest.exists();
    install(&dir, &name, text.as_bytes())
        .with_context(|| format!("cannot install {}", dest.display()))?;
    let now = PolicySet::load(std::slice::from_ref(&dir), timeout);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} {} (sha256 {})",
        if replaced { "replaced" } else { "installed" },
        dest.display(),
        &source::sha256(&text)[..12]
    )?;
    writeln!(
        out,
        "policy hash {}; running `behavry wrap` processes reload it within a second",
        now.hash
    )?;
    Ok(0)
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

fn list(args: ListArgs) -> anyhow::Result<i32> {
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
