//! Builds the policy input for a governed request. Pure: no I/O, no clock; the caller passes in
//! everything that varies (session age, client name, the cached tool annotations).
//!
//! The shape is the contract policies are written against:
//! `{agent, action, resource, session, requester}` (see docs/input.md).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::canon::{CallPaths, NamedPath, PathArg};

/// What a governed call does, as policies see it in `input.action.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionType {
    Read,
    List,
    Search,
    Write,
    Delete,
    Execute,
    Network,
    Prompt,
    Unknown,
}

impl ActionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::Read => "read",
            ActionType::List => "list",
            ActionType::Search => "search",
            ActionType::Write => "write",
            ActionType::Delete => "delete",
            ActionType::Execute => "execute",
            ActionType::Network => "network",
            ActionType::Prompt => "prompt",
            ActionType::Unknown => "unknown",
        }
    }

    fn is_read_only(self) -> bool {
        matches!(
            self,
            ActionType::Read | ActionType::List | ActionType::Search
        )
    }
}

/// Words in a tool name and the action type they imply, most dangerous first: a name with
/// several (`create_directory`, `read_and_delete`) takes the first type matched in this order.
const NAME_WORDS: &[(ActionType, &[&str])] = &[
    (
        ActionType::Delete,
        &[
            "delete", "remove", "rm", "unlink", "rmdir", "destroy", "drop", "purge", "erase",
            "trash", "truncate",
        ],
    ),
    (
        ActionType::Execute,
        &[
            "exec", "execute", "run", "shell", "bash", "sh", "command", "cmd", "eval", "spawn",
            "terminal", "invoke", "script",
        ],
    ),
    (
        ActionType::Write,
        &[
            "write", "edit", "create", "update", "set", "put", "post", "move", "mv", "rename",
            "copy", "cp", "mkdir", "patch", "insert", "append", "save", "upload", "modify",
            "replace", "push", "commit", "add", "apply", "send", "merge", "chmod", "chown",
            "touch",
        ],
    ),
    (
        ActionType::Network,
        &[
            "fetch", "http", "https", "request", "download", "browse", "navigate", "curl", "wget",
            "url", "web",
        ],
    ),
    (
        ActionType::Search,
        &[
            "search", "find", "grep", "query", "lookup", "locate", "glob",
        ],
    ),
    (
        ActionType::List,
        &[
            "list",
            "ls",
            "tree",
            "enumerate",
            "directory",
            "dir",
            "tables",
        ],
    ),
    (
        ActionType::Read,
        &[
            "read", "get", "cat", "view", "show", "open", "head", "tail", "info", "stat",
            "describe", "load", "inspect", "diff", "log", "status",
        ],
    ),
];

/// Splits a tool name into lowercase words at `_`, `-`, `.`, `/`, spaces and camelCase humps.
fn name_words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// The action type implied by a tool's name alone.
pub fn action_type_from_name(name: &str) -> ActionType {
    let words = name_words(name);
    NAME_WORDS
        .iter()
        .find(|(_, list)| words.iter().any(|w| list.contains(&w.as_str())))
        .map_or(ActionType::Unknown, |(ty, _)| *ty)
}

/// Derives `action.type` for a tool call. Server annotations are hints from an untrusted party,
/// so they may only make a call look *more* dangerous than its name does, never less:
///
/// | name says            | `destructiveHint: true` | `readOnlyHint: true` |
/// |----------------------|-------------------------|----------------------|
/// | delete               | delete                  | delete               |
/// | execute/write/network| unchanged               | unchanged            |
/// | read/list/search     | write                   | unchanged            |
/// | unknown              | write                   | read                 |
///
/// A configured override (by `<server>/<tool>`, then by bare tool name) wins over all of it.
pub fn action_type(
    server: &str,
    tool: &str,
    annotations: Option<&Value>,
    overrides: &BTreeMap<String, ActionType>,
) -> ActionType {
    if let Some(ty) = overrides
        .get(&format!("{server}/{tool}"))
        .or_else(|| overrides.get(tool))
    {
        return *ty;
    }
    let by_name = action_type_from_name(tool);
    let hint = |key: &str| {
        annotations
            .and_then(|a| a.get(key))
            .and_then(Value::as_bool)
            == Some(true)
    };
    if hint("destructiveHint") && (by_name.is_read_only() || by_name == ActionType::Unknown) {
        ActionType::Write
    } else if hint("readOnlyHint") && by_name == ActionType::Unknown {
        ActionType::Read
    } else {
        by_name
    }
}

/// Argument names that carry a path or URI, in the order `resource.path` prefers them (a path
/// under another name comes after these, in the order the arguments hold them).
pub const PATH_KEYS: &[&str] = &[
    "path",
    "file_path",
    "filepath",
    "file",
    "filename",
    "uri",
    "url",
    "source",
    "src",
    "destination",
    "dest",
    "target",
    "directory",
    "dir",
    "folder",
    "cwd",
    "root",
    "paths",
    "files",
];

/// Words that make an argument name a path name, wherever they sit in it (`filePath`,
/// `file_name`, `repo_path`, `target_dir`, `workingDirectory`, `to`): its word parts are
/// compared (split at `_`, `-`, `.`, spaces and camelCase humps, lowercase, trailing digits
/// dropped).
const PATH_WORDS: &[&str] = &[
    "path",
    "paths",
    "pathname",
    "filepath",
    "filepaths",
    "file",
    "files",
    "filename",
    "filenames",
    "dir",
    "dirs",
    "dirname",
    "directory",
    "directories",
    "folder",
    "folders",
    "uri",
    "uris",
    "url",
    "urls",
    "src",
    "source",
    "sources",
    "dest",
    "dst",
    "destination",
    "destinations",
    "target",
    "targets",
    "to",
    "from",
    "cwd",
    "workdir",
    "root",
    "roots",
];

/// Endings that make a name written without word breaks (`newpath`, `TARGETDIR`) a path name.
const PATH_ENDINGS: &[&str] = &["path", "paths", "filename", "dir", "directory", "folder"];

/// Words in a schema property's description that mark it as a path. Not "file": "the content
/// to write to the file" describes content.
const SCHEMA_PATH_WORDS: &[&str] = &[
    "path",
    "paths",
    "pathname",
    "filepath",
    "filename",
    "directory",
    "directories",
    "folder",
    "dir",
];

/// JSON Schema `format`s whose strings are URIs (a `file:` URI is a path).
const URI_FORMATS: &[&str] = &["uri", "uri-reference", "iri", "iri-reference"];

/// At most this many path-like strings per call; beyond it the call is refused (each one is
/// resolved on the file system before the call is decided).
pub const MAX_PATHS: usize = 512;

/// Deeper than this the walk stops and the call is refused. The strict parser already refuses
/// JSON nested deeper than 64, so only input from elsewhere can reach it.
const MAX_DEPTH: usize = 128;

/// Whether an argument name names a path (see [`PATH_WORDS`]).
pub fn is_path_key(key: &str) -> bool {
    let words = name_words(key);
    if words
        .iter()
        .any(|w| PATH_WORDS.contains(&w.trim_end_matches(|c: char| c.is_ascii_digit())))
    {
        return true;
    }
    let joined: String = words.concat();
    let joined = joined.trim_end_matches(|c: char| c.is_ascii_digit());
    PATH_WORDS.contains(&joined) || PATH_ENDINGS.iter().any(|e| joined.ends_with(e))
}

/// Whether a string looks like a path whatever its key: absolute (`/…`), `~`, `~/…`, `./…`,
/// `../…`, `..`, a `file:` URI, or a Windows path (`C:\…`, `\\host\…`). Text with a line break
/// is content, not a path (`/* a comment */` on the first line of a file).
pub fn looks_like_path(s: &str) -> bool {
    if s.contains(['\n', '\r']) || s.len() > 4096 {
        return false;
    }
    let bytes = s.as_bytes();
    let windows = matches!(bytes, [drive, b':', b'\\' | b'/', ..] if drive.is_ascii_alphabetic())
        || s.starts_with("\\\\");
    s.starts_with('/')
        || s == "~"
        || s.starts_with("~/")
        || s.starts_with("./")
        || s.starts_with("../")
        || s == ".."
        || bytes
            .get(..5)
            .is_some_and(|head| head.eq_ignore_ascii_case(b"file:"))
        || windows
}

/// Whether a JSON Schema says its strings are paths: a URI `format`, or a description that
/// speaks of a path, directory or folder.
fn schema_says_path(schema: &Value) -> bool {
    let uri_format = schema
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|f| URI_FORMATS.contains(&f));
    let described = schema
        .get("description")
        .and_then(Value::as_str)
        .is_some_and(|d| {
            name_words(d)
                .iter()
                .any(|w| SCHEMA_PATH_WORDS.contains(&w.as_str()))
        });
    uri_format || described
}

/// The schema of `key`'s value inside an object schema.
fn property_schema<'a>(schema: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    let schema = schema?;
    schema
        .get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

/// The schema of item `i` inside an array schema.
fn item_schema(schema: Option<&Value>, i: usize) -> Option<&Value> {
    let schema = schema?;
    schema
        .get("prefixItems")
        .and_then(|p| p.get(i))
        .or_else(|| match schema.get("items") {
            Some(Value::Array(tuple)) => tuple.get(i),
            Some(items @ Value::Object(_)) => Some(items),
            _ => None,
        })
}

/// Appends `token` to a JSON pointer (RFC 6901: `~` is `~0`, `/` is `~1`).
fn push_token(pointer: &str, token: &str) -> String {
    format!("{pointer}/{}", token.replace('~', "~0").replace('/', "~1"))
}

/// A path-like string found by [`Walk`], with how it was recognised (for the order).
struct Found {
    named: NamedPath,
    /// Position in [`PATH_KEYS`] of its key; after those, other path keys; last, strings
    /// recognised by their shape alone.
    rank: usize,
}

/// Walks an arguments value for path-like strings.
struct Walk {
    found: Vec<Found>,
}

impl Walk {
    /// `key`: the nearest object key above `value`; `path_key`: whether that key (or its schema)
    /// says its strings are paths, which carries into arrays but not into objects.
    fn value(
        &mut self,
        value: &Value,
        schema: Option<&Value>,
        pointer: String,
        key: Option<&str>,
        path_key: bool,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "its arguments are nested deeper than {MAX_DEPTH} levels"
            ));
        }
        match value {
            Value::String(s) => {
                let shape = looks_like_path(s);
                if !path_key && !shape {
                    return Ok(());
                }
                if self.found.len() >= MAX_PATHS {
                    return Err(format!(
                        "it names more than {MAX_PATHS} path-like strings, more than behavry checks in one call; split the call"
                    ));
                }
                let exact = key.and_then(|k| {
                    let k = k.to_lowercase();
                    PATH_KEYS.iter().position(|p| *p == k)
                });
                let rank = match (exact, path_key) {
                    (Some(i), true) => i,
                    (_, true) => PATH_KEYS.len(),
                    (_, false) => PATH_KEYS.len() + 1,
                };
                self.found.push(Found {
                    named: NamedPath {
                        pointer,
                        key: key.map(str::to_owned),
                        raw: s.clone(),
                    },
                    rank,
                });
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let schema = item_schema(schema, i);
                    let path_key = path_key || schema.is_some_and(schema_says_path);
                    let pointer = format!("{pointer}/{i}");
                    self.value(item, schema, pointer, key, path_key, depth + 1)?;
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    let schema = property_schema(schema, k);
                    let path_key = is_path_key(k) || schema.is_some_and(schema_says_path);
                    let pointer = push_token(&pointer, k);
                    self.value(v, schema, pointer, Some(k), path_key, depth + 1)?;
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
        Ok(())
    }
}

/// Every path-like string of a request as sent, with its JSON pointer into `action.arguments`:
/// the whole arguments value is walked (objects, arrays, any depth), and a string counts when
/// its key names a path ([`is_path_key`], also for strings in an array under such a key), when
/// the tool's `inputSchema` says so (a URI `format`, a description speaking of a path), or when
/// it looks like one ([`looks_like_path`]). A `resources/read` URI is its one path.
///
/// Order: paths under the [`PATH_KEYS`] in that order, then other path keys, then strings
/// recognised by their shape, each group in the order the arguments hold them.
pub fn path_args(request: &Governed, schema: Option<&Value>) -> CallPaths {
    let (arguments, prefix, schema) = match request {
        Governed::ToolCall { arguments, .. } => (arguments, "", schema),
        // `action.arguments` of a prompt is `{name, arguments}`; prompts have no JSON schema.
        Governed::PromptGet { arguments, .. } => (arguments, "/arguments", None),
        Governed::ResourceRead { uri } => {
            return CallPaths {
                named: vec![NamedPath {
                    pointer: "/uri".into(),
                    key: Some("uri".into()),
                    raw: uri.clone(),
                }],
                refused: None,
            }
        }
    };
    let mut walk = Walk { found: Vec::new() };
    match walk.value(arguments, schema, prefix.to_owned(), None, false, 0) {
        Ok(()) => {
            walk.found.sort_by_key(|f| f.rank);
            CallPaths {
                named: walk.found.into_iter().map(|f| f.named).collect(),
                refused: None,
            }
        }
        Err(why) => CallPaths {
            named: Vec::new(),
            refused: Some(format!("behavry refused this call: {why}")),
        },
    }
}

/// What governed request this is.
#[derive(Debug, Clone, PartialEq)]
pub enum Governed {
    /// `tools/call {name, arguments}`
    ToolCall { name: String, arguments: Value },
    /// `resources/read {uri}`
    ResourceRead { uri: String },
    /// `prompts/get {name, arguments}`
    PromptGet { name: String, arguments: Value },
}

impl Governed {
    /// Recognises a governed request. `None`: not governed, relay it. `Some(Err)`: governed but its
    /// params are malformed (it will be denied, never forwarded).
    pub fn from_request(method: &str, params: Option<&Value>) -> Option<Result<Governed, String>> {
        let field = |key: &str| params.and_then(|p| p.get(key));
        let string_field = |key: &str| {
            field(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("{method} needs a string `params.{key}`"))
        };
        let arguments = || match field("arguments") {
            None | Some(Value::Null) => Ok(Value::Object(Map::new())),
            Some(v @ Value::Object(_)) => Ok(v.clone()),
            Some(_) => Err(format!("{method} `params.arguments` must be an object")),
        };
        Some(match method {
            "tools/call" => string_field("name").and_then(|name| {
                Ok(Governed::ToolCall {
                    name,
                    arguments: arguments()?,
                })
            }),
            "resources/read" => string_field("uri").map(|uri| Governed::ResourceRead { uri }),
            "prompts/get" => string_field("name").and_then(|name| {
                Ok(Governed::PromptGet {
                    name,
                    arguments: arguments()?,
                })
            }),
            _ => return None,
        })
    }

    /// The name recorded in the audit log's `tool` column.
    pub fn tool(&self) -> &str {
        match self {
            Governed::ToolCall { name, .. } | Governed::PromptGet { name, .. } => name,
            Governed::ResourceRead { .. } => "resources/read",
        }
    }

    pub fn arguments(&self) -> Value {
        match self {
            Governed::ToolCall { arguments, .. } => arguments.clone(),
            Governed::ResourceRead { uri } => json!({ "uri": uri }),
            Governed::PromptGet { name, arguments } => {
                json!({ "name": name, "arguments": arguments })
            }
        }
    }
}

/// behavry's own directories, as `input.behavry`: a policy protects them from the agent (the
/// shipped `base` policy denies every call that touches them).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BehavryDirs {
    pub config_dir: String,
    pub data_dir: String,
    pub policy_dirs: Vec<String>,
    /// Every directory above, also with symlinks resolved: the prefixes no call may touch.
    pub protected: Vec<String>,
}

/// Everything about the wrapper run that goes into every input.
#[derive(Debug, Clone)]
pub struct Context {
    pub server: String,
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    pub role: String,
    pub risk_tier: String,
    pub requester_id: String,
    pub session_id: String,
    /// `CLAUDE_PROJECT_DIR`, when the client set it.
    pub project_dir: Option<String>,
    /// The server's working directory, against which relative paths resolve.
    pub cwd: PathBuf,
    pub home: Option<PathBuf>,
    pub action_types: BTreeMap<String, ActionType>,
    pub behavry: BehavryDirs,
}

/// The request-specific facts the input needs beyond the request itself.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    /// `clientInfo.name` from `initialize`, if the client sent one.
    pub client_name: Option<&'a str>,
    /// The tool's annotations from the server's last `tools/list`.
    pub annotations: Option<&'a Value>,
    pub session_seconds: u64,
    /// The request's [`path_args`], resolved by [`super::canon::Resolver::resolve_call`] (which
    /// reads the file system, so it runs before this pure builder).
    pub paths: &'a [PathArg],
    /// `input.tool`: what behavry's tool pinning knows about the tool (see [`crate::pinning`]).
    pub tool: Option<&'a Value>,
}

/// The result of building an input: the input itself and the facts the audit row repeats.
#[derive(Debug, Clone)]
pub struct Built {
    pub input: Value,
    pub action_type: ActionType,
    pub resource_path: Option<String>,
    /// Every canonical path of the call (`resource.paths` without repeats), for the audit row.
    pub paths: Vec<String>,
    /// Set when the call must be denied before any policy sees it (an ambiguous path, behavry's
    /// own files); the text is the reason given to the agent.
    pub refused: Option<String>,
}

pub fn build(ctx: &Context, request: &Governed, facts: &Facts) -> Built {
    let action_type = match request {
        Governed::ToolCall { name, .. } => {
            action_type(&ctx.server, name, facts.annotations, &ctx.action_types)
        }
        Governed::ResourceRead { .. } => ActionType::Read,
        Governed::PromptGet { .. } => ActionType::Prompt,
    };
    let arguments = request.arguments();
    let paths: Vec<&str> = facts
        .paths
        .iter()
        .flat_map(|p| p.canonical.iter().map(String::as_str))
        .collect();
    let raw_paths: Vec<&str> = facts.paths.iter().map(|p| p.raw.as_str()).collect();
    let refused = facts
        .paths
        .iter()
        .find_map(|p| p.refused.clone())
        .or_else(|| {
            // Replacing or removing a directory that holds behavry's files reaches them too.
            matches!(action_type, ActionType::Write | ActionType::Delete)
                .then(|| facts.paths.iter().find_map(|p| p.contains_own.clone()))
                .flatten()
        });
    let client = facts.client_name.unwrap_or("unknown");
    let args: Vec<Value> = facts
        .paths
        .iter()
        .map(|p| json!({ "pointer": p.pointer, "key": p.key, "raw": p.raw, "paths": p.canonical }))
        .collect();
    let mut resource = json!({
        "server": ctx.server,
        "paths": paths,
        "raw_paths": raw_paths,
        "args": args,
    });
    if let Some(first) = paths.first() {
        resource["path"] = json!(first);
    }
    if let Some(first) = raw_paths.first() {
        resource["raw_path"] = json!(first);
    }
    let mut session = json!({ "id": ctx.session_id, "duration_seconds": facts.session_seconds });
    if let Some(dir) = &ctx.project_dir {
        session["project_dir"] = json!(dir);
    }
    let mut input = json!({
        "agent": {
            "id": ctx.agent_id.as_deref().unwrap_or(client),
            "name": ctx.agent_name.as_deref().unwrap_or(client),
            "role": ctx.role,
            "risk_tier": ctx.risk_tier,
        },
        "action": {
            "type": action_type.as_str(),
            "tool": format!("{}/{}", ctx.server, request.tool()),
            "name": request.tool(),
            "arguments": arguments,
            "annotations": facts.annotations.cloned().unwrap_or_else(|| json!({})),
        },
        "resource": resource,
        "session": session,
        "requester": { "id": ctx.requester_id, "channel": client },
        "behavry": ctx.behavry,
    });
    if let Some(tool) = facts.tool {
        input["tool"] = tool.clone();
    }
    Built {
        input,
        action_type,
        resource_path: paths.first().map(|p| (*p).to_owned()),
        paths: paths.iter().fold(Vec::new(), |mut all, p| {
            if !all.iter().any(|a: &String| a == p) {
                all.push((*p).to_owned());
            }
            all
        }),
        refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            server: "filesystem".into(),
            agent_id: None,
            agent_name: None,
            role: "developer".into(),
            risk_tier: "low".into(),
            requester_id: "alice".into(),
            session_id: "s-1".into(),
            project_dir: Some("/home/alice/code".into()),
            cwd: PathBuf::from("/srv/app"),
            home: Some(PathBuf::from("/home/alice")),
            action_types: BTreeMap::new(),
            behavry: BehavryDirs {
                config_dir: "/home/alice/.config/behavry".into(),
                data_dir: "/home/alice/.local/share/behavry".into(),
                policy_dirs: vec!["/home/alice/.config/behavry/policies".into()],
                protected: vec!["/home/alice/.config/behavry".into()],
            },
        }
    }

    #[test]
    fn action_type_from_names() {
        let table = [
            ("read_file", ActionType::Read),
            ("read_text_file", ActionType::Read),
            ("read_multiple_files", ActionType::Read),
            ("get_file_info", ActionType::Read),
            ("list_directory", ActionType::List),
            ("list_allowed_directories", ActionType::List),
            ("directory_tree", ActionType::List),
            ("search_files", ActionType::Search),
            ("write_file", ActionType::Write),
            ("edit_file", ActionType::Write),
            ("create_directory", ActionType::Write),
            ("move_file", ActionType::Write),
            ("delete_file", ActionType::Delete),
            ("removeBranch", ActionType::Delete),
            ("run_shell_command", ActionType::Execute),
            ("fetch", ActionType::Network),
            ("browser_navigate", ActionType::Network),
            ("echo", ActionType::Unknown),
            ("", ActionType::Unknown),
        ];
        for (name, want) in table {
            assert_eq!(action_type_from_name(name), want, "{name}");
        }
    }

    #[test]
    fn annotations_only_raise_the_danger() {
        let none = BTreeMap::new();
        let ro = json!({"readOnlyHint": true});
        let destructive = json!({"destructiveHint": true});
        let table = [
            ("echo", Some(&ro), ActionType::Read),
            ("echo", Some(&destructive), ActionType::Write),
            ("read_file", Some(&destructive), ActionType::Write),
            ("delete_file", Some(&ro), ActionType::Delete),
            ("write_file", Some(&ro), ActionType::Write),
            ("delete_file", Some(&destructive), ActionType::Delete),
            ("list_directory", Some(&ro), ActionType::List),
            ("echo", None, ActionType::Unknown),
        ];
        for (name, ann, want) in table {
            assert_eq!(action_type("fs", name, ann, &none), want, "{name} {ann:?}");
        }
    }

    #[test]
    fn overrides_win_qualified_first() {
        let mut o = BTreeMap::new();
        o.insert("run_query".to_string(), ActionType::Read);
        o.insert("db/run_query".to_string(), ActionType::Write);
        assert_eq!(action_type("db", "run_query", None, &o), ActionType::Write);
        assert_eq!(
            action_type("other", "run_query", None, &o),
            ActionType::Read
        );
    }

    #[test]
    fn builds_the_seed_shape() {
        let req = Governed::ToolCall {
            name: "write_file".into(),
            arguments: json!({"path": "/prod/config.yaml", "content": "x"}),
        };
        let paths = [PathArg {
            pointer: "/path".into(),
            key: Some("path".into()),
            raw: "/prod/../prod/config.yaml".into(),
            canonical: vec!["/prod/config.yaml".into()],
            ..PathArg::default()
        }];
        let facts = Facts {
            client_name: Some("claude-code"),
            annotations: None,
            session_seconds: 120,
            paths: &paths,
            tool: None,
        };
        let built = build(&ctx(), &req, &facts);
        assert_eq!(built.action_type, ActionType::Write);
        assert_eq!(built.resource_path.as_deref(), Some("/prod/config.yaml"));
        assert_eq!(built.refused, None);
        let want = json!({
            "agent": {"id": "claude-code", "name": "claude-code", "role": "developer", "risk_tier": "low"},
            "action": {"type": "write", "tool": "filesystem/write_file", "name": "write_file",
                       "arguments": {"path": "/prod/config.yaml", "content": "x"}, "annotations": {}},
            "resource": {"path": "/prod/config.yaml", "paths": ["/prod/config.yaml"], "server": "filesystem",
                         "raw_path": "/prod/../prod/config.yaml", "raw_paths": ["/prod/../prod/config.yaml"],
                         "args": [{"pointer": "/path", "key": "path", "raw": "/prod/../prod/config.yaml",
                                   "paths": ["/prod/config.yaml"]}]},
            "session": {"id": "s-1", "duration_seconds": 120, "project_dir": "/home/alice/code"},
            "requester": {"id": "alice", "channel": "claude-code"},
            "behavry": {"config_dir": "/home/alice/.config/behavry", "data_dir": "/home/alice/.local/share/behavry",
                        "policy_dirs": ["/home/alice/.config/behavry/policies"],
                        "protected": ["/home/alice/.config/behavry"]},
        });
        assert_eq!(built.input, want);
    }

    fn raws(request: &Governed, schema: Option<&Value>) -> Vec<String> {
        let found = path_args(request, schema);
        assert_eq!(found.refused, None);
        found.named.into_iter().map(|n| n.raw).collect()
    }

    fn call(arguments: Value) -> Governed {
        Governed::ToolCall {
            name: "t".into(),
            arguments,
        }
    }

    #[test]
    fn path_args_in_key_order() {
        let req = call(
            json!({"destination": "b", "source": "~/a", "paths": ["/x", 3, "/y"], "other": "/z", "path": {"no": 1}}),
        );
        // The known keys in their order, then the string found by its shape.
        assert_eq!(raws(&req, None), ["~/a", "b", "/x", "/y", "/z"]);
        let read = Governed::ResourceRead {
            uri: "file:///etc/hosts".into(),
        };
        let found = path_args(&read, None);
        assert_eq!(found.named[0].pointer, "/uri");
        assert_eq!(found.named[0].raw, "file:///etc/hosts");
    }

    #[test]
    fn path_keys_by_word_parts() {
        let taken = [
            "path",
            "Path",
            "PATH",
            "filePath",
            "file_path",
            "FilePath",
            "filepath",
            "file_name",
            "fileName",
            "filename",
            "file",
            "files",
            "newPath",
            "new_path",
            "newpath",
            "output_path",
            "outputPath",
            "repo_path",
            "repoPath",
            "notebook_path",
            "to",
            "To",
            "from",
            "src",
            "dst",
            "dest",
            "destination",
            "source",
            "target",
            "target_dir",
            "targetDir",
            "TARGETDIR",
            "workingDirectory",
            "working-directory",
            "cwd",
            "dir",
            "dirPath",
            "directory",
            "folder",
            "root",
            "uri",
            "url",
            "path2",
            "file1",
            "pathToFile",
            "subdir",
            "old.path",
        ];
        for key in taken {
            assert!(is_path_key(key), "{key} should name a path");
        }
        let not_taken = [
            "content",
            "text",
            "name",
            "message",
            "query",
            "pattern",
            "command",
            "profile",
            "todo",
            "topic",
            "email",
            "description",
            "mode",
            "tool",
            "format",
            "auto",
            "route",
            "XMLFile",
        ];
        for key in not_taken {
            assert!(!is_path_key(key), "{key} should not name a path");
        }
    }

    #[test]
    fn strings_that_look_like_paths() {
        let taken = [
            "/prod/x",
            "/",
            "~",
            "~/x",
            "./x",
            "../x",
            "..",
            "file:///x",
            "FILE:///x",
            "file:/x",
            "C:\\x",
            "c:/x",
            "\\\\host\\share",
        ];
        for s in taken {
            assert!(looks_like_path(s), "{s:?} should look like a path");
        }
        let not_taken = [
            "x",
            "config.yaml",
            ".",
            "~bob/x",
            "https://example.com/a",
            "alice@example.com",
            "/* a comment */\nint x;",
            "hello /prod/x",
            "",
            "C:",
            "ab://x",
        ];
        for s in not_taken {
            assert!(!looks_like_path(s), "{s:?} should not look like a path");
        }
    }

    #[test]
    fn walks_the_whole_arguments_value() {
        let req = call(json!({
            "edits": [{"path": "/prod/a", "newText": "x"}],
            "options": {"path": "rel", "depth": 2, "deeper": [[{"to": "b"}]]},
            "repo_path": "/prod/app",
            "files": ["config.yaml", {"name": "n"}],
            "content": "/looks/like/one",
            "body": "not one",
            "a/b~c": "/escaped",
        }));
        let found = path_args(&req, None);
        let got: Vec<(&str, Option<&str>, &str)> = found
            .named
            .iter()
            .map(|n| (n.pointer.as_str(), n.key.as_deref(), n.raw.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                // `path` first, then `files` (their place in PATH_KEYS), then other path
                // keys, then shapes; each group in the order the arguments hold them.
                ("/edits/0/path", Some("path"), "/prod/a"),
                ("/options/path", Some("path"), "rel"),
                ("/files/0", Some("files"), "config.yaml"),
                ("/options/deeper/0/0/to", Some("to"), "b"),
                ("/repo_path", Some("repo_path"), "/prod/app"),
                ("/a~1b~0c", Some("a/b~c"), "/escaped"),
                ("/content", Some("content"), "/looks/like/one"),
            ]
        );
        let prompt = Governed::PromptGet {
            name: "p".into(),
            arguments: json!({"file": "x"}),
        };
        assert_eq!(path_args(&prompt, None).named[0].pointer, "/arguments/file");
    }

    #[test]
    fn the_input_schema_names_paths_too() {
        let schema = json!({"type": "object", "properties": {
            "location": {"type": "string", "format": "uri"},
            "where": {"type": "string", "description": "Directory to list"},
            "targets": {"type": "array", "items": {"type": "string"}},
            "spots": {"type": "array", "items": {"type": "string", "format": "uri-reference"}},
            "nested": {"type": "object", "properties": {"at": {"description": "The folder"}}},
            "content": {"type": "string", "description": "What to write to the file"},
        }});
        let req = call(json!({
            "location": "a", "where": "b", "spots": ["c", "d"], "nested": {"at": "e"},
            "content": "f", "unlisted": "g",
        }));
        let mut got = raws(&req, Some(&schema));
        got.sort();
        assert_eq!(got, ["a", "b", "c", "d", "e"]);
        // Without the schema only keys and shapes count.
        assert!(raws(&req, None).is_empty());
    }

    #[test]
    fn too_many_paths_refuse_the_call() {
        let many: Vec<String> = (0..=MAX_PATHS).map(|i| format!("/tmp/{i}")).collect();
        let found = path_args(&call(json!({ "x": many })), None);
        let why = found.refused.expect("refused");
        assert!(why.contains("more than 512 path-like strings"), "{why}");
        let enough: Vec<String> = (0..MAX_PATHS).map(|i| format!("/tmp/{i}")).collect();
        assert_eq!(
            path_args(&call(json!({ "x": enough })), None).named.len(),
            MAX_PATHS
        );
        let mut deep = json!("/x");
        for _ in 0..=MAX_DEPTH {
            deep = json!([deep]);
        }
        assert!(path_args(&call(json!({ "x": deep })), None)
            .refused
            .is_some());
    }

    #[test]
    fn every_reading_is_a_path_and_refusals_carry_over() {
        let arg = |raw: &str, canonical: &[&str]| PathArg {
            raw: raw.into(),
            canonical: canonical.iter().map(|s| s.to_string()).collect(),
            ..PathArg::default()
        };
        let paths = [arg("/t/l/../x", &["/t/x", "/prod/x"]), arg("b", &["/w/b"])];
        let req = Governed::ToolCall {
            name: "write_file".into(),
            arguments: json!({}),
        };
        let facts = Facts {
            paths: &paths,
            ..Facts::default()
        };
        let built = build(&ctx(), &req, &facts);
        assert_eq!(
            built.input["resource"]["paths"],
            json!(["/t/x", "/prod/x", "/w/b"])
        );
        assert_eq!(
            built.input["resource"]["raw_paths"],
            json!(["/t/l/../x", "b"])
        );
        assert_eq!(built.input["resource"]["path"], "/t/x");
        assert_eq!(built.input["resource"]["raw_path"], "/t/l/../x");

        let mut own = arg("/home/a", &["/home/a"]);
        own.contains_own = Some("contains behavry's data directory".into());
        let paths = [own];
        let facts = Facts {
            paths: &paths,
            ..Facts::default()
        };
        // Writing or deleting a directory that holds behavry's files is refused; reading it is not.
        assert!(build(&ctx(), &req, &facts).refused.is_some());
        let read = Governed::ToolCall {
            name: "list_directory".into(),
            arguments: json!({}),
        };
        assert!(build(&ctx(), &read, &facts).refused.is_none());
        let bad = [PathArg::refused("x".into(), "the path \"x\" is odd".into())];
        let facts = Facts {
            paths: &bad,
            ..Facts::default()
        };
        assert_eq!(
            build(&ctx(), &read, &facts).refused.as_deref(),
            Some("the path \"x\" is odd")
        );
    }

    #[test]
    fn no_path_means_no_resource_path_key() {
        let req = Governed::ToolCall {
            name: "echo".into(),
            arguments: json!({"text": "hi"}),
        };
        let built = build(&ctx(), &req, &Facts::default());
        assert!(built.input["resource"].get("path").is_none());
        assert_eq!(built.input["agent"]["name"], "unknown");
    }

    #[test]
    fn recognises_governed_requests() {
        let p = json!({"name": "x", "arguments": {"a": 1}});
        assert!(matches!(
            Governed::from_request("tools/call", Some(&p)),
            Some(Ok(Governed::ToolCall { .. }))
        ));
        assert!(Governed::from_request("tools/list", Some(&p)).is_none());
        assert!(matches!(
            Governed::from_request("tools/call", None),
            Some(Err(_))
        ));
        let bad = json!({"name": "x", "arguments": [1]});
        assert!(matches!(
            Governed::from_request("tools/call", Some(&bad)),
            Some(Err(_))
        ));
        let r = json!({"uri": "file:///etc/hosts"});
        let g = Governed::from_request("resources/read", Some(&r))
            .unwrap()
            .unwrap();
        let built = build(&ctx(), &g, &Facts::default());
        assert_eq!(built.resource_path, None);
        assert_eq!(built.input["action"]["tool"], "filesystem/resources/read");
        assert_eq!(built.action_type, ActionType::Read);
    }
}
