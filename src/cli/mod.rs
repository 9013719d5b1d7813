//! The command line. Parsing, dispatch and the one place errors become exit codes.

mod approve;
mod bundle;
mod claude;
mod demo;
mod events;
mod hook;
mod init;
mod log;
mod policy;
mod tools;
mod wrap;

use clap::CommandFactory as _;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Exit code for errors behavry itself reports (bad usage gets clap's 2).
const EXIT_ERROR: i32 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "behavry",
    version,
    about = "Govern what AI agents may do through MCP servers",
    long_about = "Govern what AI agents may do through MCP servers.\n\n\
        Launch `behavry wrap -- <server command>` wherever you would launch an MCP server: every tool call \
        is decided by the Rego policies in your policy directory (allow, deny or escalate) and recorded \
        before it moves on. `behavry log` shows the audit trail.",
    after_help = "Examples:\n  \
        behavry init\n  \
        behavry demo\n  \
        behavry claude wrap\n  \
        behavry claude add fs -- npx -y @modelcontextprotocol/server-filesystem $PWD\n  \
        behavry log --decision deny --since 1h\n  \
        behavry policy check\n\n\
        Files: BEHAVRY_HOME=<dir> keeps config.toml, policies/ and behavry.db in one directory."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Wrap(WrapArgs),
    Log(LogArgs),
    Approve(ApproveArgs),
    Policy(policy::PolicyArgs),
    Hook(HookArgs),
    Tools(tools::ToolsArgs),
    Bundle(bundle::BundleArgs),
    /// Where behavry reads config and policies and writes its database.
    Paths,
    /// Write a commented config.toml and the default policies (never overwrites)
    Init,
    Claude(claude::ClaudeArgs),
    Demo(demo::DemoArgs),
    /// Print a shell completion script
    #[command(after_help = "Examples:\n  \
        behavry completions bash > ~/.local/share/bash-completion/completions/behavry\n  \
        behavry completions zsh > ~/.zfunc/_behavry")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    #[command(after_help = "Example:\n  behavry man > ~/.local/share/man/man1/behavry.1")]
    Man,
    /// A minimal MCP server for tests and benchmarks.
    #[command(name = "mock-server", hide = true)]
    MockServer,
}

/// Run an MCP server behind behavry's policy check (use it in place of the server's command)
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry wrap -- npx -y @modelcontextprotocol/server-filesystem ~/code\n  \
    behavry wrap --name gh --policies ./team-policies -- github-mcp-server stdio\n\n\
    Without --name, the server name comes from the command: the first word that is not a launcher \
    (npx, uvx, node, python, docker run, …) or a flag, without its scope, version, extension and \
    mcp-/server- affixes (`@modelcontextprotocol/server-filesystem` → `filesystem`).")]
struct WrapArgs {
    /// Server name used in policies (`input.resource.server`, `input.action.tool` = NAME/<tool>)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Also load policies from DIR (repeatable); the default policy directory is always loaded
    #[arg(long = "policies", value_name = "DIR")]
    policies: Vec<PathBuf>,
    /// Deny an escalated call if nobody approves it within SECS [default: 300, or [wrap]
    /// approval_timeout_secs in config.toml]
    #[arg(long, value_name = "SECS")]
    approval_timeout: Option<u64>,
    /// Monitor mode: decide and record every call, but forward it whatever the decision (for
    /// trying policies before they block anything; `behavry log --would deny` lists what would
    /// have been blocked)
    #[arg(long)]
    monitor: bool,
    /// The MCP server command and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

/// Approve or deny held calls from every wrapped server, in a terminal app
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Keys: ↑/↓ or j/k select · a approve once · s approve for the rest of the session \
    (same server and tool) · d deny (type a reason, Enter) · PgUp/PgDn scroll the details · \
    Enter full view · →/← show or hide a group's calls · q quit\n\n\
    Examples:\n  \
    behavry approve\n  \
    behavry approve --list"
)]
struct ApproveArgs {
    /// Print the calls waiting for approval and exit (read-only; approving needs the terminal app)
    #[arg(long)]
    list: bool,
    /// With --list: one JSON object per line
    #[arg(long, requires = "list")]
    json: bool,
}

/// Decide one of Claude Code's own tool calls (the command its hooks run)
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Claude Code runs `behavry hook` with one hook event as JSON on stdin; it \
    answers allow, deny or ask (or nothing, leaving the call to Claude Code's own permissions), \
    records the decision in the same log as MCP calls, and always exits 0.\n\n\
    Install the hooks with `behavry claude hook install`."
)]
struct HookArgs {}

/// Show the audit trail (newest last), verify it, or prune it
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry log\n  \
    behavry log --decision deny --since 1h\n  \
    behavry log --tool fs/write_file --json | jq .reasons\n  \
    behavry log --format csv --since 7d > week.csv\n  \
    behavry log --follow\n  \
    behavry log --stats --since 24h\n  \
    behavry log --verify\n  \
    behavry log --head >> ~/behavry-heads.txt\n  \
    behavry log --prune --before 90d\n  \
    behavry log --events --json")]
struct LogArgs {
    /// One JSON object per line instead of a table (same as --format json)
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// Output format
    #[arg(long, value_enum)]
    format: Option<log::Format>,
    /// Only this decision
    #[arg(long, value_parser = ["allow", "deny", "escalate"])]
    decision: Option<String>,
    /// Only calls decided in monitor mode (forwarded) whose decision was this: what enforcement
    /// would have done (`--would deny`: what it would have blocked)
    #[arg(long, value_name = "DECISION", value_parser = ["allow", "deny", "escalate"], conflicts_with = "decision")]
    would: Option<String>,
    /// Only this server
    #[arg(long)]
    server: Option<String>,
    /// Only this tool (`write_file` or `fs/write_file`)
    #[arg(long)]
    tool: Option<String>,
    /// Only this wrapper session
    #[arg(long)]
    session: Option<String>,
    /// Only rows newer than this: 30s, 15m, 1h, 7d
    #[arg(long, value_name = "AGE", value_parser = log::parse_age)]
    since: Option<std::time::Duration>,
    /// At most the newest N rows [default: 50 for the table, all otherwise]
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Keep printing new rows as they are recorded
    #[arg(long, conflicts_with_all = ["verify", "head", "prune", "stats"])]
    follow: bool,
    /// Check the database and the hash chain; prints `ok: N rows` or the first problem (exit 1)
    #[arg(long, conflicts_with_all = ["head", "prune", "stats"])]
    verify: bool,
    /// Print the current head (sequence number and hash) of the hash chain, to keep elsewhere
    #[arg(long, conflicts_with_all = ["prune", "stats"])]
    head: bool,
    /// Delete records older than --before, keeping the chain verifiable (a checkpoint records
    /// the last pruned hash) and every call still waiting for approval
    #[arg(long, requires = "before", conflicts_with = "stats")]
    prune: bool,
    /// With --prune: the age of the oldest record to keep, e.g. 90d
    #[arg(long, value_name = "AGE", value_parser = log::parse_age, requires = "prune")]
    before: Option<std::time::Duration>,
    /// Counts by decision, server, tool and resolution (over --since, or everything)
    #[arg(long)]
    stats: bool,
    /// Show policy events (reloads, rejected reloads) instead of decisions
    #[arg(long, conflicts_with_all = ["decision", "tool", "verify", "head", "prune", "stats"])]
    events: bool,
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() {
                let args: Vec<_> = std::env::args_os().collect();
                if let Some(hint) = wrap::missing_separator_hint(&args) {
                    crate::note!("{hint}");
                }
            }
            return e.exit_code();
        }
    };
    let result = match cli.command {
        Command::Wrap(args) => wrap::run(args),
        Command::Log(args) => log::run(args),
        Command::Approve(args) => approve::run(args),
        Command::Policy(args) => policy::run(args),
        Command::Hook(args) => hook::run(args),
        Command::Tools(args) => tools::run(args),
        Command::Bundle(args) => bundle::run(args),
        Command::Paths => paths(),
        Command::Init => init::run(),
        Command::Claude(args) => claude::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "behavry",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map(|()| 0)
            .map_err(anyhow::Error::from),
        Command::MockServer => crate::mock::run().map(|()| 0).map_err(anyhow::Error::from),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            crate::note!("{e:#}");
            EXIT_ERROR
        }
    }
}

fn paths() -> anyhow::Result<i32> {
    use std::io::Write;
    let paths = crate::config::Paths::resolve()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "config:   {}", paths.config_file().display())?;
    writeln!(out, "policies: {}", paths.policy_dir().display())?;
    writeln!(out, "database: {}", paths.database().display())?;
    Ok(0)
}
