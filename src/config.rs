//! Where behavry keeps its files, the user's `config.toml`, and the system one an administrator
//! installs.
//!
//! `BEHAVRY_HOME=<dir>` puts everything under one directory (config, policies, database), which tests
//! and separate profiles rely on. Without it, the platform's config dir holds `config.toml` and
//! `policies/`, and its data dir holds `behavry.db`.
//!
//! The system config ([`SYSTEM_CONFIG`]) is the team's: its `[bundles]`, `[keys]`,
//! `[decision_log]` and `local` replace the user's, so an agent running as the user cannot repoint
//! or disable them; every other setting merges with the user's winning. It is trusted only when
//! root owns it and every directory above it, and none of them is writable by others
//! ([`trusted`]); otherwise it is refused, never skipped.

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
    /// The system config exists but cannot be used: until it is fixed, `wrap` denies every
    /// governed call rather than run on the user's settings alone.
    #[error("the system config {path} is refused: {why}")]
    System { path: PathBuf, why: String },
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
    /// The configuration in force: the user's `config.toml` at `path` merged with the system
    /// config, if there is one (see the module doc). A missing user file means all defaults; a
    /// malformed one is an error, and so is a system config that exists but cannot be trusted.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let system = system_config()?;
        Config::load_layers(system.as_deref(), path)
    }

    /// Reads the user's `config.toml` alone; a missing file is the default configuration.
    pub fn load_user(path: &Path) -> Result<Config, ConfigError> {
        let text = read_user(path)?;
        parse(&text, path)
    }

    /// `user` merged with the system config at `system` (already located; its ownership is checked
    /// here).
    pub fn load_layers(system: Option<&Path>, user: &Path) -> Result<Config, ConfigError> {
        let Some(system) = system else {
            return Config::load_user(user);
        };
        let refused = |why: String| ConfigError::System {
            path: system.to_path_buf(),
            why,
        };
        let text = read_trusted(system).map_err(refused)?;
        // Each file is checked on its own first, so an error names the file and line it is in.
        parse(&text, system).map_err(|e| refused(e.to_string()))?;
        let system_table: toml::Table =
            toml::from_str(&text).map_err(|e| refused(e.to_string()))?;
        let user_text = read_user(user)?;
        parse(&user_text, user)?;
        let mut user_table: toml::Table =
            toml::from_str(&user_text).map_err(|e| invalid(user, e))?;
        for key in TEAM_KEYS {
            if let Some(mine) = user_table.remove(key) {
                if system_table.get(key) != Some(&mine) {
                    crate::note!(
                        "{}: `{key}` is ignored: the system config {} sets the team settings \
                         ({}); ask its administrator to change them",
                        user.display(),
                        system.display(),
                        TEAM_KEYS.join(", ")
                    );
                }
            }
        }
        // Monitor mode forwards every call whatever the policy says: under a system config only
        // the administrator may choose it, or an agent that can edit the user's file could switch
        // the team's policy off.
        for (where_, mode) in take_modes(&mut user_table) {
            if mode.as_str() != Some("enforce") {
                crate::note!(
                    "{}: `{where_}` is ignored: under the system config {} only its administrator \
                     sets the mode",
                    user.display(),
                    system.display()
                );
            }
        }
        let mut merged = system_table;
        merge(&mut merged, user_table);
        Config::deserialize(merged).map_err(|e| invalid(user, e))
    }
}

/// Removes `[wrap] mode` and every `[servers.NAME] mode` from a user's table, naming each.
fn take_modes(table: &mut toml::Table) -> Vec<(String, toml::Value)> {
    let mut taken = Vec::new();
    if let Some(toml::Value::Table(wrap)) = table.get_mut("wrap") {
        if let Some(mode) = wrap.remove("mode") {
            taken.push(("[wrap] mode".to_owned(), mode));
        }
    }
    if let Some(toml::Value::Table(servers)) = table.get_mut("servers") {
        for (name, server) in servers.iter_mut() {
            if let toml::Value::Table(server) = server {
                if let Some(mode) = server.remove("mode") {
                    taken.push((format!("[servers.{name}] mode"), mode));
                }
            }
        }
    }
    taken
}

/// Where an administrator installs the system config.
pub const SYSTEM_CONFIG: &str = if cfg!(target_os = "macos") {
    "/Library/Application Support/behavry/config.toml"
} else {
    "/etc/behavry/config.toml"
};

/// Names another system config, for tests and machines without one at [`SYSTEM_CONFIG`]. It is
/// honoured only while that file does not exist, and passes the same ownership checks: a variable
/// the agent can set must never be able to remove or replace the administrator's file.
pub const SYSTEM_CONFIG_ENV: &str = "BEHAVRY_SYSTEM_CONFIG";

/// The settings only the system config decides once there is one (the user's are ignored).
const TEAM_KEYS: [&str; 4] = ["bundles", "keys", "decision_log", "local"];

/// The system config in force on this machine, if any (see [`locate_system`]).
pub fn system_config() -> Result<Option<PathBuf>, ConfigError> {
    locate_system(
        Path::new(SYSTEM_CONFIG),
        std::env::var_os(SYSTEM_CONFIG_ENV).filter(|v| !v.is_empty()),
    )
}

/// The system config: `fixed` whenever anything exists there (even a dangling link, which is then
/// refused), else `override_path`. A `fixed` path whose existence cannot be told (a directory on
/// the way that cannot be searched) is an error, never "absent".
pub fn locate_system(
    fixed: &Path,
    override_path: Option<std::ffi::OsString>,
) -> Result<Option<PathBuf>, ConfigError> {
    match std::fs::symlink_metadata(fixed) {
        Ok(_) => return Ok(Some(fixed.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ConfigError::System {
                path: fixed.to_path_buf(),
                why: format!(
                    "cannot tell whether it exists ({e}); make its directory readable \
                     (`chmod 755 {}`)",
                    fixed.parent().unwrap_or(Path::new("/")).display()
                ),
            })
        }
    }
    let Some(path) = override_path.map(PathBuf::from) else {
        return Ok(None);
    };
    if !path.is_absolute() {
        return Err(ConfigError::System {
            path,
            why: format!("{SYSTEM_CONFIG_ENV} must be an absolute path"),
        });
    }
    Ok(Some(path))
}

/// Reads the system config at `path` once it is [`trusted`]; the text comes from the very file
/// that was checked.
fn read_trusted(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let real = std::fs::canonicalize(path).map_err(|e| format!("cannot resolve it: {e}"))?;
    let mut file = std::fs::File::open(&real).map_err(|e| format!("cannot open it: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read its owner: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", real.display()));
    }
    trusted(&real, &meta)?;
    for dir in real.ancestors().skip(1) {
        let meta = std::fs::metadata(dir)
            .map_err(|e| format!("cannot read the owner of {}: {e}", dir.display()))?;
        trusted(dir, &meta)?;
    }
    // The path as named matters too: whoever can write a directory on it, or owns a link on it,
    // can point it elsewhere.
    for step in path.ancestors() {
        let meta = std::fs::symlink_metadata(step)
            .map_err(|e| format!("cannot read the owner of {}: {e}", step.display()))?;
        if meta.file_type().is_symlink() || meta.is_dir() {
            trusted(step, &meta)?;
        }
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| format!("cannot read it: {e}"))?;
    Ok(text)
}

/// Whether `path` (the system config, a directory above it or a link on the way) is safe from
/// the user: owned by root and not writable by group or others. A sticky directory writable by all (`/tmp`) passes
/// as an ancestor: there nobody but an entry's owner and root may rename or remove it, so the
/// root-owned path below cannot be swapped.
pub fn trusted(path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    const STICKY: u32 = 0o1000;
    if meta.uid() != 0 {
        return Err(format!(
            "{} is owned by uid {}, not root; run `sudo chown root {}`",
            path.display(),
            meta.uid(),
            path.display()
        ));
    }
    let sticky_dir = meta.is_dir() && meta.mode() & STICKY != 0;
    // A link's own mode bits mean nothing (always 777 on Linux); its owner and directory count.
    let link = meta.file_type().is_symlink();
    if meta.mode() & 0o022 != 0 && !sticky_dir && !link {
        return Err(format!(
            "{} is writable by {}; run `sudo chmod go-w {}`",
            path.display(),
            if meta.mode() & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            },
            path.display()
        ));
    }
    Ok(())
}

/// The user's file; a missing one is empty.
fn read_user(path: &Path) -> Result<String, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|e| invalid(path, e))
}

fn invalid(path: &Path, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// `over` laid on `base`: tables merge key by key, anything else in `over` replaces `base`'s.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base)), toml::Value::Table(over)) => merge(base, over),
            (_, value) => {
                base.insert(key, value);
            }
        }
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
        let cfg = Config::load_user(&dir.path().join("config.toml")).unwrap();
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
        let cfg = Config::load_user(&path).unwrap();
        assert_eq!(cfg.mode_for("fs"), Mode::Enforce);
        assert_eq!(cfg.mode_for("gh"), Mode::Monitor);
        assert!(cfg.filters_denied_tools("fs"));
        assert!(!cfg.filters_denied_tools("gh"));
        assert_eq!(Config::default().mode_for("fs"), Mode::Enforce);
        std::fs::write(&path, "[wrap]\nmode = \"watch\"\n").unwrap();
        assert!(Config::load_user(&path).is_err());
    }

    #[test]
    fn reads_the_held_call_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[wrap]\nmax_held = 3\n").unwrap();
        assert_eq!(Config::load_user(&path).unwrap().wrap.max_held, 3);
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
        let cfg = Config::load_user(&path).unwrap();
        assert_eq!(cfg.agent.role, "ci");
        assert_eq!(cfg.requester.id.as_deref(), Some("me@example.com"));
        assert_eq!(cfg.action_types["fs/run_query"], ActionType::Read);

        std::fs::write(&path, "[agent]\nrolee = \"ci\"\n").unwrap();
        let err = Config::load_user(&path).unwrap_err().to_string();
        assert!(err.contains("rolee"), "{err}");

        std::fs::write(&path, "[action_types]\nx = \"explode\"\n").unwrap();
        assert!(Config::load_user(&path).is_err());
    }

    /// A root-owned 0755 directory for system configs (tests run as root, see `.ci/run`).
    fn system_dir() -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    fn as_root() {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        assert_eq!(
            uid, 0,
            "these tests chown files: run them as root (as CI does)"
        );
    }

    fn chown(path: &Path, uid: u32) {
        std::os::unix::fs::chown(path, Some(uid), None).unwrap();
    }

    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn the_system_config_must_be_root_owned_and_closed_to_others() {
        as_root();
        let user = tempfile::tempdir().unwrap();
        let user = user.path().join("config.toml");
        let dir = system_dir();
        let sub = dir.path().join("behavry");
        std::fs::create_dir(&sub).unwrap();
        chmod(&sub, 0o755);
        let system = sub.join("config.toml");
        std::fs::write(&system, "local = \"off\"\n").unwrap();
        chmod(&system, 0o644);
        let load = || Config::load_layers(Some(&system), &user);
        assert_eq!(load().unwrap().local, crate::team::Local::Off);

        // (what to break, how, the words the refusal must hold)
        type Break = Box<dyn Fn()>;
        let (s, d) = (system.clone(), sub.clone());
        let table: Vec<(Break, Break, &str)> = vec![
            (
                Box::new({
                    let s = s.clone();
                    move || chown(&s, 65534)
                }),
                Box::new({
                    let s = s.clone();
                    move || chown(&s, 0)
                }),
                "owned by uid 65534, not root",
            ),
            (
                Box::new({
                    let s = s.clone();
                    move || chmod(&s, 0o664)
                }),
                Box::new({
                    let s = s.clone();
                    move || chmod(&s, 0o644)
                }),
                "writable by its group; run `sudo chmod go-w",
            ),
            (
                Box::new({
                    let s = s.clone();
                    move || chmod(&s, 0o646)
                }),
                Box::new({
                    let s = s.clone();
                    move || chmod(&s, 0o644)
                }),
                "writable by everyone",
            ),
            (
                Box::new({
                    let d = d.clone();
                    move || chown(&d, 65534)
                }),
                Box::new({
                    let d = d.clone();
                    move || chown(&d, 0)
                }),
                "behavry is owned by uid 65534",
            ),
            (
                Box::new({
                    let d = d.clone();
                    move || chmod(&d, 0o775)
                }),
                Box::new({
                    let d = d.clone();
                    move || chmod(&d, 0o755)
                }),
                "behavry is writable by its group",
            ),
            (
                // World-writable without the sticky bit: the file could be renamed away.
                Box::new({
                    let d = d.clone();
                    move || chmod(&d, 0o777)
                }),
                Box::new({
                    let d = d.clone();
                    move || chmod(&d, 0o755)
                }),
                "behavry is writable by everyone",
            ),
            (
                Box::new({
                    let s = s.clone();
                    move || std::fs::write(&s, "local = \"of\"\n").unwrap()
                }),
                Box::new({
                    let s = s.clone();
                    move || std::fs::write(&s, "local = \"off\"\n").unwrap()
                }),
                "unknown variant `of`",
            ),
        ];
        for (bad, fix, words) in table {
            bad();
            let err = load().unwrap_err();
            assert!(matches!(err, ConfigError::System { .. }), "{err}");
            assert!(err.to_string().contains(words), "{err} lacks {words:?}");
            fix();
            assert_eq!(load().unwrap().local, crate::team::Local::Off);
        }

        // A sticky world-writable directory above (like /tmp) cannot have the file swapped.
        chmod(&sub, 0o1777);
        assert!(load().is_ok());
        chmod(&sub, 0o755);

        // A link to a file the user owns is judged by that file.
        let theirs = user.with_file_name("theirs.toml");
        std::fs::write(&theirs, "").unwrap();
        chown(&theirs, 65534);
        std::fs::remove_file(&system).unwrap();
        std::os::unix::fs::symlink(&theirs, &system).unwrap();
        assert!(load().unwrap_err().to_string().contains("not root"));
        // So is a link in a directory others can write: they could point it elsewhere.
        std::fs::remove_file(&system).unwrap();
        let real = dir.path().join("real.toml");
        std::fs::write(&real, "local = \"off\"\n").unwrap();
        chmod(&real, 0o644);
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        chmod(&open, 0o775);
        let linked = open.join("config.toml");
        std::os::unix::fs::symlink(&real, &linked).unwrap();
        let err = Config::load_layers(Some(&linked), &user).unwrap_err();
        assert!(
            err.to_string().contains("open is writable by its group"),
            "{err}"
        );
        chmod(&open, 0o755);
        assert!(Config::load_layers(Some(&linked), &user).is_ok());
        // In a sticky directory, the link's owner may replace it: it must be root.
        chmod(&open, 0o1777);
        assert!(Config::load_layers(Some(&linked), &user).is_ok());
        std::os::unix::fs::lchown(&linked, Some(65534), None).unwrap();
        let err = Config::load_layers(Some(&linked), &user).unwrap_err();
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");
        std::fs::remove_file(&real).unwrap();
        std::fs::write(&theirs, "").unwrap();
        std::os::unix::fs::symlink(&theirs, &system).unwrap();
        // A dangling one is refused, not taken for "no system config".
        std::fs::remove_file(&theirs).unwrap();
        assert!(matches!(load(), Err(ConfigError::System { .. })));
    }

    #[test]
    fn the_override_never_displaces_an_existing_system_config() {
        let dir = system_dir();
        let fixed = dir.path().join("config.toml");
        let other = std::ffi::OsString::from("/somewhere/else.toml");
        let locate = |o: Option<&std::ffi::OsString>| locate_system(&fixed, o.cloned()).unwrap();
        assert_eq!(locate(None), None);
        assert_eq!(
            locate(Some(&other)),
            Some(PathBuf::from("/somewhere/else.toml"))
        );
        assert!(locate_system(&fixed, Some("relative.toml".into())).is_err());
        std::fs::write(&fixed, "").unwrap();
        assert_eq!(locate(Some(&other)), Some(fixed.clone()));
        // Even a dangling link at the fixed place keeps the override out (and is refused later).
        std::fs::remove_file(&fixed).unwrap();
        std::os::unix::fs::symlink(dir.path().join("gone"), &fixed).unwrap();
        assert_eq!(locate(Some(&other)), Some(fixed.clone()));
    }

    #[test]
    fn team_settings_come_from_the_system_config_and_the_rest_merges() {
        as_root();
        let dir = system_dir();
        let system = dir.path().join("config.toml");
        let user = dir.path().join("user.toml");
        std::fs::write(
            &system,
            "local = \"off\"\n\
             [wrap]\napproval_timeout_secs = 60\nmax_held = 2\n\
             [bundles.org]\nurl = \"https://policies.example.com/b.tar.gz\"\n\
             signing = { keyid = \"org\" }\n\
             [keys.org]\nalgorithm = \"ES256\"\nkey_file = \"/etc/behavry/keys/org.pem\"\n\
             [decision_log.opa]\nurl = \"https://decisions.example.com/logs\"\n",
        )
        .unwrap();
        chmod(&system, 0o644);
        std::fs::write(
            &user,
            "local = \"merge\"\n\
             [wrap]\nmax_held = 5\nmode = \"monitor\"\n\
             [bundles.org]\nurl = \"http://127.0.0.1:1/mine.tar.gz\"\n\
             [bundles.extra]\nurl = \"file:///tmp/x.tar.gz\"\n\
             [decision_log]\nmax_backlog_rows = 1\n\
             [agent]\nrole = \"ci\"\n",
        )
        .unwrap();
        let cfg = Config::load_layers(Some(&system), &user).unwrap();
        assert_eq!(cfg.local, crate::team::Local::Off);
        assert_eq!(cfg.bundles.keys().collect::<Vec<_>>(), ["org"]);
        assert_eq!(
            cfg.bundles["org"].url,
            "https://policies.example.com/b.tar.gz"
        );
        assert_eq!(cfg.keys.keys().collect::<Vec<_>>(), ["org"]);
        assert_eq!(cfg.decision_log.max_backlog_rows, 1_000_000);
        assert!(cfg.decision_log.opa.is_some());
        // Other sections merge key by key, the user's winning.
        assert_eq!(cfg.wrap.max_held, 5);
        assert_eq!(cfg.wrap.approval_timeout_secs, 60);
        assert_eq!(cfg.agent.role, "ci");
        // ...but not the mode: monitor mode would switch the team's policy off.
        assert_eq!(cfg.wrap.mode, Mode::Enforce);
        std::fs::write(
            &user,
            "[servers.fs]\nmode = \"monitor\"\nfilter_denied_tools = true\n",
        )
        .unwrap();
        let cfg = Config::load_layers(Some(&system), &user).unwrap();
        assert_eq!(cfg.mode_for("fs"), Mode::Enforce);
        assert!(cfg.filters_denied_tools("fs"));
        // The administrator may choose it.
        std::fs::write(&system, "[servers.fs]\nmode = \"monitor\"\n").unwrap();
        let cfg = Config::load_layers(Some(&system), &user).unwrap();
        assert_eq!(cfg.mode_for("fs"), Mode::Monitor);

        // A system config without team settings still owns them: the user's are not used.
        std::fs::write(&system, "[wrap]\nmax_held = 2\n").unwrap();
        let cfg = Config::load_layers(Some(&system), &user).unwrap();
        assert!(cfg.bundles.is_empty());
        assert_eq!(cfg.local, crate::team::Local::Tighten);

        // An error in the user's file names the user's file, not the system's.
        std::fs::write(&user, "[wrap]\nmax_hold = 1\n").unwrap();
        match Config::load_layers(Some(&system), &user) {
            Err(ConfigError::Invalid { path, .. }) => assert_eq!(path, user),
            other => panic!("{other:?}"),
        }
    }
}
