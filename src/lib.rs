//! behavry governs what AI agents may do through MCP servers.
//!
//! `behavry wrap -- <server>` sits between an MCP client (Claude Code) and a stdio MCP server. Every
//! governed request (`tools/call`, `resources/read`, `prompts/get`) is decided by Rego policies and
//! recorded in a SQLite audit store before it moves on; everything else is relayed untouched.
//!
//! # Layout
//!
//! The modules follow the path a frame takes:
//!
//! ```text
//! client stdin → proxy::frame → proxy::strict (the one parse) → proxy::guard (ids, batches)
//!    → proxy::message → proxy::govern: policy::canon (paths) → policy::input
//!    → policy::engine (allow/deny/escalate) → audit::writer (row committed first)
//!    → forward to server stdin, answer the client ourselves, or hold (approval) for a person
//! server stdout → proxy::frame → response bookkeeping (outcome, duration in audit) → client stdout
//! ```
//!
//! - [`config`]: where behavry keeps its files (`BEHAVRY_HOME`) and the user's `config.toml`,
//!   merged with the root-owned system config, whose team settings win (refused, and every
//!   governed call denied, when others can write it).
//! - [`proxy`]: spawns the server ([`proxy::child`]), reads frames ([`proxy::frame`]), parses
//!   client messages strictly ([`proxy::strict`]: whatever is ambiguous is refused, what is
//!   forwarded is the value evaluated), tracks in-flight ids and the protocol version
//!   ([`proxy::guard`]), classifies JSON-RPC messages ([`proxy::message`]) and relays them;
//!   [`proxy::govern`] decides each governed one (a pure `decide`, then commit, then act).
//! - [`policy`]: canonicalises the paths a request names ([`policy::canon`]), builds the policy
//!   input from it ([`policy::input`], pure), reads the policy directories ([`policy::source`]),
//!   compiles and evaluates with regorus ([`policy::engine`]), hot-reloads on change, swapping only
//!   sets that compile ([`policy::watch`]), and backs the `behavry policy` commands
//!   ([`policy::inspect`], [`policy::testing`], [`policy::replay`]: recorded inputs against
//!   another set). [`policy::visible`] finds the tools denied for every call (`filter_denied_tools`).
//! - [`audit`]: the SQLite store ([`audit::store`]), the hash chain that makes tampering
//!   detectable ([`audit::chain`]) and the thread that owns a wrapper's connection
//!   ([`audit::writer`]); pinned tools ([`audit::pins`]), recorded policy inputs
//!   ([`audit::inputs`]) and which servers run in monitor mode ([`audit::monitor`]).
//! - [`pinning`]: tool definitions pinned by hash per server, so a changed tool is noticed
//!   (`input.tool`); the wrapper observes each listing on a connection of its own.
//! - [`approval`]: holds an escalated call until a person resolves it in the store (or it times
//!   out, or the client cancels it): one waiter per wrapper, a cap on held calls.
//! - [`tui`]: `behavry approve`, the terminal app that resolves held calls: its state and keys
//!   ([`tui::state`]) and its drawing ([`tui::draw`]). It talks only to the store.
//! - [`display`]: client-controlled text made inert and fitted for a person's terminal (the
//!   approver, tables, notes); machine outputs keep the exact text.
//! - [`hook`]: Claude Code's own tools (Bash, Write, Read, …) under the same policies and log,
//!   through its hooks: the event, the input it makes, the answer, `settings.json` entries, and
//!   the agents the approver's self-approval guard looks for.
//! - [`cli`]: the command line, one module per command: `wrap` (runs the proxy), `log` (reads
//!   the audit trail, `--events` too), `approve` (runs the TUI), `policy` (`check`, `eval`,
//!   `bench`, `test`, `add`, `list`, `replay`, one file each), `tools` (pinned tools, their
//!   diffs, trusting them), `bundle` (`verify`, `build`: OPA bundles), `hook` (run by Claude Code
//!   for each of its tool calls), `paths`, the set-up commands (`init`, `claude`, `demo`,
//!   `completions`, `man`), `export` (decision-log sinks: `status`, `flush`), and the hidden
//!   `mock-server`.
//! - [`bundle`]: OPA bundles: reading one in memory ([`bundle::load`]: limits, unsafe entries,
//!   signature, manifest, roots), and writing one ([`bundle::build`]).
//! - [`export`]: decision logs: one exporter thread per database (a lease among the wrappers)
//!   sends the journal records past each sink's cursor to an OTLP collector or an OPA
//!   decision-log receiver, at least once ([`export::event`] maps, [`export::sink`] sends).
//! - [`team`]: settings for teams: policy bundles pulled from the team's host and decisions
//!   exported to its collector.
//! - [`oci`]: pulls a bundle from an OCI registry (manifest, OPA's layer, digest as etag).
//! - [`pull`]: team bundles pulled off the hot path, once per machine (a lease in the store):
//!   URL rules, ETag polls with backoff, verification, and the sets composed from bundles and
//!   local files (`local = tighten|off|merge`) that [`policy::watch`] swaps in.
//! - [`tls`]: the certificates the HTTPS clients trust (built-in roots plus a `ca_file`).
//! - [`mock`]: a tiny MCP server for tests and benchmarks.
//! - [`notes`]: diagnostic lines on stderr ([`note!`]), written by their own thread so a client
//!   that never reads stderr cannot stall the proxy.
//!
//! Nothing in this crate prints to stdout except the proxy's client writer (MCP frames only) and the
//! commands meant for people (`log`, `policy`, `paths`, the set-up commands): in `wrap`, stdout is
//! the protocol channel. Clippy's `print_stdout` lint keeps `println!` out.

pub mod approval;
pub mod audit;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod display;
pub mod export;
pub mod hook;
pub mod mock;
pub mod notes;
pub mod oci;
pub mod pinning;
pub mod policy;
pub mod proxy;
pub mod pull;
pub mod team;
pub mod tls;
pub mod tui;

/// Queues a diagnostic line for stderr (see [`notes`]: never blocks, flushed at exit). Never
/// stdout: in `wrap`, stdout carries MCP frames.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::notes::note(format_args!($($arg)*))
    };
}
