//! `behavry claude managed`: Claude Code's managed files for a team's servers, for an
//! administrator to deploy with their MDM.
//!
//! Claude Code reads `managed-mcp.json` and `managed-settings.json` from `/etc/claude-code/`
//! (macOS: `/Library/Application Support/ClaudeCode/`), and they beat every user setting:
//! `managed-mcp.json` is the server set, `allowedMcpServers[].serverCommand` admits only servers
//! whose argv is exactly one listed, and `allowManagedMcpServersOnly` / `allowManagedHooksOnly`
//! keep users from adding their own servers and hooks. Every server here runs behind
//! `behavry wrap`, and behavry's hooks decide Claude Code's own tools.
//!
//! This command only writes the two files into `--out` and says where they go: installing them
//! needs root on every machine, which is the MDM's job, never behavry's.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::hook::settings;

/// Write managed-mcp.json and managed-settings.json for a team's servers (prints; never installs)
#[derive(Debug, clap::Args)]
#[command(
    after_help = "team.toml lists the servers, each run behind `behavry wrap`:\n\n  \
    [servers.fs]\n  \
    command = [\"npx\", \"-y\", \"@modelcontextprotocol/server-filesystem\", \"/srv/code\"]\n  \
    env = { LOG_LEVEL = \"warn\" }\n\n\
    Example:\n  \
    behavry claude managed --servers team.toml --out ./managed --behavry /usr/local/bin/behavry\n\n\
    Then deploy both files (root-owned, mode 644) to /etc/claude-code/ (macOS: \
    /Library/Application Support/ClaudeCode/) with your MDM, and the system config to \
    /etc/behavry/config.toml."
)]
pub struct ManagedArgs {
    /// The team's servers (`[servers.NAME] command = [...]`, optional `env`)
    #[arg(long, value_name = "FILE")]
    servers: PathBuf,
    /// Directory to write managed-mcp.json and managed-settings.json into (created if missing)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Where behavry is installed on the machines (absolute) [default: this binary's path]. The
    /// allowlist matches the command exactly, so it must be the same path everywhere
    #[arg(long, value_name = "PATH")]
    behavry: Option<PathBuf>,
}

/// `team.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamFile {
    #[serde(default)]
    servers: BTreeMap<String, TeamServer>,
}

/// `[servers.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamServer {
    /// The server's program and arguments.
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

/// Where Claude Code reads managed files on this platform and the other.
const LINUX_DIR: &str = "/etc/claude-code/";
const MACOS_DIR: &str = "/Library/Application Support/ClaudeCode/";

pub fn run(args: ManagedArgs) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(&args.servers)
        .with_context(|| format!("cannot read {}", args.servers.display()))?;
    let team = parse(&text).map_err(|why| anyhow::anyhow!("{}: {why}", args.servers.display()))?;
    let behavry = match args.behavry {
        Some(path) if path.is_absolute() => path,
        Some(path) => bail!(
            "--behavry {} must be an absolute path: Claude Code matches the command exactly",
            path.display()
        ),
        None => std::env::current_exe()
            .context("cannot find behavry's own path; give it with --behavry PATH")?,
    };
    let behavry = behavry.display().to_string();
    if std::env::var_os("BEHAVRY_HOME").is_some_and(|h| !h.is_empty()) {
        crate::note!(
            "BEHAVRY_HOME is set here but is not written into the managed files: the wrappers \
             use each user's own behavry directory, and /etc/behavry/config.toml"
        );
    }
    let mcp = managed_mcp(&team, &behavry);
    let managed_settings = managed_settings(&team, &behavry)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mcp_file = args.out.join("managed-mcp.json");
    let settings_file = args.out.join("managed-settings.json");
    write_json(&mcp_file, &mcp)?;
    write_json(&settings_file, &managed_settings)?;

    let names: Vec<&str> = team.servers.keys().map(String::as_str).collect();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "wrote {} ({} server(s), each behind behavry: {})",
        mcp_file.display(),
        names.len(),
        names.join(", ")
    )?;
    writeln!(
        out,
        "wrote {} (a fragment: the allowlist, behavry's hooks and the two locks)",
        settings_file.display()
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "Deploy them (root-owned, mode 644) with your MDM; behavry installs nothing:"
    )?;
    writeln!(
        out,
        "  Linux: {LINUX_DIR}managed-mcp.json and {LINUX_DIR}managed-settings.json"
    )?;
    writeln!(
        out,
        "  macOS: {MACOS_DIR}managed-mcp.json and {MACOS_DIR}managed-settings.json"
    )?;
    writeln!(
        out,
        "If the machines already have a managed-settings.json, merge these keys into it."
    )?;
    writeln!(
        out,
        "Every machine needs behavry at {behavry} (the allowlist matches that exact path) and \
         the team's system config at {}.",
        crate::config::SYSTEM_CONFIG
    )?;
    Ok(0)
}

/// Reads `team.toml`, checking what Claude Code and `behavry wrap` would refuse later.
fn parse(text: &str) -> Result<TeamFile, String> {
    let team: TeamFile = toml::from_str(text).map_err(|e| e.to_string())?;
    if team.servers.is_empty() {
        return Err(
            "no servers; add one as `[servers.NAME]` with `command = [\"program\", …]`".into(),
        );
    }
    for (name, server) in &team.servers {
        // The characters Claude Code allows in a server name (and no '/', which `wrap` refuses).
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(format!(
                "server name {name:?} may hold only letters, digits, '-' and '_'"
            ));
        }
        if server.command.first().is_none_or(String::is_empty) {
            return Err(format!(
                "[servers.{name}] command is empty; give the program and its arguments, e.g. \
                 command = [\"npx\", \"-y\", \"@modelcontextprotocol/server-filesystem\", \"/srv\"]"
            ));
        }
    }
    Ok(team)
}

/// The argv Claude Code runs for server `name`: `<behavry> wrap --name NAME -- <command…>`.
fn server_command(behavry: &str, name: &str, server: &TeamServer) -> Vec<String> {
    let mut argv = vec![
        behavry.to_owned(),
        "wrap".into(),
        "--name".into(),
        name.to_owned(),
        "--".into(),
    ];
    argv.extend(server.command.iter().cloned());
    argv
}

/// `managed-mcp.json`: the team's servers, each behind `behavry wrap`.
fn managed_mcp(team: &TeamFile, behavry: &str) -> Value {
    let servers: Map<String, Value> = team
        .servers
        .iter()
        .map(|(name, server)| {
            let argv = server_command(behavry, name, server);
            let mut entry = json!({"type": "stdio", "command": argv[0], "args": argv[1..]});
            if !server.env.is_empty() {
                entry["env"] = json!(server.env);
            }
            (name.clone(), entry)
        })
        .collect();
    json!({ "mcpServers": servers })
}

/// The `managed-settings.json` fragment: only these servers, exactly as wrapped; behavry's hooks
/// (as `behavry claude hook install` writes them) and no one else's.
fn managed_settings(team: &TeamFile, behavry: &str) -> anyhow::Result<Value> {
    let allowed: Vec<Value> = team
        .servers
        .iter()
        .map(|(name, server)| json!({"serverCommand": server_command(behavry, name, server)}))
        .collect();
    let base = json!({
        "allowedMcpServers": allowed,
        "allowManagedMcpServersOnly": true,
        "allowManagedHooksOnly": true,
    });
    settings::install(base, &settings::command(Path::new(behavry), None))
        .map_err(|why| anyhow::anyhow!("internal error building the hook entries: {why}"))
}

/// Writes `value` as indented JSON, replacing the file whole (a temporary file renamed over it).
fn write_json(path: &Path, value: &Value) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, text)
        .and_then(|()| std::fs::rename(&temp, path))
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEAM: &str = r#"
[servers.fs]
command = ["npx", "-y", "@modelcontextprotocol/server-filesystem", "/srv/code"]
env = { LOG_LEVEL = "warn" }

[servers.gh]
command = ["github-mcp-server", "stdio"]
"#;

    #[test]
    fn wraps_every_server_and_allows_exactly_those_commands() {
        let team = parse(TEAM).unwrap();
        let mcp = managed_mcp(&team, "/usr/local/bin/behavry");
        assert_eq!(
            mcp,
            json!({"mcpServers": {
                "fs": {
                    "type": "stdio",
                    "command": "/usr/local/bin/behavry",
                    "args": ["wrap", "--name", "fs", "--", "npx", "-y",
                             "@modelcontextprotocol/server-filesystem", "/srv/code"],
                    "env": {"LOG_LEVEL": "warn"}
                },
                "gh": {
                    "type": "stdio",
                    "command": "/usr/local/bin/behavry",
                    "args": ["wrap", "--name", "gh", "--", "github-mcp-server", "stdio"]
                }
            }})
        );
        let s = managed_settings(&team, "/usr/local/bin/behavry").unwrap();
        assert_eq!(
            s["allowedMcpServers"],
            json!([
                {"serverCommand": ["/usr/local/bin/behavry", "wrap", "--name", "fs", "--", "npx",
                                   "-y", "@modelcontextprotocol/server-filesystem", "/srv/code"]},
                {"serverCommand": ["/usr/local/bin/behavry", "wrap", "--name", "gh", "--",
                                   "github-mcp-server", "stdio"]}
            ])
        );
        // Each allowed command is the managed entry's argv, element for element.
        for (name, entry) in mcp["mcpServers"].as_object().unwrap() {
            let mut argv = vec![entry["command"].clone()];
            argv.extend(entry["args"].as_array().unwrap().iter().cloned());
            assert!(
                s["allowedMcpServers"]
                    .as_array()
                    .unwrap()
                    .contains(&json!({"serverCommand": argv})),
                "{name}"
            );
        }
        assert_eq!(s["allowManagedMcpServersOnly"], true);
        assert_eq!(s["allowManagedHooksOnly"], true);
        // The hooks are the ones `behavry claude hook install` writes.
        let installed = settings::install(json!({}), "/usr/local/bin/behavry hook").unwrap();
        assert_eq!(s["hooks"], installed["hooks"]);
        assert_eq!(settings::installed(&s).len(), settings::EVENTS.len(), "{s}");
    }

    #[test]
    fn refuses_what_claude_code_or_wrap_would() {
        let table: &[(&str, &str)] = &[
            ("", "no servers"),
            ("[servers.fs]\ncommand = []\n", "command is empty"),
            ("[servers.fs]\ncommand = [\"\"]\n", "command is empty"),
            ("[servers.\"a/b\"]\ncommand = [\"x\"]\n", "only letters"),
            ("[servers.\"a b\"]\ncommand = [\"x\"]\n", "only letters"),
            ("[servers.fs]\ncmd = [\"x\"]\n", "unknown field `cmd`"),
            ("[servers.fs]\ncommand = \"npx x\"\n", "invalid type"),
        ];
        for (text, words) in table {
            let err = parse(text).unwrap_err();
            assert!(err.contains(words), "{text:?}: {err}");
        }
    }
}
