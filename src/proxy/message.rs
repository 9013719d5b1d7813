//! JSON-RPC message shapes, and the replies behavry writes itself.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Map, Value};

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

/// The whole response with `id` in a server line (the line itself, or the element of a batch):
/// for the few answers whose result the relay uses. `None` if the line does not parse.
pub fn full_response(line: &[u8], id: &Value) -> Option<Value> {
    match serde_json::from_slice::<Value>(line).ok()? {
        Value::Array(items) => items.into_iter().find(|m| m.get("id") == Some(id)),
        one => Some(one),
    }
}

/// A line from the server, as far as the relay reads it.
#[derive(Debug, PartialEq)]
pub enum ServerLine {
    /// Not JSON by RFC 8259 (or not UTF-8): stray output, dropped.
    NotJson,
    /// JSON, but no JSON-RPC message (a structured log line): dropped.
    NotJsonRpc,
    /// JSON-RPC: the parts the relay reads, in a message of the same shape. Only `jsonrpc`,
    /// `id`, `method`, `params`, `error` (present or not: `null`), and `result.isError` and
    /// `result.protocolVersion` are kept; everything else was skipped unread.
    Message(Value),
    /// JSON whose parts the relay reads hold something it cannot represent (a number beyond
    /// double range as an id): relayed unread.
    Unreadable(String),
}

/// Reads what the relay needs from a server line without building the rest of it: a 16 MiB
/// result is skipped, not copied, and numbers in it may be of any size (RFC 8259 sets no range,
/// `serde_json::Value` does).
pub fn read_server_line(line: &[u8]) -> ServerLine {
    if std::str::from_utf8(line).is_err() {
        return ServerLine::NotJson;
    }
    // Valid JSON at all? (Ignoring validates the syntax without reading numbers.)
    let mut de = serde_json::Deserializer::from_slice(line);
    if de::Deserialize::deserialize(&mut de)
        .and_then(|IgnoredAny| de.end())
        .is_err()
    {
        return ServerLine::NotJson;
    }
    let mut de = serde_json::Deserializer::from_slice(line);
    let skeleton = match (Skeleton { top: true }).deserialize(&mut de) {
        Ok(v) => v,
        Err(e) => return ServerLine::Unreadable(e.to_string()),
    };
    let json_rpc = |v: &Value| v.get("jsonrpc").is_some();
    let is_json_rpc = match &skeleton {
        Value::Object(_) => json_rpc(&skeleton),
        Value::Array(items) => !items.is_empty() && items.iter().all(json_rpc),
        _ => false,
    };
    if is_json_rpc {
        ServerLine::Message(skeleton)
    } else {
        ServerLine::NotJsonRpc
    }
}

/// One message's skeleton (see [`ServerLine::Message`]); at the top, a batch of them.
#[derive(Clone, Copy)]
struct Skeleton {
    top: bool,
}

impl<'de> DeserializeSeed<'de> for Skeleton {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skeleton {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if !self.top {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Value::Null);
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Skeleton { top: false })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = match key.as_str() {
                "jsonrpc" | "id" | "method" => map.next_value::<Scalar>()?.0,
                // The server's requests are recorded with their params.
                "params" => map.next_value::<Value>()?,
                "error" => {
                    map.next_value::<IgnoredAny>()?;
                    Value::Null
                }
                "result" => map.next_value::<ResultParts>()?.0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// A scalar as it is; an array or object as an empty one (its contents skipped).
struct Scalar(Value);

impl<'de> de::Deserialize<'de> for Scalar {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(ScalarVisitor).map(Scalar)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Array(Vec::new()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Value::Object(Map::new()))
    }
}

/// `result.isError` and `result.protocolVersion`, skipping the rest of the result.
struct ResultParts(Value);

impl<'de> de::Deserialize<'de> for ResultParts {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<ResultParts, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                let mut out = Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "isError" || key == "protocolVersion" {
                        let value = map.next_value::<Scalar>()?.0;
                        out.insert(key, value);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Value::Object(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
                ScalarVisitor.visit_seq(seq)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_str<E>(self, _: &str) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
        }
        d.deserialize_any(V).map(ResultParts)
    }
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
    fn reads_server_lines_without_building_them() {
        let read = |s: &str| read_server_line(s.as_bytes());
        let ServerLine::Message(m) = read(
            r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-03-26","x":1e400,"isError":true,"big":[1,{"a":2}]}}"#,
        ) else {
            panic!("not read")
        };
        assert_eq!(
            m,
            json!({"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-03-26","isError":true}})
        );
        assert_eq!(classify(&m), Kind::Response { id: &json!(1) });
        let ServerLine::Message(m) = read(r#"{"error":{"code":1e999},"id":"a","jsonrpc":"2.0"}"#)
        else {
            panic!("not read")
        };
        assert_eq!(m, json!({"jsonrpc":"2.0","id":"a","error":null}));
        let ServerLine::Message(m) = read(
            r#"[{"jsonrpc":"2.0","id":"s-1","method":"roots/list","params":{"k":[1]}},{"jsonrpc":"2.0","id":2,"result":5}]"#,
        ) else {
            panic!("not read")
        };
        assert_eq!(
            m,
            json!([{"jsonrpc":"2.0","id":"s-1","method":"roots/list","params":{"k":[1]}},{"jsonrpc":"2.0","id":2,"result":null}])
        );
        assert_eq!(read("hello"), ServerLine::NotJson);
        assert_eq!(read(r#"{"a":1}x"#), ServerLine::NotJson);
        assert_eq!(read_server_line(b"{\"a\":\"\xff\"}"), ServerLine::NotJson);
        assert_eq!(
            read(r#"{"level":"info","n":1e400}"#),
            ServerLine::NotJsonRpc
        );
        assert_eq!(read(r#"[{"jsonrpc":"2.0"},3]"#), ServerLine::NotJsonRpc);
        assert_eq!(read("[]"), ServerLine::NotJsonRpc);
        assert!(matches!(
            read(r#"{"jsonrpc":"2.0","id":1e400,"result":{}}"#),
            ServerLine::Unreadable(_)
        ));
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
