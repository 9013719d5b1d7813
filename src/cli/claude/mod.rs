//! `behavry claude …`: puts behavry in front of the MCP servers Claude Code is configured with.
//!
//! Claude Code keeps stdio servers in three scopes: `project` in `./.mcp.json`, `user` in
//! `~/.claude.json` under `mcpServers`, `local` in `~/.claude.json` under
//! `projects["<absolute cwd>"].mcpServers` (`$CLAUDE_CONFIG_DIR/.claude.json` when that is set).
//! A wrapped entry runs `<behavry> wrap --name NAME -- <the entry's command and args>`; every
//! other field (`type`, `env`, …) stays as it was.
//!
//! `~/.claude.json` also holds much of Claude Code's own state, so only `mcpServers` entries are
//! ever changed, through span edits ([`json`]) that leave every other byte alone. Writes are
//! atomic (temporary file, fsync, rename) after a backup (`<file>.behavry.bak`); a file that is
//! not valid JSON is reported and left untouched.

mod json;
mod managed;

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use json::{Doc, Edit, Node};

/// Put behavry in front of Claude Code's MCP servers (or take it away)
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry claude status\n  \
    behavry claude wrap\n  \
    behavry claude add fs -- npx -y @modelcontextprotocol/server-filesystem $PWD\n  \
    behavry claude unwrap fs\n  \
    behavry claude managed --servers team.toml --out ./managed\n\n\
    Scopes, as in `claude mcp add --scope`: project = ./.mcp.json; user = ~/.claude.json; local = \
    ~/.claude.json for this directory only. Restart Claude Code (or run /mcp) to pick up changes.")]
pub struct ClaudeArgs {
    #[command(subcommand)]
    command: ClaudeCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ClaudeCommand {
    /// Add a server to Claude Code's config, wrapped by behavry
    Add {
        /// The server's name in Claude Code (and in policies: `input.resource.server`)
        name: String,
        /// Where Claude Code keeps the entry
        #[arg(long, value_enum, default_value_t = Scope::Local)]
        scope: Scope,
        /// The MCP server command and its arguments
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Wrap existing stdio servers in place (every scope, or only --scope; every server, or NAMEs)
    Wrap(Selection),
    /// Undo `wrap`: give the servers back their own command and args
    Unwrap(Selection),
    /// List every server in every scope and whether behavry wraps it, and behavry's hooks
    Status,
    /// Decide Claude Code's own tools (Bash, Write, Read, …) too, through its hooks
    #[command(subcommand)]
    Hook(super::hook::HookSettings),
    /// Write Claude Code's managed files for a team's servers, for an MDM (prints; never installs)
    Managed(managed::ManagedArgs),
}

#[derive(Debug, clap::Args)]
struct Selection {
    /// Only this scope [default: all three]
    #[arg(long, value_enum)]
    scope: Option<Scope>,
    /// Only these servers [default: all]
    #[arg(value_name = "NAME")]
    names: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scope {
    Local,
    Project,
    User,
}

impl Scope {
    const ALL: [Scope; 3] = [Scope::User, Scope::Local, Scope::Project];

    fn name(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Project => "project",
            Scope::User => "user",
        }
    }
}

pub fn run(args: ClaudeArgs) -> anyhow::Result<i32> {
    if let ClaudeCommand::Managed(args) = args.command {
        return managed::run(args);
    }
    let places = Places::resolve()?;
    match args.command {
        ClaudeCommand::Add {
            name,
            scope,
            command,
        } => add(&places, &name, scope, &command),
        ClaudeCommand::Wrap(selection) => change(&places, &selection, Change::Wrap),
        ClaudeCommand::Unwrap(selection) => change(&places, &selection, Change::Unwrap),
        ClaudeCommand::Status => status(&places),
        ClaudeCommand::Hook(action) => super::hook::settings(action),
        ClaudeCommand::Managed(args) => managed::run(args),
    }
}

/// Where each scope lives.
struct Places {
    claude_json: PathBuf,
    mcp_json: PathBuf,
    cwd: String,
    behavry: String,
}

impl Places {
    fn resolve() -> anyhow::Result<Places> {
        let dir = match std::env::var_os("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from)
                .context("HOME is not set, so ~/.claude.json cannot be found; set HOME")?,
        };
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let behavry = std::env::current_exe()
            .context("cannot find behavry's own path to put in Claude Code's config")?;
        Ok(Places {
            claude_json: dir.join(".claude.json"),
            mcp_json: cwd.join(".mcp.json"),
            cwd: cwd.display().to_string(),
            behavry: behavry.display().to_string(),
        })
    }

    fn file(&self, scope: Scope) -> &Path {
        match scope {
            Scope::Project => &self.mcp_json,
            Scope::User | Scope::Local => &self.claude_json,
        }
    }

    /// The keys leading from the file's root to the scope's `mcpServers` object.
    fn keys(&self, scope: Scope) -> Vec<&str> {
        match scope {
            Scope::Project | Scope::User => vec!["mcpServers"],
            Scope::Local => vec!["projects", &self.cwd, "mcpServers"],
        }
    }

    fn servers<'d>(&self, doc: &'d Doc, scope: Scope) -> Option<&'d Node> {
        self.keys(scope)
            .into_iter()
            .try_fold(&doc.root, |node, key| node.get(key))
    }
}

/// What an entry of `mcpServers` is.
#[derive(Debug, PartialEq)]
enum Entry {
    /// Runs `behavry wrap … -- command…`.
    Wrapped { command: Vec<String> },
    /// A stdio server behavry can wrap.
    Stdio { command: Vec<String> },
    /// An http/sse (or other non-stdio) server: behavry only governs stdio.
    Remote { kind: String },
    /// Something this tool does not understand; left alone.
    Unknown { why: String },
}

fn classify(entry: &Node) -> Entry {
    let kind = entry.get("type").and_then(Node::as_str);
    if entry.members().is_none() {
        return Entry::Unknown {
            why: "not an object".into(),
        };
    }
    if let Some(kind) = kind.filter(|k| *k != "stdio") {
        return Entry::Remote { kind: kind.into() };
    }
    let Some(program) = entry.get("command").and_then(Node::as_str) else {
        return match entry.get("url") {
            Some(_) => Entry::Remote { kind: "url".into() },
            None => Entry::Unknown {
                why: "no command".into(),
            },
        };
    };
    let args = match entry.get("args") {
        None => Vec::new(),
        Some(args) => match args.as_strings() {
            Some(args) => args,
            None => {
                return Entry::Unknown {
                    why: "args is not a list of strings".into(),
                }
            }
        },
    };
    let is_behavry = Path::new(program)
        .file_name()
        .is_some_and(|f| f == "behavry");
    if is_behavry && args.first().is_some_and(|a| a == "wrap") {
        if let Some(sep) = args.iter().position(|a| a == "--") {
            if sep + 1 < args.len() {
                return Entry::Wrapped {
                    command: args[sep + 1..].to_vec(),
                };
            }
        }
    }
    let mut command = vec![program.to_owned()];
    command.extend(args);
    Entry::Stdio { command }
}

/// `entry` running `command` behind behavry.
fn wrapped(entry: &Node, name: &str, behavry: &str, command: &[String]) -> Node {
    let mut args = vec!["wrap", "--name", name, "--"];
    args.extend(command.iter().map(String::as_str));
    let mut new = Node::new(entry.value.clone());
    new.set("command", Node::string(behavry), None);
    new.set("args", Node::strings(&args), Some("command"));
    new
}

/// `entry` running `command` itself again.
fn unwrapped(entry: &Node, command: &[String]) -> Node {
    let mut new = Node::new(entry.value.clone());
    new.set("command", Node::string(&command[0]), None);
    new.set("args", Node::strings(&command[1..]), Some("command"));
    new
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    Wrap,
    Unwrap,
}

/// What `change` does to the entry `name`: its new value (if it changes) and what to say about it.
fn plan(change: Change, name: &str, entry: &Node, behavry: &str) -> (Option<Node>, String) {
    match (change, classify(entry)) {
        (Change::Wrap, Entry::Stdio { command }) if name.contains('/') => (
            None,
            format!("left alone: the name contains '/' ({})", command.join(" ")),
        ),
        (Change::Wrap, Entry::Stdio { command }) => (
            Some(wrapped(entry, name, behavry, &command)),
            format!("wrapped: {}", command.join(" ")),
        ),
        (Change::Wrap, Entry::Wrapped { .. }) => (None, "already wrapped".into()),
        (Change::Unwrap, Entry::Wrapped { command }) => (
            Some(unwrapped(entry, &command)),
            format!("unwrapped: {}", command.join(" ")),
        ),
        (Change::Unwrap, Entry::Stdio { .. }) => (None, "not wrapped".into()),
        (_, Entry::Remote { kind }) => (
            None,
            format!("left alone: {kind} server (behavry wraps stdio servers only)"),
        ),
        (_, Entry::Unknown { why }) => (None, format!("left alone: {why}")),
    }
}

fn add(places: &Places, name: &str, scope: Scope, command: &[String]) -> anyhow::Result<i32> {
    if name.is_empty() || name.contains('/') {
        bail!("the server name {name:?} must be non-empty and contain no '/'");
    }
    warn_about_behavry_home();
    let file = places.file(scope);
    let mut args = vec!["wrap".to_owned(), "--name".into(), name.into(), "--".into()];
    args.extend(command.iter().cloned());
    let entry = Node::object(vec![
        ("command", Node::string(&places.behavry)),
        ("args", Node::strings(&args)),
    ]);
    edit_file(file, |doc| {
        if let Some(existing) = places.servers(doc, scope).and_then(|s| s.get(name)) {
            let hint = match classify(existing) {
                Entry::Wrapped { .. } => "it is already wrapped".to_owned(),
                Entry::Stdio { .. } => format!(
                    "wrap it with `behavry claude wrap --scope {} {name}`",
                    scope.name()
                ),
                _ => "remove it first (`claude mcp remove`) to replace it".to_owned(),
            };
            bail!(
                "{} already has a server {name:?} in {} scope: {hint}",
                file.display(),
                scope.name()
            );
        }
        // Create what is missing on the way to `mcpServers`, inside the deepest object that exists.
        let keys = places.keys(scope);
        let mut parent = &doc.root;
        let mut depth = 0;
        while let Some(next) = keys.get(depth).and_then(|k| parent.get(k)) {
            if next.members().is_none() {
                bail!(
                    "{} is not an object in {}",
                    keys[..=depth].join("."),
                    file.display()
                );
            }
            parent = next;
            depth += 1;
        }
        let (key, value) = match keys.get(depth) {
            None => (name, entry.clone()),
            Some(&missing) => {
                let mut value = Node::object(vec![(name, entry.clone())]);
                for key in keys.iter().skip(depth + 1).rev() {
                    value = Node::object(vec![(key, value)]);
                }
                (missing, value)
            }
        };
        let edit = doc
            .insert(parent, key, &value)
            .context("cannot place the entry in the file")?;
        Ok(vec![edit])
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "added {name:?} ({} scope, {}): {} wrap --name {name} -- {}",
        scope.name(),
        file.display(),
        places.behavry,
        command.join(" ")
    )?;
    writeln!(out, "Restart Claude Code (or run /mcp) to connect it.")?;
    Ok(0)
}

fn change(places: &Places, selection: &Selection, change: Change) -> anyhow::Result<i32> {
    if change == Change::Wrap {
        warn_about_behavry_home();
    }
    let scopes: Vec<Scope> = match selection.scope {
        Some(scope) => vec![scope],
        None => Scope::ALL.to_vec(),
    };
    let mut seen = Vec::new();
    let mut changed = 0;
    let mut out = std::io::stdout().lock();
    for file in [&places.claude_json, &places.mcp_json] {
        let in_file: Vec<Scope> = scopes
            .iter()
            .copied()
            .filter(|s| places.file(*s) == file.as_path())
            .collect();
        if in_file.is_empty() || !file.exists() {
            continue;
        }
        let mut lines = Vec::new();
        edit_file(file, |doc| {
            lines.clear();
            let mut edits = Vec::new();
            for &scope in &in_file {
                let Some(members) = places.servers(doc, scope).and_then(Node::members) else {
                    continue;
                };
                for member in members {
                    let name = &member.key;
                    if !selection.names.is_empty() && !selection.names.contains(name) {
                        continue;
                    }
                    seen.push(name.clone());
                    let (new, said) = plan(change, name, &member.value, &places.behavry);
                    if let Some(new) = new {
                        edits.extend(doc.replace(&member.value, &new));
                    }
                    lines.push(format!("{:<8} {name}: {said}", scope.name()));
                }
            }
            Ok(edits)
        })
        .map(|n| changed += n)?;
        for line in &lines {
            writeln!(out, "{line}")?;
        }
    }
    for name in &selection.names {
        if !seen.contains(name) {
            bail!(
                "no server {name:?} in {}; see `behavry claude status`",
                scope_list(&scopes)
            );
        }
    }
    if seen.is_empty() {
        writeln!(
            out,
            "no MCP servers in {}; add one with `behavry claude add NAME -- CMD`",
            scope_list(&scopes)
        )?;
    } else if changed > 0 {
        writeln!(
            out,
            "Restart Claude Code (or run /mcp) to pick up the change."
        )?;
    }
    Ok(0)
}

fn scope_list(scopes: &[Scope]) -> String {
    let names: Vec<&str> = scopes.iter().map(|s| s.name()).collect();
    format!("{} scope", names.join("/"))
}

fn status(places: &Places) -> anyhow::Result<i32> {
    let mut out = std::io::stdout().lock();
    let mut any = false;
    for scope in Scope::ALL {
        let file = places.file(scope);
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => bail!("cannot read {}: {e}", file.display()),
        };
        let doc = Doc::parse(text).map_err(|e| malformed(file, &e))?;
        let Some(members) = places.servers(&doc, scope).and_then(Node::members) else {
            continue;
        };
        for member in members {
            any = true;
            let (state, command) = match classify(&member.value) {
                Entry::Wrapped { command } => ("wrapped", command.join(" ")),
                Entry::Stdio { command } => ("NOT wrapped", command.join(" ")),
                Entry::Remote { kind } => (
                    "remote",
                    format!("({kind}; behavry wraps stdio servers only)"),
                ),
                Entry::Unknown { why } => ("unknown", format!("({why})")),
            };
            writeln!(
                out,
                "{:<8} {:<20} {:<12} {command}",
                scope.name(),
                member.key,
                state
            )?;
        }
    }
    if !any {
        writeln!(
            out,
            "Claude Code has no MCP servers configured here (looked in {} and {})",
            places.claude_json.display(),
            places.mcp_json.display()
        )?;
    }
    super::hook::status(&mut out)?;
    Ok(0)
}

/// Claude Code starts the wrapper with its own environment, not this shell's.
fn warn_about_behavry_home() {
    if let Some(home) = std::env::var_os("BEHAVRY_HOME").filter(|h| !h.is_empty()) {
        crate::note!(
            "BEHAVRY_HOME is set to {} here, but Claude Code will start behavry without it; add \
             BEHAVRY_HOME to the server's env if it should use that directory",
            Path::new(&home).display()
        );
    }
}

fn malformed(file: &Path, problem: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{} is not valid JSON ({problem}); it was left untouched. Fix it (or restore it from a \
         backup) and run this again",
        file.display()
    )
}

/// Reads `file` (a missing file is `{}`), lets `plan` compute edits, and writes the result
/// atomically after a backup. If the file changes meanwhile (Claude Code writes `~/.claude.json`
/// while it runs), starts over, so its write is not lost. Returns how many edits were made.
fn edit_file(
    file: &Path,
    mut plan: impl FnMut(&Doc) -> anyhow::Result<Vec<Edit>>,
) -> anyhow::Result<usize> {
    // Edit the file a symlink points to, not the link (dotfile managers link these files).
    let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    for _attempt in 0..3 {
        let original = read_optional(&file)?;
        let text = original.clone().unwrap_or_else(|| "{}\n".to_owned());
        let doc = Doc::parse(text).map_err(|e| malformed(&file, &e))?;
        if doc.root.members().is_none() {
            return Err(malformed(&file, "the top level is not an object"));
        }
        let edits = plan(&doc)?;
        if edits.is_empty() {
            return Ok(0);
        }
        let count = edits.len();
        let new = doc.apply(edits);
        // The result must still be one valid document before it replaces anything.
        Doc::parse(new.clone()).map_err(|e| {
            anyhow::anyhow!(
                "internal error: the edit of {} would not be valid JSON ({e}); nothing was written",
                file.display()
            )
        })?;
        if read_optional(&file)? != original {
            continue;
        }
        write_atomic(&file, original.as_deref(), &new)?;
        return Ok(count);
    }
    bail!(
        "{} kept changing while behavry edited it (is Claude Code running and writing it?); try again",
        file.display()
    )
}

fn read_optional(file: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
}

/// Replaces `file` by `text`: the old content goes to `<file>.behavry.bak`, the new one to a
/// temporary file in the same directory (same permissions), fsynced, then renamed over `file`.
fn write_atomic(file: &Path, original: Option<&str>, text: &str) -> anyhow::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mode = match std::fs::metadata(file) {
        Ok(meta) => meta.permissions().mode() & 0o777,
        // A new ~/.claude.json is private; a new .mcp.json is meant to be shared with the project.
        Err(_) if name == ".claude.json" => 0o600,
        Err(_) => 0o644,
    };
    if let Some(original) = original {
        let backup = dir.join(format!("{name}.behavry.bak"));
        write_synced(&backup, original, mode)
            .with_context(|| format!("cannot write the backup {}", backup.display()))?;
    }
    let temp = dir.join(format!(".{name}.behavry-{}.tmp", std::process::id()));
    let written = write_synced(&temp, text, mode).and_then(|()| std::fs::rename(&temp, file));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e).with_context(|| format!("cannot write {}", file.display()));
    }
    // The rename is durable once the directory is synced.
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn write_synced(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> Node {
        Doc::parse(text.to_owned()).unwrap().root
    }

    #[test]
    fn classifies_entries() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let table: &[(&str, Entry)] = &[
            (
                r#"{"command": "npx", "args": ["-y", "pkg"]}"#,
                Entry::Stdio {
                    command: s(&["npx", "-y", "pkg"]),
                },
            ),
            (
                r#"{"type": "stdio", "command": "srv"}"#,
                Entry::Stdio {
                    command: s(&["srv"]),
                },
            ),
            (
                r#"{"command": "/x/bin/behavry", "args": ["wrap", "--name", "fs", "--", "npx", "pkg"]}"#,
                Entry::Wrapped {
                    command: s(&["npx", "pkg"]),
                },
            ),
            (
                r#"{"command": "behavry", "args": ["wrap", "--"]}"#,
                Entry::Stdio {
                    command: s(&["behavry", "wrap", "--"]),
                },
            ),
            (
                r#"{"type": "http", "url": "https://x"}"#,
                Entry::Remote {
                    kind: "http".into(),
                },
            ),
            (
                r#"{"type": "sse", "url": "https://x"}"#,
                Entry::Remote { kind: "sse".into() },
            ),
            (
                r#"{"url": "https://x"}"#,
                Entry::Remote { kind: "url".into() },
            ),
            (
                r#"{"command": "x", "args": "y"}"#,
                Entry::Unknown {
                    why: "args is not a list of strings".into(),
                },
            ),
            (
                r#"{"env": {}}"#,
                Entry::Unknown {
                    why: "no command".into(),
                },
            ),
        ];
        for (text, want) in table {
            assert_eq!(&classify(&entry(text)), want, "{text}");
        }
    }

    #[test]
    fn wrap_then_unwrap_gives_the_entry_back() {
        let doc = Doc::parse(
            "{\n  \"type\": \"stdio\",\n  \"command\": \"npx\",\n  \"args\": [\n    \"-y\"\n  ],\n  \"env\": {\n    \"K\": \"v\"\n  }\n}".to_owned(),
        )
        .unwrap();
        let Entry::Stdio { command } = classify(&doc.root) else {
            panic!()
        };
        let w = wrapped(&doc.root, "fs", "/bin/behavry", &command);
        let Entry::Wrapped { command: inner } = classify(&w) else {
            panic!("{w:?}")
        };
        assert_eq!(inner, command);
        let back = unwrapped(&w, &inner);
        let edit = doc.replace(&doc.root, &back).unwrap();
        assert_eq!(doc.apply(vec![edit]), doc.text);
    }
}
