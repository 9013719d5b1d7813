//! JSON-RPC message shapes, and the replies behavry writes itself.

use serde_json::{json, Value};

/// JSON-RPC error codes behavry answers with.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const INTERNAL_ERROR: i64 = -32603;
/// A governed `resources/read` or `prompts/get` that policy refused (tool calls get an `isError`
/// result instead, which the model can read).
pub const POLICY_DENIED: i64 = -32001;

/// What a parsed line is.
#[derive(Debug, PartialEq)]
pub enum Kind<'a> {
    Request {
        id: &'a Value,
        method: &'a str,
    },
    Notification {
        method: &'a str,
    },
    Response {
        id: &'a Value,
    },
    Batch(&'a [Value]),
    /// Valid JSON that is not a JSON-RPC message; `id` if one could be read.
    Invalid {
        id: Option<&'a Value>,
        reason: &'static str,
    },
}

pub fn classify(message: &Value) -> Kind<'_> {
    let obj = match message {
        Value::Array(items) if items.is_empty() => {
            return Kind::Invalid {
                id: None,
                reason: "empty batch",
            };
        }
        Value::Array(items) => return Kind::Batch(items),
        Value::Object(obj) => obj,
        _ => {
            return Kind::Invalid {
                id: None,
                reason: "a JSON-RPC message must be an object",
            }
        }
    };
    let id = obj.get("id").filter(|id| valid_id(id));
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Kind::Invalid {
            id,
            reason: "missing \"jsonrpc\": \"2.0\"",
        };
    }
    if obj.contains_key("id") && id.is_none() {
        return Kind::Invalid {
            id: None,
            reason: "\"id\" must be a string or a number",
        };
    }
    match (obj.get("method"), id) {
        (Some(Value::String(method)), Some(id)) => Kind::Request { id, method },
        (Some(Value::String(method)), None) => Kind::Notification { method },
        (Some(_), _) => Kind::Invalid {
            id,
            reason: "\"method\" must be a string",
        },
        (None, Some(id)) if obj.contains_key("result") || obj.contains_key("error") => {
            Kind::Response { id }
        }
        (None, _) => Kind::Invalid {
            id,
            reason: "neither a request, a notification nor a response",
        },
    }
}

fn valid_id(id: &Value) -> bool {
    matches!(id, Value::String(_) | Value::Number(_))
}

/// The id of a response that was too long to read whole, from its first and last bytes: a
/// top-level `"id"` written first (`{"jsonrpc":"2.0","id":7,"result":…`) or last (`…,"id":7}`, as
/// the TypeScript SDK writes it). Escaped quotes inside strings cannot look like `"id":`, and the
/// positions checked rule out nested objects; `None` when neither end shows one.
pub fn oversized_id(head: &[u8], tail: &[u8]) -> Option<Value> {
    let scalar = |v: Value| matches!(v, Value::String(_) | Value::Number(_)).then_some(v);
    let head_id = || {
        let at = find(head, b"\"id\":")?;
        // Top level: nothing before it opens an object or array but the message's own brace.
        if head.first() != Some(&b'{') || head[1..at].iter().any(|&b| b == b'{' || b == b'[') {
            return None;
        }
        let mut values = serde_json::Deserializer::from_slice(&head[at + 5..]).into_iter::<Value>();
        values.next()?.ok().and_then(scalar)
    };
    let tail_id = || {
        let end = tail.iter().rposition(|b| !b.is_ascii_whitespace())?;
        if tail[end] != b'}' {
            return None;
        }
        let at = rfind(&tail[..end], b"\"id\":")?;
        serde_json::from_slice::<Value>(&tail[at + 5..end])
            .ok()
            .and_then(scalar)
    };
    head_id().or_else(tail_id)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// A stable key for an id, keeping `1` and `"1"` apart.
pub fn id_key(id: &Value) -> String {
    id.to_string()
}

/// A JSON-RPC error response.
pub fn error_reply(id: Option<&Value>, code: i64, message: &str) -> Vec<u8> {
    let reply = json!({"jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": {"code": code, "message": message}});
    reply.to_string().into_bytes()
}

/// A tool result flagged `isError`, so the model reads why its call did not run.
pub fn tool_error_reply(id: &Value, text: &str) -> Vec<u8> {
    let reply = json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": text}], "isError": true}});
    reply.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        let req = v(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#);
        assert_eq!(
            classify(&req),
            Kind::Request {
                id: &json!(1),
                method: "tools/call"
            }
        );
        let note = v(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!(
            classify(&note),
            Kind::Notification {
                method: "notifications/initialized"
            }
        );
        let resp = v(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#);
        assert_eq!(classify(&resp), Kind::Response { id: &json!("a") });
        let err = v(r#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}}"#);
        assert!(matches!(classify(&err), Kind::Invalid { id: None, .. }));
        assert!(matches!(classify(&v("[]")), Kind::Invalid { .. }));
        assert!(matches!(classify(&v("[1]")), Kind::Batch(_)));
        assert!(matches!(classify(&v("3")), Kind::Invalid { id: None, .. }));
        let no_version = v(r#"{"id":7,"method":"x"}"#);
        assert_eq!(
            classify(&no_version),
            Kind::Invalid {
                id: Some(&json!(7)),
                reason: "missing \"jsonrpc\": \"2.0\""
            }
        );
        let bad_id = v(r#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#);
        assert!(matches!(classify(&bad_id), Kind::Invalid { id: None, .. }));
        let bad_method = v(r#"{"jsonrpc":"2.0","id":2,"method":5}"#);
        assert!(matches!(
            classify(&bad_method),
            Kind::Invalid { id: Some(_), .. }
        ));
    }

    #[test]
    fn finds_the_id_of_an_oversized_response() {
        let id = |head: &str, tail: &str| oversized_id(head.as_bytes(), tail.as_bytes());
        assert_eq!(
            id(
                r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"te"#,
                "xx\"}]}}"
            ),
            Some(json!(7))
        );
        assert_eq!(
            id(
                r#"{"result":{"content":[{"text":"aaa"#,
                r#"aaa"}]},"jsonrpc":"2.0","id":"r-1"}"#
            ),
            Some(json!("r-1"))
        );
        assert_eq!(
            id(
                r#"{"result":{"content":[{"id":3,"x"#,
                r#"aaa"}]},"jsonrpc":"2.0","id":9}  "#
            ),
            Some(json!(9))
        );
        // Nested ids and ids inside strings are not the message's.
        assert_eq!(id(r#"{"result":{"id":3,"#, r#"{"id":4}}"#), None);
        assert_eq!(id(r#"{"result":"#, r#"\"id\":5\"}"#), None);
        assert_eq!(id(r#"{"jsonrpc":"2.0","id":{"a":1},"#, "x}"), None);
        assert_eq!(id("garbage", "garbage"), None);
    }

    #[test]
    fn replies_are_single_lines() {
        let r = tool_error_reply(&json!(4), "behavry denied fs/write_file: line1\nline2");
        assert!(!r.contains(&b'\n'));
        let parsed: Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(parsed["result"]["isError"], true);
        assert_eq!(parsed["id"], 4);
        let e: Value = serde_json::from_slice(&error_reply(None, PARSE_ERROR, "bad")).unwrap();
        assert_eq!(e["id"], Value::Null);
        assert_eq!(e["error"]["code"], -32700);
    }
}
