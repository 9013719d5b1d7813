//! `behavry policy eval`: decide one input (or one MCP request) and show why.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Serialize;
use serde_json::Value;

use super::{print_errors, shown_dirs};
use crate::config::{Config, Paths};
use crate::policy::input::{self, Governed};
use crate::policy::PolicySet;

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
pub(super) struct EvalArgs {
    #[command(flatten)]
    given: InputArgs,
    /// Print the decision as one JSON object
    #[arg(long)]
    json: bool,
    /// Print the input built from --mcp and stop
    #[arg(long, requires = "mcp", conflicts_with = "json")]
    print_input: bool,
}

/// The ways of giving `eval` and `bench` an input, and the policies to decide it with.
#[derive(Debug, clap::Args)]
pub(super) struct InputArgs {
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
}

/// An input given on the command line, with what is needed to decide it.
pub(super) struct Given {
    pub input: Value,
    /// The input was built from an MCP request (so it is worth showing).
    pub built: bool,
    pub dirs: Vec<PathBuf>,
    pub config: Config,
}

impl InputArgs {
    /// Reads (or builds, from `--mcp`) the input, and the policy directories to load.
    pub(super) fn load(&self) -> anyhow::Result<Given> {
        let paths = Paths::resolve()?;
        let config = Config::load(&paths.config_file())?;
        let dirs = if self.policies.is_empty() {
            vec![paths.policy_dir()]
        } else {
            self.policies.clone()
        };
        let (input, built) = match (&self.input, &self.mcp) {
            (Some(file), _) => (read_json(file)?, false),
            (None, Some(file)) => {
                let server = self.server.clone().unwrap_or_default();
                (
                    input_from_mcp(&read_json(file)?, &server, &config, &paths, &dirs)?,
                    true,
                )
            }
            (None, None) => bail!("give --input FILE or --mcp FILE --server NAME"),
        };
        Ok(Given {
            input,
            built,
            dirs,
            config,
        })
    }
}

/// Loads the set as the wrapper would; `Err` with the exit code after reporting why it is unusable.
pub(super) fn load_set(given: &Given) -> Result<PolicySet, i32> {
    let set = PolicySet::load(
        &given.dirs,
        Duration::from_millis(given.config.wrap.eval_timeout_ms),
    );
    if !set.diagnostics().is_empty() {
        print_errors(set.diagnostics());
        eprintln!(
            "the policies in {} do not compile; `behavry wrap` would deny every governed call",
            shown_dirs(&given.dirs)
        );
        return Err(1);
    }
    if set.files.is_empty() {
        eprintln!(
            "warning: no policy files in {}: every call is denied (default deny)",
            shown_dirs(&given.dirs)
        );
    }
    Ok(set)
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

pub(super) fn eval(args: EvalArgs) -> anyhow::Result<i32> {
    let given = args.given.load()?;
    let (input, built) = (&given.input, given.built);
    let mut out = std::io::stdout().lock();
    if args.print_input {
        writeln!(out, "{}", serde_json::to_string_pretty(input)?)?;
        return Ok(0);
    }
    let set = match load_set(&given) {
        Ok(set) => set,
        Err(code) => return Ok(code),
    };
    let verdict = set.decide(input);
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
        // JSON escapes C0 controls but not DEL, C1 or format characters: the text form is for a
        // person's terminal (`--json` keeps the exact text).
        let pretty = serde_json::to_string_pretty(input)?;
        let shown: Vec<_> = pretty.lines().map(crate::display::escape).collect();
        writeln!(out, "input:\n{}\n", shown.join("\n"))?;
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
            writeln!(out, "  - {}", crate::display::escape(reason))?;
        }
    }
    Ok(0)
}

pub(super) fn read_json(file: &Path) -> anyhow::Result<Value> {
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
    // The tool as the wrapper last listed it (pinned in the store): its annotations and schema
    // decide the action type and where its paths are, so eval agrees with the live wrapper.
    let pin = match &governed {
        Governed::ToolCall { name, .. } if paths.database().exists() => {
            let store = crate::audit::Store::open(&paths.database())?;
            crate::audit::pins::latest(&store, server, name)?
        }
        _ => None,
    };
    let definition = pin.as_ref().and_then(|p| p.current_definition.as_ref());
    let schema = definition.and_then(|d| d.get("inputSchema"));
    let tool = pin.as_ref().map(crate::pinning::facts);
    let resolved = resolver.resolve_call(&input::path_args(&governed, schema));
    let facts = input::Facts {
        paths: &resolved,
        annotations: definition.and_then(|d| d.get("annotations")),
        tool: tool.as_ref(),
        ..input::Facts::default()
    };
    let built = input::build(&ctx, &governed, &facts);
    if let Some(why) = built.refused {
        bail!("the wrapper would deny this request before evaluating any policy: {why}");
    }
    Ok(built.input)
}
