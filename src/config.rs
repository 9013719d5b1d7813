//! Where behavry keeps its files, and the user's `config.toml`.
//!
//! `BEHAVRY_HOME=<dir>` puts everything under one directory (config, policies, database), which tests
//! and separate profiles rely on. Without it, the platform's config dir holds `config.toml` and
//! `policies/`, and its data dir holds `behavry.db`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::policy::canon::OwnDir;
use crate::policy::input::{ActionType, BehavryDirs};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot find a home directory for behavry's files; set BEHAVRY_HOME to a directory")]
    NoHome,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The files behavry reads and writes.
#[derive(Debug, Clone)]
pub struct Paths {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
}

impl Paths {
    /// Resolves `BEHAVRY_HOME`, or the platform directories when it is unset.
    pub fn resolve() -> Result<Paths, ConfigError> {
        if let Some(home) = std::env::var_os("BEHAVRY_HOME").filter(|h| !h.is_empty()) {
            let home = std::path::absolute(PathBuf::from(home)).map_err(|_| ConfigError::NoHome)?;
            return Ok(Paths {
                config_dir: home.clone(),
                data_dir: home,
            });
        }
        let dirs = directories::ProjectDirs::from("", "", "behavry").ok_or(ConfigError::NoHome)?;
        Ok(Paths {
            config_dir: dirs.config_dir().to_path_buf(),
            data_dir: dirs.data_dir().to_path_buf(),
        })
    }

    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    pub fn policy_dir(&self) -> PathBuf {
        self.config_dir.join("policies")
    }

    pub fn database(&self) -> PathBuf {
        self.data_dir.join("behavry.db")
    }

    /// `input.behavry`: these directories and `policy_dirs`, absolute, plus every one of them with
    /// symlinks resolved in `protected`, so a rule can refuse a path by either spelling.
    pub fn behavry_dirs(&self, policy_dirs: &[PathBuf]) -> BehavryDirs {
        let absolute = |p: &Path| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.to_path_buf())
                .display()
                .to_string()
        };
        let mut protected = Vec::new();
        for dir in [&self.config_dir, &self.data_dir]
            .into_iter()
            .chain(policy_dirs)
        {
            protected.push(absolute(dir));
            if let Ok(real) = std::fs::canonicalize(dir) {
                protected.push(real.display().to_string());
            }
        }
        protected.sort();
        protected.dedup();
        BehavryDirs {
            config_dir: absolute(&self.config_dir),
            data_dir: absolute(&self.data_dir),
            policy_dirs: policy_dirs.iter().map(|d| absolute(d)).collect(),
            protected,
        }
    }

    /// The directories wrapped servers may never reach into: config, data, and every directory
    /// policies are loaded from (`policy_dirs`, which includes `--policies` ones).
    pub fn own_dirs(&self, policy_dirs: &[PathBuf]) -> Vec<OwnDir> {
        let mut dirs = vec![
            OwnDir {
                what: "configuration directory".into(),
                dir: self.config_dir.clone(),
            },
            OwnDir {
                what: "data directory".into(),
                dir: self.data_dir.clone(),
            },
        ];
        dirs.extend(policy_dirs.iter().map(|d| OwnDir {
            what: "policy directory".into(),
            dir: d.clone(),
        }));
        dirs
    }
}

/// The contents of `config.toml`. Every field is optional; a missing file means all defaults.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub agent: AgentConfig,
    pub requester: RequesterConfig,
    /// Overrides of the derived `action.type`, keyed by `<server>/<tool>` or by the bare tool name.
    pub action_types: BTreeMap<String, ActionType>,
    pub wrap: WrapConfig,
    pub audit: AuditConfig,
    pub approve: ApproveConfig,
    /// `[hook]`: `behavry hook`, for Claude Code's own tools.
    pub hook: crate::hook::HookConfig,
    /// `[servers.<name>]`: settings for one wrapped server (its `--name`), over the global ones.
    pub servers: BTreeMap<String, ServerConfig>,
    /// `[bundles.<name>]`: team policy bundles pulled from a host (see `crate::team`).
    pub bundles: BTreeMap<String, crate::team::BundleConfig>,
    /// `[keys.<id>]`: public keys that verify bundle signatures.
    pub keys: BTreeMap<String, crate::team::KeyConfig>,
    /// What the local policy files do once a bundle is configured.
    pub local: crate::team::Local,
    /// `[decision_log]`: where journal records are exported.
    pub decision_log: crate::team::DecisionLogConfig,
}

/// Whether decisions are enforced (`mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    /// Every call is decided and recorded as in enforce mode, then forwarded whatever the
    /// decision: for trying policies on real traffic before they block anything.
    Monitor,
}

/// `[servers.<name>]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub mode: Option<Mode>,
    pub filter_denied_tools: Option<bool>,
}

impl Config {
    /// The mode for server `name`: its own setting, else the global one.
    pub fn mode_for(&self, name: &str) -> Mode {
        self.servers
            .get(name)
            .and_then(|s| s.mode)
            .unwrap_or(self.wrap.mode)
    }

    /// Whether `tools/list` answers of server `name` are filtered.
    pub fn filters_denied_tools(&self, name: &str) -> bool {
        self.servers
            .get(name)
            .and_then(|s| s.filter_denied_tools)
            .unwrap_or(self.wrap.filter_denied_tools)
    }
}

/// `[approve]`: how `behavry approve` gets the attention of a person working in another window.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApproveConfig {
    /// Ring the terminal bell when a new call arrives.
    pub bell: bool,
    /// Keep the window title at "behavry: N waiting".
    pub title: bool,
}

impl Default for ApproveConfig {
    fn default() -> Self {
        ApproveConfig {
            bell: true,
            title: true,
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    pub durability: crate::audit::store::Durability,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Defaults to the client's `clientInfo.name`.
    pub id: Option<String>,
    /// Defaults to the client's `clientInfo.name`.
    pub name: Option<String>,
    pub role: String,
    pub risk_tier: String,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            id: None,
            name: None,
            role: "developer".into(),
            risk_tier: "low".into(),
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequesterConfig {
    /// Defaults to the OS user running behavry.
    pub id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WrapConfig {
    /// A policy evaluation that runs longer than this is stopped and the call denied.
    pub eval_timeout_ms: u64,
    /// How long the server gets after its stdin closes (and again after SIGTERM) before the next step.
    pub shutdown_grace_ms: u64,
    /// The longest line accepted in either direction.
    pub max_frame_bytes: usize,
    /// How long an escalated call waits for `behavry approve` before it is denied.
    pub approval_timeout_secs: u64,
    /// How often a held call sends `notifications/progress` (when the client gave a progress
    /// token), so the client's idle timer does not expire while a person decides.
    pub approval_keepalive_secs: u64,
    /// How long a tool call that arrives while behavry is reading the server's tool list waits
    /// for it before it is decided without the tool's annotations.
    pub tools_list_wait_ms: u64,
    /// How held calls are put to a person: `"auto"` (a form in the client when it supports MCP
    /// elicitation, and `behavry approve`), `"tui"` (only `behavry approve`) or `"elicitation"`.
    pub approval: crate::proxy::elicit::Channel,
    /// How many calls one wrapper holds for approval at once; beyond it, escalations are denied
    /// at once with a reason that says so (a flood must not bury the call that matters).
    pub max_held: usize,
    /// `"enforce"` or `"monitor"`: decide and record every call, but forward it whatever the
    /// decision (`[servers.<name>] mode` overrides it for one server).
    pub mode: Mode,
    /// Remove the tools the policy denies for every call from the server's `tools/list` answers.
    pub filter_denied_tools: bool,
}

impl Default for WrapConfig {
    fn default() -> Self {
        WrapConfig {
            eval_timeout_ms: 250,
            // Claude Code escalates SIGINT → SIGTERM → SIGKILL within about 1.3 s; two steps of
            // 500 ms let the server shut down cleanly inside that window.
            shutdown_grace_ms: 500,
            max_frame_bytes: 64 * 1024 * 1024,
            approval_timeout_secs: 300,
            approval_keepalive_secs: 15,
            tools_list_wait_ms: 2000,
            approval: crate::proxy::elicit::Channel::Auto,
            max_held: crate::approval::DEFAULT_MAX_HELD,
            mode: Mode::Enforce,
            filter_denied_tools: false,
        }
    }
}

impl Config {
    /// Reads `path`; a missing file is the default configuration, a malformed one is an error.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

impl Config {
    /// The facts of a wrapper run that every policy input repeats, from this config and the
    /// environment the client gave behavry (`CLAUDE_PROJECT_DIR`, the working directory, `HOME`).
    pub fn input_context(
        &self,
        server: &str,
        session_id: String,
        behavry: BehavryDirs,
    ) -> crate::policy::input::Context {
        crate::policy::input::Context {
            server: server.to_owned(),
            agent_id: self.agent.id.clone(),
            agent_name: self.agent.name.clone(),
            role: self.agent.role.clone(),
            risk_tier: self.agent.risk_tier.clone(),
            requester_id: self.requester.id.clone().unwrap_or_else(os_user),
            session_id,
            project_dir: std::env::var("CLAUDE_PROJECT_DIR")
                .ok()
                .filter(|d| !d.is_empty()),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            home: std::env::var_os("HOME").map(PathBuf::from),
            action_types: self.action_types.clone(),
            behavry,
        }
    }
}

/// The OS user running behavry, the default `requester.id`: `$USER`, else the account name.
pub fn os_user() -> String {
    if let Some(user) = ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    {
        return user;
    }
    // SAFETY: getuid cannot fail. getpwuid returns null or a pointer to a static record, which is
    // read (and copied) at once; behavry calls this once, before its threads use the record.
    unsafe {
        let uid = libc::getuid();
        let pw = libc::getpwuid(uid);
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            if let Ok(name) = std::ffi::CStr::from_ptr((*pw).pw_name).to_str() {
                return name.to_owned();
            }
        }
        format!("uid:{uid}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_default() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::load(&dir.path().join("config.toml")).unwrap();
        assert_eq!(cfg.agent.role, "developer");
        assert_eq!(cfg.agent.risk_tier, "low");
        assert!(cfg.action_types.is_empty());
        assert_eq!(cfg.wrap.max_held, 8);
    }

    #[test]
    fn mode_and_filtering_are_global_with_per_server_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[wrap]\nmode = \"monitor\"\n[servers.fs]\nmode = \"enforce\"\nfilter_denied_tools = true\n",
        )
        .unwrap();
        let cfg = Config::load(&path).unwrap();
        assert_eq!(cfg.mode_for("fs"), Mode::Enforce);
        assert_eq!(cfg.mode_for("gh"), Mode::Monitor);
        assert!(cfg.filters_denied_tools("fs"));
        assert!(!cfg.filters_denied_tools("gh"));
        assert_eq!(Config::default().mode_for("fs"), Mode::Enforce);
        std::fs::write(&path, "[wrap]\nmode = \"watch\"\n").unwrap();
        assert!(Config::load(&path).is_err());
    }

    #[test]
    fn reads_the_held_call_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[wrap]\nmax_held = 3\n").unwrap();
        assert_eq!(Config::load(&path).unwrap().wrap.max_held, 3);
    }

    #[test]
    fn parses_overrides_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[agent]\nrole = \"ci\"\n[requester]\nid = \"me@example.com\"\n\
             [action_types]\n\"fs/run_query\" = \"read\"\n",
        )
        .unwrap();
        let cfg = Config::load(&path).unwrap();
        assert_eq!(cfg.agent.role, "ci");
        assert_eq!(cfg.requester.id.as_deref(), Some("me@example.com"));
        assert_eq!(cfg.action_types["fs/run_query"], ActionType::Read);

        std::fs::write(&path, "[agent]\nrolee = \"ci\"\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("rolee"), "{err}");

        std::fs::write(&path, "[action_types]\nx = \"explode\"\n").unwrap();
        assert!(Config::load(&path).is_err());
    }
}
