//! behavry's entries in Claude Code's `settings.json`: added without disturbing anything else,
//! removed exactly (only entries whose command runs `behavry hook`), written atomically.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// The events behavry answers.
pub const EVENTS: [&str; 3] = ["PreToolUse", "PostToolUse", "PostToolUseFailure"];

/// The `timeout` (seconds) of behavry's hook entries: room for a held call
/// (`[hook] escalate = "approve"`) to be approved; a decision without a person takes milliseconds.
pub const TIMEOUT_SECS: u64 = 300;

/// Which settings file: `~/.claude/settings.json`, the project's shared
/// `.claude/settings.json`, or its `.claude/settings.local.json` (not checked in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    User,
    Project,
    Local,
}

/// The settings file of `scope`; `home` and `project` as the caller found them.
pub fn file(scope: Scope, home: &Path, project: &Path) -> PathBuf {
    match scope {
        Scope::User => home.join(".claude/settings.json"),
        Scope::Project => project.join(".claude/settings.json"),
        Scope::Local => project.join(".claude/settings.local.json"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a JSON object ({why}); fix or move it, then run this again")]
    Invalid { path: PathBuf, why: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The shell command Claude Code runs: this binary, quoted, with `BEHAVRY_HOME` when one is set
/// (Claude Code's environment may not have it).
pub fn command(exe: &Path, behavry_home: Option<&Path>) -> String {
    let exe = shell_quote(&exe.display().to_string());
    match behavry_home {
        Some(home) => format!(
            "BEHAVRY_HOME={} {exe} hook",
            shell_quote(&home.display().to_string())
        ),
        None => format!("{exe} hook"),
    }
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@,".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Whether a hook command is one of ours: `[BEHAVRY_HOME=…] <…/behavry> hook`.
pub fn is_ours(command: &str) -> bool {
    let words = super::call::shell_words(command);
    let words: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .skip_while(|w| w.starts_with("BEHAVRY_HOME="))
        .collect();
    matches!(words.as_slice(), [exe, "hook"] if Path::new(exe).file_name().is_some_and(|n| n == "behavry"))
}

/// `settings` with behavry's entries for every event in [`EVENTS`] (replacing earlier ones of
/// ours, so installing twice changes nothing). Everything else is kept as it was.
pub fn install(mut settings: Value, command: &str) -> Result<Value, String> {
    settings = uninstall(settings)?;
    let root = settings
        .as_object_mut()
        .ok_or("the settings are not a JSON object")?;
    let hooks = root
        .entry("hooks")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or("`hooks` is not an object")?;
    for event in EVENTS {
        let groups = hooks
            .entry(event)
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .ok_or_else(|| format!("`hooks.{event}` is not an array"))?;
        groups.push(json!({
            "matcher": "*",
            "hooks": [{"type": "command", "command": command, "timeout": TIMEOUT_SECS}]
        }));
    }
    Ok(settings)
}

/// `settings` without behavry's entries; a matcher group, event or `hooks` object left empty by
/// that is removed too (one that was empty before is kept).
pub fn uninstall(mut settings: Value) -> Result<Value, String> {
    let Some(root) = settings.as_object_mut() else {
        return Err("the settings are not a JSON object".into());
    };
    let Some(hooks) = root.get_mut("hooks") else {
        return Ok(settings);
    };
    let hooks = hooks.as_object_mut().ok_or("`hooks` is not an object")?;
    let mut emptied_events = Vec::new();
    for (event, groups) in hooks.iter_mut() {
        let Some(groups) = groups.as_array_mut() else {
            continue;
        };
        let before = groups.len();
        groups.retain_mut(|group| {
            let Some(list) = group.get_mut("hooks").and_then(Value::as_array_mut) else {
                return true;
            };
            let had = list.len();
            list.retain(|h| {
                !h.get("command")
                    .and_then(Value::as_str)
                    .is_some_and(is_ours)
            });
            !(list.is_empty() && had > 0)
        });
        if groups.is_empty() && before > 0 {
            emptied_events.push(event.clone());
        }
    }
    for event in emptied_events {
        hooks.remove(&event);
    }
    if hooks.is_empty() {
        root.remove("hooks");
    }
    Ok(settings)
}

/// The events behavry's entries in `settings` answer, for `status` (in [`EVENTS`] order).
pub fn installed(settings: &Value) -> Vec<String> {
    let ours = |groups: &Value| {
        groups.as_array().is_some_and(|groups| {
            groups.iter().any(|g| {
                g.get("hooks").and_then(Value::as_array).is_some_and(|l| {
                    l.iter().any(|h| {
                        h.get("command")
                            .and_then(Value::as_str)
                            .is_some_and(is_ours)
                    })
                })
            })
        })
    };
    EVENTS
        .iter()
        .filter(|event| {
            settings
                .pointer(&format!("/hooks/{event}"))
                .is_some_and(ours)
        })
        .map(|event| (*event).to_owned())
        .collect()
}

/// Reads a settings file; a missing file is `{}`.
pub fn read(path: &Path) -> Result<Value, SettingsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(json!({})),
        Err(source) => {
            return Err(SettingsError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if text.trim().is_empty() {
        return Ok(json!({}));
    }
    let value: Value = serde_json::from_str(&text).map_err(|e| SettingsError::Invalid {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    if !value.is_object() {
        return Err(SettingsError::Invalid {
            path: path.to_path_buf(),
            why: "the top level is not an object".into(),
        });
    }
    Ok(value)
}

/// Writes `settings` to `path` atomically (a temporary file in the same directory, synced, then
/// renamed over it), keeping the old file's permissions. Claude Code never sees half a file.
pub fn write(path: &Path, settings: &Value) -> Result<(), SettingsError> {
    use std::io::Write as _;
    let err = |source| SettingsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut text = serde_json::to_string_pretty(settings).map_err(|e| err(e.into()))?;
    text.push('\n');
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.behavry-{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CMD: &str = "/usr/local/bin/behavry hook";

    fn theirs() -> Value {
        json!({
            "model": "opus",
            "permissions": {"allow": ["Bash(ls:*)"]},
            "hooks": {
                "PreToolUse": [
                    {"matcher": "Bash", "hooks": [{"type": "command", "command": "~/bin/audit.sh"}]}
                ],
                "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}]
            }
        })
    }

    #[test]
    fn install_adds_three_entries_and_keeps_everything_else() {
        let s = install(theirs(), CMD).unwrap();
        assert_eq!(s["model"], "opus");
        assert_eq!(s["permissions"], theirs()["permissions"]);
        assert_eq!(s["hooks"]["Stop"], theirs()["hooks"]["Stop"]);
        let pre = s["hooks"]["PreToolUse"].as_array().unwrap();
        assert_eq!(pre.len(), 2);
        assert_eq!(pre[0], theirs()["hooks"]["PreToolUse"][0]);
        assert_eq!(pre[1]["matcher"], "*");
        assert_eq!(pre[1]["hooks"][0]["command"], CMD);
        assert_eq!(pre[1]["hooks"][0]["timeout"], TIMEOUT_SECS);
        assert_eq!(installed(&s), EVENTS);
        // Twice is once.
        assert_eq!(install(s.clone(), CMD).unwrap(), s);
        // A moved binary replaces the old entry.
        let moved = install(s, "/opt/behavry hook").unwrap();
        assert_eq!(moved["hooks"]["PreToolUse"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn uninstall_removes_exactly_ours() {
        assert_eq!(
            uninstall(install(theirs(), CMD).unwrap()).unwrap(),
            theirs()
        );
        assert_eq!(
            uninstall(install(json!({}), CMD).unwrap()).unwrap(),
            json!({})
        );
        // Ours sharing a group with someone else's: only ours goes.
        let shared = json!({"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [
            {"type": "command", "command": "BEHAVRY_HOME=/x '/my dir/behavry' hook"},
            {"type": "command", "command": "other"}
        ]}]}});
        let left = uninstall(shared).unwrap();
        assert_eq!(
            left["hooks"]["PreToolUse"][0]["hooks"],
            json!([{"type": "command", "command": "other"}])
        );
        // Empty things that were empty before stay.
        let empty = json!({"hooks": {"PreToolUse": [], "Stop": [{"hooks": []}]}});
        assert_eq!(uninstall(empty.clone()).unwrap(), empty);
        assert!(uninstall(json!([])).is_err());
        assert!(install(json!({"hooks": []}), CMD).is_err());
    }

    #[test]
    fn ours_is_recognised_by_its_command() {
        for ours in [
            "behavry hook",
            "/usr/bin/behavry hook",
            "'/a b/behavry' hook",
            "BEHAVRY_HOME='/x y' /bin/behavry hook",
            &command(Path::new("/a b/it's/behavry"), Some(Path::new("/h o/me"))),
        ] {
            assert!(is_ours(ours), "{ours}");
        }
        for not in [
            "behavry hook --x",
            "behavryx hook",
            "behavry wrap",
            "echo behavry hook",
            "",
        ] {
            assert!(!is_ours(not), "{not}");
        }
    }

    #[test]
    fn files_are_written_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(Scope::Project, dir.path(), dir.path());
        assert_eq!(read(&path).unwrap(), json!({}));
        write(&path, &theirs()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = install(read(&path).unwrap(), CMD).unwrap();
        write(&path, &s).unwrap();
        assert_eq!(read(&path).unwrap(), s);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
        std::fs::write(&path, "{ not json").unwrap();
        assert!(read(&path)
            .unwrap_err()
            .to_string()
            .contains("fix or move it"));
        assert_eq!(
            file(Scope::Local, Path::new("/h"), Path::new("/p")),
            Path::new("/p/.claude/settings.local.json")
        );
    }
}
