//! One hook event as Claude Code sends it on stdin (see the README's hook section for samples).

use serde_json::Value;

/// A tool call as the events name it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolUse {
    pub session_id: String,
    /// Claude Code's working directory, against which relative paths resolve.
    pub cwd: String,
    pub tool_name: String,
    pub tool_input: Value,
    /// `toolu_…`: ties the `PostToolUse` event to its decision.
    pub tool_use_id: String,
    pub transcript_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Decide it.
    Pre(ToolUse),
    /// Record how it ended: `failed` for `PostToolUseFailure`.
    Post {
        call: ToolUse,
        failed: bool,
        duration_ms: Option<f64>,
    },
    /// An event behavry has no opinion about (it was installed for the three above only).
    Other(String),
}

/// Why an event cannot be read; the call is denied with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("behavry could not read the hook event: {0}")]
pub struct BadEvent(String);

/// Parses one event. A tool event missing what a decision needs is an error (then denied).
pub fn parse(text: &str) -> Result<Event, BadEvent> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| BadEvent(format!("not JSON ({e})")))?;
    let name = string(&value, "hook_event_name")?;
    let (failed, pre) = match name.as_str() {
        "PreToolUse" => (false, true),
        "PostToolUse" => (false, false),
        "PostToolUseFailure" => (true, false),
        _ => return Ok(Event::Other(name)),
    };
    let tool_input = match value.get("tool_input") {
        Some(v @ Value::Object(_)) => v.clone(),
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(_) => return Err(BadEvent("`tool_input` must be an object".into())),
    };
    let call = ToolUse {
        session_id: string(&value, "session_id")?,
        cwd: string(&value, "cwd")?,
        tool_name: string(&value, "tool_name")?,
        tool_input,
        tool_use_id: value
            .get("tool_use_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        transcript_path: value
            .get("transcript_path")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    if call.tool_name.is_empty() {
        return Err(BadEvent("`tool_name` is empty".into()));
    }
    Ok(if pre {
        Event::Pre(call)
    } else {
        Event::Post {
            call,
            failed,
            duration_ms: value.get("duration_ms").and_then(Value::as_f64),
        }
    })
}

fn string(value: &Value, key: &str) -> Result<String, BadEvent> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| BadEvent(format!("it has no string `{key}`")))
}

/// An MCP server's tool (`mcp__<server>__<tool>`), which a wrapper may already govern.
pub fn is_mcp_tool(tool_name: &str) -> bool {
    tool_name.starts_with("mcp__")
}

#[cfg(test)]
pub(crate) mod samples {
    //! Events as Claude Code 2.1.197 sent them (trimmed ids).

    pub const BASH: &str = r#"{"session_id":"5c1e6a2e-0b0f-4a57-9d84-0b1e3c2f9a11","transcript_path":"/home/dev/.claude/projects/-home-dev-code/5c1e6a2e.jsonl","cwd":"/home/dev/code","prompt_id":"p1","permission_mode":"default","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"echo hi","description":"Print hi"},"tool_use_id":"toolu_01Bash"}"#;
    pub const READ: &str = r#"{"session_id":"5c1e6a2e-0b0f-4a57-9d84-0b1e3c2f9a11","transcript_path":"/t.jsonl","cwd":"/home/dev/code","hook_event_name":"PreToolUse","tool_name":"Read","tool_input":{"file_path":"/home/dev/code/src/main.rs"},"tool_use_id":"toolu_01Read"}"#;
    pub const EDIT: &str = r#"{"session_id":"5c1e6a2e-0b0f-4a57-9d84-0b1e3c2f9a11","transcript_path":"/t.jsonl","cwd":"/home/dev/code","hook_event_name":"PreToolUse","tool_name":"Edit","tool_input":{"file_path":"/home/dev/code/src/lib.rs","old_string":"a","new_string":"b","replace_all":false},"tool_use_id":"toolu_01Edit"}"#;
    pub const WRITE: &str = r#"{"session_id":"5c1e6a2e-0b0f-4a57-9d84-0b1e3c2f9a11","transcript_path":"/t.jsonl","cwd":"/home/dev/code","hook_event_name":"PreToolUse","tool_name":"Write","tool_input":{"file_path":"notes.txt","content":"hello"},"tool_use_id":"toolu_01Write"}"#;
    pub const MCP: &str = r#"{"session_id":"5c1e6a2e-0b0f-4a57-9d84-0b1e3c2f9a11","transcript_path":"/t.jsonl","cwd":"/home/dev/code","hook_event_name":"PreToolUse","tool_name":"mcp__fs__write_file","tool_input":{"path":"/prod/x","content":""},"tool_use_id":"toolu_01Mcp"}"#;
    pub const POST_BASH: &str = r#"{"session_id":"5c1e6a2e-0b0f-4a57-9d84-0b1e3c2f9a11","transcript_path":"/t.jsonl","cwd":"/home/dev/code","hook_event_name":"PostToolUse","tool_name":"Bash","tool_input":{"command":"echo hi"},"tool_response":{"stdout":"hi","stderr":"","interrupted":false},"tool_use_id":"toolu_01Bash","duration_ms":12}"#;
    pub const POST_FAILURE: &str = r#"{"session_id":"5c1e6a2e-0b0f-4a57-9d84-0b1e3c2f9a11","transcript_path":"/t.jsonl","cwd":"/home/dev/code","hook_event_name":"PostToolUseFailure","tool_name":"Bash","tool_input":{"command":"false"},"error":"Exit code 1","tool_use_id":"toolu_01Fail","duration_ms":7.5}"#;
}

#[cfg(test)]
mod tests {
    use super::samples::*;
    use super::*;

    #[test]
    fn recorded_samples_parse() {
        let Ok(Event::Pre(bash)) = parse(BASH) else {
            panic!("Bash sample")
        };
        assert_eq!(bash.tool_name, "Bash");
        assert_eq!(bash.tool_input["command"], "echo hi");
        assert_eq!(bash.tool_use_id, "toolu_01Bash");
        assert_eq!(bash.cwd, "/home/dev/code");
        for sample in [READ, EDIT, WRITE, MCP] {
            assert!(matches!(parse(sample), Ok(Event::Pre(_))), "{sample}");
        }
        assert!(matches!(
            parse(POST_BASH),
            Ok(Event::Post { failed: false, duration_ms: Some(d), .. }) if d == 12.0
        ));
        assert!(matches!(
            parse(POST_FAILURE),
            Ok(Event::Post { failed: true, duration_ms: Some(d), .. }) if d == 7.5
        ));
    }

    #[test]
    fn bad_events_are_errors_and_other_events_are_not_ours() {
        for (text, why) in [
            ("", "not JSON"),
            ("{", "not JSON"),
            ("[]", "hook_event_name"),
            (
                r#"{"hook_event_name":"PreToolUse","cwd":"/","tool_name":"Bash"}"#,
                "session_id",
            ),
            (
                r#"{"hook_event_name":"PreToolUse","session_id":"s","cwd":"/","tool_name":""}"#,
                "empty",
            ),
            (
                r#"{"hook_event_name":"PreToolUse","session_id":"s","cwd":"/","tool_name":"Bash","tool_input":"rm -rf /"}"#,
                "object",
            ),
        ] {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
        assert_eq!(
            parse(r#"{"hook_event_name":"Stop"}"#),
            Ok(Event::Other("Stop".into()))
        );
        assert!(is_mcp_tool("mcp__fs__read_file"));
        assert!(!is_mcp_tool("Bash"));
    }
}
