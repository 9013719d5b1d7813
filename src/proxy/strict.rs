//! The one parse of what the client sends. Its result is both what policy evaluates and what the
//! server receives (behavry forwards the re-serialised value, never the bytes that came in), so a
//! message that two JSON parsers could read differently must not get past this module.
//!
//! Rejected (a JSON-RPC error to the client, nothing forwarded):
//! - bytes that are not UTF-8, a leading UTF-8 byte order mark, lone surrogates in `\u` escapes,
//!   trailing data, anything `serde_json` refuses: parse error (`-32700`);
//! - an object with the same key twice, at any depth, compared after unescaping (`"a"` and
//!   `"\u0061"` are the same key): `serde_json` keeps the last, other parsers the first;
//! - containers nested deeper than [`MAX_DEPTH`];
//! - an `id` that is not a string or an integer exactly representable as `i64`/`u64` (`1.0`,
//!   `1e0`, `-0` and 2^64 would be rounded or re-spelled on the way to the server);
//! - a `method` holding control characters (a C server may stop reading at `\u0000`).
//!
//! Those are Invalid Request (`-32600`). The id of a rejected message is never echoed: it cannot
//! be trusted, and echoing it could answer another request that is in flight with that id.
//!
//! Pure: no I/O, no state. Which ids are in flight is [`super::guard`]'s business.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::message::{self, INVALID_REQUEST, PARSE_ERROR};

/// How deeply arrays and objects may nest: a top-level object is depth 1, `params` 2,
/// `params.arguments` 3. MCP messages need a handful of levels; 64 leaves tool arguments room
/// for 60 and stays well inside `serde_json`'s own limit (128), so the error is always ours and
/// names the limit. It also bounds the recursion when a value is dropped or serialised.
pub const MAX_DEPTH: usize = 64;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a message was refused, and the JSON-RPC error code that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: i64,
    pub message: String,
}

impl Rejection {
    pub fn parse(message: impl Into<String>) -> Rejection {
        Rejection {
            code: PARSE_ERROR,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Rejection {
        Rejection {
            code: INVALID_REQUEST,
            message: message.into(),
        }
    }

    /// The error frame for the client. Its id is null: see the module docs.
    pub fn reply(&self) -> Vec<u8> {
        let text = format!("{}; the message was not forwarded", self.message);
        message::error_reply(None, self.code, &text)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// Parses one line from the client (without its line ending) into a value that has exactly one
/// reading.
pub fn parse(line: &[u8]) -> Result<Value, Rejection> {
    if line.starts_with(BOM) {
        return Err(Rejection::parse(
            "parse error: the message starts with a UTF-8 byte order mark, which JSON-RPC does not allow",
        ));
    }
    let text = std::str::from_utf8(line).map_err(|e| {
        Rejection::parse(format!(
            "parse error: the message is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    let violation = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = Strict {
        depth: 0,
        violation: &violation,
    };
    let value = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    value.map_err(|e| {
        if violation.get() {
            Rejection::invalid(format!("ambiguous message: {e}"))
        } else if e.to_string().contains("hex escape") {
            // serde_json words a lone surrogate several ways ("unexpected end of hex escape").
            Rejection::parse(format!(
                "parse error: a \\u escape is malformed or a lone UTF-16 surrogate, which has no UTF-8 form ({e})"
            ))
        } else {
            Rejection::parse(format!("parse error: {e}"))
        }
    })
}

/// Checks the parts of one message (an object, or anything else `classify` will reject) that
/// must be unambiguous before it is classified: its `id` and its `method`.
pub fn check(message: &Value) -> Result<(), Rejection> {
    let Value::Object(obj) = message else {
        return Ok(());
    };
    match obj.get("id") {
        None | Some(Value::String(_)) => {}
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {}
        // A response the client could not tie to a request carries a null id; a request may not.
        Some(Value::Null) if !obj.contains_key("method") => {}
        Some(other) => {
            return Err(Rejection::invalid(format!(
                "\"id\" must be a string or an integer between -2^63 and 2^64-1, written without a fraction or exponent; got {}",
                shorten(&other.to_string())
            )))
        }
    }
    if let Some(Value::String(method)) = obj.get("method") {
        if method.chars().any(char::is_control) {
            return Err(Rejection::invalid(format!(
                "\"method\" {} contains control characters",
                shorten(&Value::String(method.clone()).to_string())
            )));
        }
    }
    Ok(())
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Builds a `serde_json::Value` like `Value::deserialize`, but refuses duplicate keys and deep
/// nesting. `violation` tells a refusal of ours apart from a syntax error.
#[derive(Clone, Copy)]
struct Strict<'a> {
    depth: usize,
    violation: &'a Cell<bool>,
}

impl<'a> Strict<'a> {
    fn nested<E: de::Error>(self) -> Result<Strict<'a>, E> {
        if self.depth >= MAX_DEPTH {
            self.violation.set(true);
            return Err(E::custom(format_args!(
                "nested deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(Strict {
            depth: self.depth + 1,
            violation: self.violation,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // serde_json never yields a non-finite number from JSON text, but don't assume it.
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Map::new();
        // Keys arrive unescaped, so `"a"` and `"\u0061"` collide here as they should.
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                self.violation.set(true);
                return Err(de::Error::custom(format_args!(
                    "duplicate key {}",
                    shorten(&Value::String(key).to_string())
                )));
            }
            let value = map.next_value_seed(inner)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(line: &[u8]) -> Option<i64> {
        parse(line).err().map(|r| r.code)
    }

    #[test]
    fn accepts_plain_messages_and_decodes_escapes() {
        let v = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools\/call"}"#).unwrap();
        assert_eq!(v["method"], "tools/call");
        let v = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/\u0063all"}"#).unwrap();
        assert_eq!(v["method"], "tools/call");
        let v = parse(br#"{"\u006dethod":"x"}"#).unwrap();
        assert_eq!(v, json!({"method": "x"}));
        let v = parse(b" [1, 2.5, \"\\ud83d\\ude00\", null, true, {}] ").unwrap();
        assert_eq!(v, json!([1, 2.5, "😀", null, true, {}]));
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        let table: &[&[u8]] = &[
            br#"{"method":"ping","method":"tools/call"}"#,
            br#"{"params":{"name":"a","name":"b"}}"#,
            br#"{"params":{"arguments":{"path":"/a","path":"/b"}}}"#,
            br#"[{"x":[{"k":1,"k":1}]}]"#,
            br#"{"method":"a","\u006dethod":"b"}"#,
        ];
        for line in table {
            let r = parse(line).unwrap_err();
            assert_eq!(r.code, INVALID_REQUEST, "{}", String::from_utf8_lossy(line));
            assert!(r.message.contains("duplicate key"), "{r}");
        }
        // The same key in sibling objects is fine.
        assert!(parse(br#"[{"a":1},{"a":2}]"#).is_ok());
    }

    #[test]
    fn refuses_deep_nesting() {
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse(nest(MAX_DEPTH).as_bytes()).is_ok());
        let r = parse(nest(MAX_DEPTH + 1).as_bytes()).unwrap_err();
        assert_eq!(r.code, INVALID_REQUEST);
        assert!(r.message.contains("nested deeper than 64"), "{r}");
        let deep_obj = format!("{}1{}", "{\"a\":".repeat(100), "}".repeat(100));
        assert_eq!(code(deep_obj.as_bytes()), Some(INVALID_REQUEST));
        // Far past serde_json's own limit: still ours, still no stack overflow.
        assert_eq!(code(nest(100_000).as_bytes()), Some(INVALID_REQUEST));
    }

    #[test]
    fn refuses_bad_encodings() {
        assert_eq!(code(b"\xEF\xBB\xBF{}"), Some(PARSE_ERROR));
        assert_eq!(code(b"{\"a\":\"\xff\"}"), Some(PARSE_ERROR));
        assert_eq!(code(b"{\"a\":\"\xed\xa0\x80\"}"), Some(PARSE_ERROR)); // CESU surrogate
        assert_eq!(code(br#"{"a":"\ud800"}"#), Some(PARSE_ERROR));
        assert_eq!(code(br#"{"a":"\udc00"}"#), Some(PARSE_ERROR));
        assert_eq!(code(br#"{"a":"\ud800\u0041"}"#), Some(PARSE_ERROR));
        assert_eq!(code(br#"{"\ud800":1}"#), Some(PARSE_ERROR));
        assert_eq!(code(b"{} {}"), Some(PARSE_ERROR));
        assert_eq!(code(b"{\"a\":1}x"), Some(PARSE_ERROR));
        assert_eq!(code(b"1e400"), Some(PARSE_ERROR));
        assert_eq!(code(b""), Some(PARSE_ERROR));
        assert_eq!(code(b"{'a':1}"), Some(PARSE_ERROR));
        assert_eq!(code(b"[1,]"), Some(PARSE_ERROR));
        assert_eq!(code(b"{\"a\":\"line\nbreak\"}"), Some(PARSE_ERROR));
    }

    #[test]
    fn ids_must_be_exact() {
        let check_line = |s: &str| check(&parse(s.as_bytes()).unwrap()).map_err(|r| r.code);
        for ok in [
            r#"{"id":1,"method":"x"}"#,
            r#"{"id":-9223372036854775808,"method":"x"}"#,
            r#"{"id":18446744073709551615,"method":"x"}"#,
            r#"{"id":"1.0","method":"x"}"#,
            r#"{"id":null,"error":{"code":1,"message":"x"}}"#,
            r#"{"method":"notifications/initialized"}"#,
        ] {
            assert_eq!(check_line(ok), Ok(()), "{ok}");
        }
        for bad in [
            r#"{"id":1.0,"method":"x"}"#,
            r#"{"id":1e2,"method":"x"}"#,
            r#"{"id":-0,"method":"x"}"#,
            r#"{"id":18446744073709551616,"method":"x"}"#,
            r#"{"id":-9223372036854775809,"method":"x"}"#,
            r#"{"id":true,"method":"x"}"#,
            r#"{"id":null,"method":"x"}"#,
            r#"{"id":[1],"method":"x"}"#,
            r#"{"id":{"a":1},"result":{}}"#,
            r#"{"id":1,"method":"tools/call\u0000"}"#,
            r#"{"id":1,"method":"tools/call\n"}"#,
        ] {
            assert_eq!(check_line(bad), Err(INVALID_REQUEST), "{bad}");
        }
    }

    #[test]
    fn floats_survive_the_trip_to_the_server() {
        // Found by the fuzz smoke run: without serde_json's float_roundtrip, this number parsed
        // to a neighbour of the exact value, so policy and server could see different numbers.
        let line = br#"[724073709551640737095516407370955164073709551640737095516407370955164073709551640737095516407370955164073709551640737095516407370955164073709551608]"#;
        let value = parse(line).unwrap();
        assert_eq!(parse(value.to_string().as_bytes()).unwrap(), value);
        let digits = std::str::from_utf8(&line[1..line.len() - 1]).unwrap();
        // Rust's own parser rounds correctly.
        assert_eq!(value[0].as_f64(), digits.parse::<f64>().ok());
    }

    #[test]
    fn rejection_replies_never_echo_the_id() {
        let r = Rejection::invalid("x");
        let v: Value = serde_json::from_slice(&r.reply()).unwrap();
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["error"]["code"], INVALID_REQUEST);
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("not forwarded"));
    }
}
