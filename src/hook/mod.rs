//! Claude Code's own tools (Bash, Write, Edit, Read, WebFetch, …) under the same policies, journal
//! and approver as MCP calls, through Claude Code's `PreToolUse` / `PostToolUse` hooks.
//!
//! Claude Code runs `behavry hook` once per tool call, as a new process, with one event as JSON on
//! stdin; the answer is JSON on stdout and the exit code is always 0. This module is the pure
//! core: the event ([`event`]), the policy input it makes ([`call`]: the tool becomes
//! `claude-code/<tool>`, its paths and the paths a Bash command names become `resource.paths`),
//! and the answer a verdict becomes ([`answer`]). The I/O (stdin, the store, the deadline) is in
//! `cli::hook`; editing Claude Code's `settings.json` is [`settings`]; the processes behavry knows
//! as agents, for the approver's self-approval guard, are [`agents`].
//!
//! Never widen what Claude Code allows: `"allow"` skips Claude Code's own permission prompt, so it
//! is answered only when a rule explicitly allowed the call; with no rule either way behavry says
//! nothing. And never fail open: Claude Code runs the tool when a hook crashes, prints garbage or
//! times out, so every failure is answered with a deny.

pub mod agents;
pub mod answer;
pub mod call;
pub mod event;
pub mod settings;

use serde::Deserialize;

/// The server name hook decisions are recorded and evaluated under (`claude-code/Bash`).
pub const SERVER: &str = "claude-code";

/// `[hook]` in config.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HookConfig {
    /// What an escalated call becomes: `"ask"` (Claude Code's own prompt shows the reasons; a
    /// deny in `claude -p`) or `"approve"` (held until `behavry approve` decides, or the timeout).
    pub escalate: Escalate,
    /// With `escalate = "approve"`: how long a held call waits before it is denied. Kept below
    /// the hook's timeout in settings.json ([`settings::TIMEOUT_SECS`]).
    pub approval_timeout_secs: u64,
    /// `mcp__*` tools: `"defer"` (no opinion: the wrapper around the server decides them, so no
    /// call is decided twice) or `"decide"` (the hook decides them too, e.g. for servers that are
    /// not wrapped).
    pub mcp_tools: McpTools,
    /// Start to answer, at most; past it the call is denied. Far below the hook's timeout, since
    /// Claude Code runs the tool when a hook times out.
    pub deadline_ms: u64,
}

impl Default for HookConfig {
    fn default() -> Self {
        HookConfig {
            escalate: Escalate::Ask,
            approval_timeout_secs: 240,
            mcp_tools: McpTools::Defer,
            deadline_ms: 5000,
        }
    }
}

impl HookConfig {
    /// The approval timeout actually used: never so long that Claude Code's timeout for the hook
    /// (which would run the tool) comes first.
    pub fn approval_timeout(&self) -> std::time::Duration {
        let cap = settings::TIMEOUT_SECS.saturating_sub(30);
        std::time::Duration::from_secs(self.approval_timeout_secs.min(cap))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Escalate {
    Ask,
    Approve,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum McpTools {
    Defer,
    Decide,
}
