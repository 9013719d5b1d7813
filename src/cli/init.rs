//! `behavry init`: a commented `config.toml` and a first policy set, created once and never
//! overwritten.
//!
//! The config file is rendered from [`Config::default()`] by [`config_sections`], which takes every
//! struct apart field by field: a new option fails the build here until it is documented, so the
//! file cannot drift from the defaults.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::Context as _;

use crate::config::{
    AgentConfig, ApproveConfig, AuditConfig, Config, Paths, RequesterConfig, WrapConfig,
};

/// The default policy set (`policies/base`), built into the binary so `init` works anywhere.
const BASE_POLICIES: &[(&str, &str)] = &[
    ("base.rego", include_str!("../../policies/base/base.rego")),
    ("lib.rego", include_str!("../../policies/base/lib.rego")),
    (
        "base_test.rego",
        include_str!("../../policies/base/base_test.rego"),
    ),
    (
        "claude_code.rego",
        include_str!("../../policies/base/claude_code.rego"),
    ),
    (
        "claude_code_test.rego",
        include_str!("../../policies/base/claude_code_test.rego"),
    ),
];

pub fn run() -> anyhow::Result<i32> {
    let paths = Paths::resolve()?;
    let mut out = std::io::stdout().lock();

    create_private_dir(&paths.config_dir)?;
    let config_file = paths.config_file();
    match write_new(&config_file, config_template().as_bytes())? {
        true => writeln!(out, "wrote    {}", config_file.display())?,
        false => writeln!(
            out,
            "kept     {} (already there; `behavry init` never overwrites it)",
            config_file.display()
        )?,
    }

    let policy_dir = paths.policy_dir();
    create_private_dir(&policy_dir)?;
    if has_policies(&policy_dir)? {
        writeln!(
            out,
            "kept     {} (it already holds policies)",
            policy_dir.display()
        )?;
    } else {
        for (name, text) in BASE_POLICIES {
            let path = policy_dir.join(name);
            if write_new(&path, text.as_bytes())? {
                writeln!(out, "wrote    {}", path.display())?;
            }
        }
    }
    writeln!(out, "database {}", paths.database().display())?;
    writeln!(out)?;
    writeln!(out, "Next:")?;
    writeln!(
        out,
        "  behavry demo            see allow, deny and escalate on a built-in server"
    )?;
    writeln!(
        out,
        "  behavry claude wrap     put behavry in front of your Claude Code MCP servers"
    )?;
    writeln!(
        out,
        "  behavry claude hook install  decide Claude Code's own tools (Bash, Write, …) too"
    )?;
    writeln!(
        out,
        "  behavry approve         approve or deny held calls (keep it open in a terminal)"
    )?;
    Ok(0)
}

/// Creates `dir` (owner-only) or, if it exists, takes away write access for others: behavry
/// refuses policies that others can change.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let what = || format!("cannot prepare {}", dir.display());
    if dir.is_dir() {
        let mode = std::fs::metadata(dir)
            .with_context(what)?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & !0o022))
                .with_context(what)?;
        }
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(what)?;
    Ok(())
}

/// Whether `dir` already holds a `.rego` file (then the user's set is left as it is).
fn has_policies(dir: &Path) -> anyhow::Result<bool> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    Ok(entries
        .flatten()
        .any(|e| e.path().extension().is_some_and(|x| x == "rego")))
}

/// Writes `bytes` to a file that must not exist yet (O_EXCL, so a file created meanwhile is not
/// clobbered either); `false` if it already exists.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<bool> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    let mut file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(true)
}

/// One `[table]` of `config.toml`.
pub struct Section {
    pub name: &'static str,
    pub doc: &'static str,
    pub settings: Vec<Setting>,
}

/// One key, shown commented out.
pub struct Setting {
    pub key: String,
    /// The TOML value shown after `key = `.
    pub value: String,
    /// `value` is the default (otherwise it is an example of an option that is unset by default).
    pub is_default: bool,
    pub doc: &'static str,
}

fn default(key: &str, value: impl std::fmt::Display, doc: &'static str) -> Setting {
    Setting {
        key: key.to_owned(),
        value: value.to_string(),
        is_default: true,
        doc,
    }
}

fn example(key: &str, value: &str, doc: &'static str) -> Setting {
    Setting {
        key: key.to_owned(),
        value: value.to_owned(),
        is_default: false,
        doc,
    }
}

fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Every option of `config.toml` with its default, from [`Config::default()`].
pub fn config_sections() -> Vec<Section> {
    // Exhaustive patterns: adding a field to the config fails to compile until it is listed here.
    let Config {
        agent,
        requester,
        action_types,
        wrap,
        audit,
        approve,
        hook,
        servers,
        bundles,
        keys,
        local: _,
        decision_log: _,
    } = Config::default();
    // Team settings are documented in docs/teams.md: a personal config has none.
    debug_assert!(bundles.is_empty() && keys.is_empty());
    let AgentConfig {
        id: _,
        name: _,
        role,
        risk_tier,
    } = agent;
    let RequesterConfig { id: _ } = requester;
    let WrapConfig {
        eval_timeout_ms,
        shutdown_grace_ms,
        max_frame_bytes,
        approval_timeout_secs,
        approval_keepalive_secs,
        tools_list_wait_ms,
        approval,
        max_held,
        mode,
        filter_denied_tools,
    } = wrap;
    let mode = format!("{mode:?}").to_lowercase();
    debug_assert!(servers.is_empty());
    let approval = format!("{approval:?}").to_lowercase();
    let ApproveConfig { bell, title } = approve;
    let AuditConfig { durability } = audit;
    let crate::hook::HookConfig {
        escalate,
        approval_timeout_secs: hook_approval_timeout_secs,
        mcp_tools,
        deadline_ms,
    } = hook;
    let escalate = format!("{escalate:?}").to_lowercase();
    let mcp_tools = format!("{mcp_tools:?}").to_lowercase();
    let durability = format!("{durability:?}").to_lowercase();
    debug_assert!(action_types.is_empty());
    vec![
        Section {
            name: "agent",
            doc: "Who the agent is, as policies see it in input.agent.",
            settings: vec![
                example(
                    "id",
                    "\"claude-code\"",
                    "input.agent.id [default: the client's clientInfo.name]",
                ),
                example(
                    "name",
                    "\"claude-code\"",
                    "input.agent.name [default: the client's clientInfo.name]",
                ),
                default("role", quoted(&role), "input.agent.role"),
                default("risk_tier", quoted(&risk_tier), "input.agent.risk_tier"),
            ],
        },
        Section {
            name: "requester",
            doc: "The person the agent works for, as policies see it in input.requester.",
            settings: vec![example(
                "id",
                "\"you@example.com\"",
                "input.requester.id [default: the OS user running behavry]",
            )],
        },
        Section {
            name: "action_types",
            doc: "Overrides of the derived input.action.type, keyed by \"<server>/<tool>\" or a bare \
                  tool name. Types: read, list, search, write, delete, execute, network, unknown.",
            settings: vec![example("\"fs/run_query\"", "\"read\"", "[default: none]")],
        },
        Section {
            name: "wrap",
            doc: "How `behavry wrap` runs.",
            settings: vec![
                default(
                    "eval_timeout_ms",
                    eval_timeout_ms,
                    "A policy evaluation that runs longer is stopped and the call denied.",
                ),
                default(
                    "shutdown_grace_ms",
                    shutdown_grace_ms,
                    "How long the server gets after its stdin closes (and again after SIGTERM).",
                ),
                default(
                    "max_frame_bytes",
                    max_frame_bytes,
                    "The longest message accepted in either direction.",
                ),
                default(
                    "approval_timeout_secs",
                    approval_timeout_secs,
                    "An escalated call nobody approves within this time is denied.",
                ),
                default(
                    "approval_keepalive_secs",
                    approval_keepalive_secs,
                    "How often a held call sends the client progress, so its idle timer keeps running.",
                ),
                default(
                    "tools_list_wait_ms",
                    tools_list_wait_ms,
                    "How long a call waits for the server's tool list (for its annotations).",
                ),
                default(
                    "approval",
                    quoted(&approval),
                    "How held calls are put to a person: \"auto\" (a form in the client when it \
                     supports MCP elicitation, and `behavry approve`), \"tui\" (only `behavry \
                     approve`) or \"elicitation\" (the form first).",
                ),
                default(
                    "max_held",
                    max_held,
                    "How many calls one wrapper holds for approval at once; more are denied at once.",
                ),
                default(
                    "mode",
                    quoted(&mode),
                    "\"enforce\", or \"monitor\": every call is decided and recorded but forwarded \
                     whatever the decision (`behavry log --would deny` lists what would have been \
                     blocked). Not protection: see docs/rollout.md. A [servers.<name>] table with \
                     `mode` or `filter_denied_tools` overrides these for one server.",
                ),
                default(
                    "filter_denied_tools",
                    filter_denied_tools,
                    "Remove tools the policies deny for every call from the server's tools/list answers.",
                ),
            ],
        },
        Section {
            name: "approve",
            doc: "How `behavry approve` gets your attention.",
            settings: vec![
                default("bell", bell, "Ring the terminal bell when a new call arrives."),
                default(
                    "title",
                    title,
                    "Keep the window title at \"behavry: N waiting\".",
                ),
            ],
        },
        Section {
            name: "audit",
            doc: "The audit database.",
            settings: vec![default(
                "durability",
                quoted(&durability),
                "\"normal\": a killed process loses nothing, a power cut may lose the last \
                 decisions; \"full\": every decision is fsynced before the call moves on.",
            )],
        },
        Section {
            name: "hook",
            doc: "`behavry hook`: Claude Code's own tools (Bash, Write, Read, …), once its hooks \
                  are installed with `behavry claude hook install`.",
            settings: vec![
                default(
                    "escalate",
                    quoted(&escalate),
                    "An escalated call: \"ask\" (Claude Code's own prompt shows the reasons) or \
                     \"approve\" (held until `behavry approve` decides).",
                ),
                default(
                    "approval_timeout_secs",
                    hook_approval_timeout_secs,
                    "With \"approve\": a held call nobody approves within this time is denied.",
                ),
                default(
                    "mcp_tools",
                    quoted(&mcp_tools),
                    "mcp__* tools: \"defer\" (no answer; the wrapper decides them) or \"decide\".",
                ),
                default(
                    "deadline_ms",
                    deadline_ms,
                    "No answer within this time is a deny (Claude Code would run the tool).",
                ),
            ],
        },
    ]
}

/// The text `behavry init` writes: every option, commented out, at its default.
pub fn config_template() -> String {
    let mut text = String::from(
        "# behavry configuration. Every option is shown at its default, commented out:\n\
         # remove the leading `# ` of a line to change it. Reference: docs/configuration.md.\n",
    );
    for section in config_sections() {
        text.push('\n');
        comment(&mut text, section.doc);
        text.push_str(&format!("[{}]\n", section.name));
        for setting in section.settings {
            let example = if setting.is_default {
                ""
            } else {
                " For example:"
            };
            comment(&mut text, &format!("{}{example}", setting.doc));
            text.push_str(&format!("# {} = {}\n", setting.key, setting.value));
        }
    }
    text
}

/// Appends `doc` as `# ` lines of at most about 100 columns.
fn comment(text: &mut String, doc: &str) {
    let mut line = String::from("#");
    for word in doc.split_whitespace() {
        if line.len() + 1 + word.len() > 100 && line.len() > 1 {
            text.push_str(&line);
            text.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    text.push_str(&line);
    text.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        toml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn written_file_is_the_default() {
        assert_eq!(
            format!("{:?}", parse(&config_template())),
            format!("{:?}", Config::default())
        );
    }

    #[test]
    fn every_default_uncommented_parses_to_the_default() {
        let mut text = String::new();
        for section in config_sections() {
            text.push_str(&format!("[{}]\n", section.name));
            for setting in section.settings.iter().filter(|s| s.is_default) {
                text.push_str(&format!("{} = {}\n", setting.key, setting.value));
            }
        }
        assert_eq!(
            format!("{:?}", parse(&text)),
            format!("{:?}", Config::default())
        );
    }

    #[test]
    fn every_example_is_a_valid_setting() {
        for section in config_sections() {
            for setting in section.settings.iter().filter(|s| !s.is_default) {
                let text = format!("[{}]\n{} = {}\n", section.name, setting.key, setting.value);
                let parsed = format!("{:?}", parse(&text));
                assert_ne!(parsed, format!("{:?}", Config::default()), "{text}");
            }
        }
    }
}
