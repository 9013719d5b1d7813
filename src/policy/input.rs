//! Builds the policy input for a governed request. Pure: no I/O, no clock; the caller passes in
//! everything that varies (session age, client name, the cached tool annotations).
//!
//! The shape is the contract policies are written against:
//! `{agent, action, resource, session, requester}` (see the README's input reference).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::canon::PathArg;

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

/// Argument names that carry a path or URI, in the order `resource.path` prefers them.
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
    /// The request's [`path_args`], resolved by [`super::canon::Resolver`] (which reads the file system,
    /// so it runs before this pure builder).
    pub paths: &'a [PathArg],
}

/// The result of building an input: the input itself and the facts the audit row repeats.
#[derive(Debug, Clone)]
pub struct Built {
    pub input: Value,
    pub action_type: ActionType,
    pub resource_path: Option<String>,
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
    let mut resource = json!({ "server": ctx.server, "paths": paths, "raw_paths": raw_paths });
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
    let input = json!({
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
    Built {
        input,
        action_type,
        resource_path: paths.first().map(|p| (*p).to_owned()),
        refused,
    }
}

/// Every path-like argument of a request as sent: the values of the top-level argument keys in
/// [`PATH_KEYS`] (strings, or arrays of strings), in key order; a `resources/read` URI.
pub fn path_args(request: &Governed) -> Vec<String> {
    let arguments = match request {
        Governed::ToolCall { arguments, .. } | Governed::PromptGet { arguments, .. } => arguments,
        Governed::ResourceRead { uri } => return vec![uri.clone()],
    };
    let Some(args) = arguments.as_object() else {
        return Vec::new();
    };
    let mut paths = Vec::new();
    for key in PATH_KEYS {
        match args.get(*key) {
            Some(Value::String(s)) => paths.push(s.clone()),
            Some(Value::Array(items)) => {
                paths.extend(items.iter().filter_map(Value::as_str).map(str::to_owned))
            }
            _ => {}
        }
    }
    paths
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
            raw: "/prod/../prod/config.yaml".into(),
            canonical: vec!["/prod/config.yaml".into()],
            ..PathArg::default()
        }];
        let facts = Facts {
            client_name: Some("claude-code"),
            annotations: None,
            session_seconds: 120,
            paths: &paths,
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
                         "raw_path": "/prod/../prod/config.yaml", "raw_paths": ["/prod/../prod/config.yaml"]},
            "session": {"id": "s-1", "duration_seconds": 120, "project_dir": "/home/alice/code"},
            "requester": {"id": "alice", "channel": "claude-code"},
            "behavry": {"config_dir": "/home/alice/.config/behavry", "data_dir": "/home/alice/.local/share/behavry",
                        "policy_dirs": ["/home/alice/.config/behavry/policies"],
                        "protected": ["/home/alice/.config/behavry"]},
        });
        assert_eq!(built.input, want);
    }

    #[test]
    fn path_args_in_key_order() {
        let req = Governed::ToolCall {
            name: "move".into(),
            arguments: json!({"destination": "b", "source": "~/a", "paths": ["/x", 3, "/y"], "other": "/z", "path": {"no": 1}}),
        };
        assert_eq!(path_args(&req), ["~/a", "b", "/x", "/y"]);
        let read = Governed::ResourceRead {
            uri: "file:///etc/hosts".into(),
        };
        assert_eq!(path_args(&read), ["file:///etc/hosts"]);
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
