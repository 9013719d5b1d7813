//! The one parse of what the client sends. Its value is what policy evaluates; the server then
//! receives the line's own bytes (so it sees the client's key order and number text), which is
//! sound only because whatever two JSON readers could take differently never gets past this module.
//!
//! Repaired, not refused: a lone UTF-16 surrogate escape (`"\ud83d"`, what JavaScript's
//! `JSON.stringify` writes for a cut emoji) becomes `\ufffd` in the bytes before they are parsed,
//! so policy and server both read U+FFFD, as Go, Python and JavaScript readers do.
//!
//! Rejected (a JSON-RPC error to the client, nothing forwarded):
//! - bytes that are not UTF-8, a leading UTF-8 byte order mark, trailing data, a number beyond
//!   double range (`1e400`), anything else `serde_json` refuses: parse error (`-32700`);
//! - an object with two keys that are the same under Unicode simple case folding, at any depth,
//!   compared after unescaping (`"a"` and `"\u0061"`, `"params"` and `"paramſ"`): `serde_json`
//!   keeps the last exact key, Go's `encoding/json` (mcp-go) matches struct fields
//!   case-insensitively and keeps the last match, other parsers the first;
//! - a key that folds to a field behavry reads there without being spelled exactly so (`nAme` in
//!   `params`, `Path` in `arguments`): behavry would not read it, a Go server would ([`protected`]);
//! - containers nested deeper than [`MAX_DEPTH`], or more of them than the line's memory budget
//!   ([`budget`]) allows;
//! - an `id` that is not a string or an integer exactly representable as `i64`/`u64` (`1.0`,
//!   `1e0`, `-0` and 2^64 would be rounded or re-spelled on the way to the server);
//! - a `method` holding control characters (a C server may stop reading at `\u0000`).
//!
//! Those are Invalid Request (`-32600`). A refusal carries the message's id when
//! [`readable_id`] can read one without doubt; the relay still answers `null` when that id is in
//! flight, since the answer would resolve the other request.
//!
//! Pure: no I/O, no state. Which ids are in flight is [`super::guard`]'s business.

mod fold;

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

pub use fold::{fold, table as fold_table};

use super::message::{self, INVALID_REQUEST, PARSE_ERROR};

/// How deeply arrays and objects may nest: a top-level object is depth 1, `params` 2,
/// `params.arguments` 3. MCP messages need a handful of levels; 64 leaves tool arguments room
/// for 60 and stays well inside `serde_json`'s own limit (128), so the error is always ours and
/// names the limit. It also bounds the recursion when a value is dropped or serialised.
pub const MAX_DEPTH: usize = 64;

/// The heap a parsed line may take, estimated generously as it is built: a few times the line
/// plus a constant. Small JSON can expand a lot in memory (`{}` is 2 bytes of text and over 600
/// of `BTreeMap` node), so without it one 12 MB line of `[{},{},…]` took 835 MB.
pub fn budget(line_len: usize) -> usize {
    line_len.saturating_mul(BUDGET_PER_BYTE) + BUDGET_BASE
}
const BUDGET_PER_BYTE: usize = 6;
const BUDGET_BASE: usize = 4 << 20;
/// Estimated costs: a `Value` slot in a growing `Vec` (its 32 bytes and half as much again for
/// the spare capacity), a `BTreeMap` leaf node (room for 11 entries, allocated with the first),
/// and per entry its key twice (the map's and the fold used to find twins) plus bookkeeping.
const SLOT_COST: usize = 48;
const OBJECT_COST: usize = 640;
const ENTRY_COST: usize = 128;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a message was refused, and the JSON-RPC error code that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: i64,
    pub message: String,
    /// The refused message's id, when it can be read without doubt (see [`readable_id`]).
    pub id: Option<Value>,
}

impl Rejection {
    pub fn parse(message: impl Into<String>) -> Rejection {
        Rejection {
            code: PARSE_ERROR,
            message: message.into(),
            id: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Rejection {
        Rejection {
            code: INVALID_REQUEST,
            message: message.into(),
            id: None,
        }
    }

    /// The error frame for the client, with a null id: for refusals whose id is unreadable or
    /// belongs to a request in flight.
    pub fn reply(&self) -> Vec<u8> {
        self.reply_to(None)
    }

    /// The error frame for the client, answering `id` (see [`readable_id`]).
    pub fn reply_to(&self, id: Option<&Value>) -> Vec<u8> {
        let text = format!("{}; the message was not forwarded", self.message);
        message::error_reply(id, self.code, &text)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// A line that passed the strict parse: the value policy evaluates, and the bytes the server
/// receives (the line itself, lone surrogates repaired), which read back to exactly that value.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub value: Value,
    pub bytes: Vec<u8>,
}

/// Reads one line from the client (without its line ending) into a value that has exactly one
/// reading, keeping its bytes to forward.
pub fn read(line: Vec<u8>) -> Result<Message, Rejection> {
    read_keeping(line).map_err(|(rejection, _)| rejection)
}

/// [`read`], giving the line back with a refusal (it is recorded).
pub fn read_keeping(line: Vec<u8>) -> Result<Message, (Rejection, Vec<u8>)> {
    let bytes = repair_surrogates(&line).unwrap_or(line);
    match parse_exact(&bytes) {
        Ok(value) => Ok(Message { value, bytes }),
        Err(rejection) => Err((
            Rejection {
                id: readable_id(&bytes),
                ..rejection
            },
            bytes,
        )),
    }
}

/// [`read`], for the value alone.
pub fn parse(line: &[u8]) -> Result<Value, Rejection> {
    match repair_surrogates(line) {
        Some(repaired) => parse_exact(&repaired),
        None => parse_exact(line),
    }
}

fn parse_exact(line: &[u8]) -> Result<Value, Rejection> {
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
    let budget = Cell::new(budget(line.len()));
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = Strict {
        depth: 0,
        at: Place::Line,
        violation: &violation,
        budget: &budget,
    };
    let value = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    value.map_err(|e| {
        if violation.get() && budget.get() == 0 {
            Rejection::invalid(format!("message refused: {e}"))
        } else if violation.get() {
            Rejection::invalid(format!("ambiguous message: {e}"))
        } else if e.to_string().contains("number out of range") {
            Rejection::parse(format!(
                "parse error: a number beyond the range of a 64-bit float, which behavry cannot evaluate exactly ({e})"
            ))
        } else {
            Rejection::parse(format!("parse error: {e}"))
        }
    })
}

/// Replaces every `\u` escape of a lone UTF-16 surrogate in a JSON string with `\ufffd` (same
/// length, so offsets stay put); `None` when there is none. Understands strings and their `\`
/// escapes; anything malformed is left for the parser to refuse.
pub fn repair_surrogates(line: &[u8]) -> Option<Vec<u8>> {
    const REPLACEMENT: &[u8; 6] = b"\\ufffd";
    let unit = |at: usize| -> Option<u16> {
        let esc = line.get(at..at + 6)?;
        if esc[0] != b'\\' || esc[1] != b'u' {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&esc[2..]).ok()?, 16).ok()
    };
    let mut out: Option<Vec<u8>> = None;
    let mut in_string = false;
    let mut i = 0;
    while i < line.len() {
        match (in_string, line[i]) {
            (false, b'"') | (true, b'"') => in_string = !in_string,
            (true, b'\\') => {
                let Some(u) = unit(i) else {
                    i += 2; // `\"`, `\\`, `\n`, …: skip the escaped byte
                    continue;
                };
                let high = (0xD800..0xDC00).contains(&u);
                let low = (0xDC00..0xE000).contains(&u);
                let paired = high && unit(i + 6).is_some_and(|n| (0xDC00..0xE000).contains(&n));
                if paired {
                    i += 12;
                    continue;
                }
                if high || low {
                    out.get_or_insert_with(|| line.to_vec())[i..i + 6].copy_from_slice(REPLACEMENT);
                }
                i += 6;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The `id` of a line behavry refuses, when it can be read without doubt: the line is JSON (by
/// RFC 8259: numbers of any size), a top-level object holds exactly one key spelled `id` and none
/// that folds to it, and its value is a string or an exact integer. Used to answer the refusal
/// so the client does not wait forever; `None` otherwise.
pub fn readable_id(line: &[u8]) -> Option<Value> {
    let repaired = repair_surrogates(line);
    let bytes = repaired.as_deref().unwrap_or(line);
    if bytes.starts_with(BOM) || std::str::from_utf8(bytes).is_err() {
        return None;
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let id = TopLevelId.deserialize(&mut de).ok()?;
    de.end().ok()?;
    id
}

struct TopLevelId;

impl<'de> DeserializeSeed<'de> for TopLevelId {
    type Value = Option<Value>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevelId {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Value>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Value>, A::Error> {
        // `Some(None)`: doubt (a second `id`, a twin spelling, an inexact value).
        let mut id: Option<Option<Value>> = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "id" {
                let value = map.next_value::<ExactId>()?.0;
                id = Some(if id.is_some() { None } else { value });
            } else {
                map.next_value::<IgnoredAny>()?;
                if fold(&key) == "ID" {
                    id = Some(None);
                }
            }
        }
        Ok(id.flatten())
    }
}

/// A string or an exact integer; anything else (and the containers' contents) read as nothing.
struct ExactId(Option<Value>);

impl<'de> de::Deserialize<'de> for ExactId {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<ExactId, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExactId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_i64<E>(self, v: i64) -> Result<ExactId, E> {
                Ok(ExactId(Some(v.into())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<ExactId, E> {
                Ok(ExactId(Some(v.into())))
            }
            fn visit_str<E>(self, v: &str) -> Result<ExactId, E> {
                Ok(ExactId(Some(v.into())))
            }
            fn visit_f64<E>(self, _: f64) -> Result<ExactId, E> {
                Ok(ExactId(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<ExactId, E> {
                Ok(ExactId(None))
            }
            fn visit_unit<E>(self) -> Result<ExactId, E> {
                Ok(ExactId(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ExactId, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(ExactId(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExactId, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(ExactId(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Checks the parts of one message (an object, or anything else `classify` will reject) that
/// must be unambiguous before it is classified: its `id` and its `method`.
pub fn check(message: &Value) -> Result<(), Rejection> {
    let Value::Object(obj) = message else {
        return Ok(());
    };
    let with_id = |rejection: Rejection| Rejection {
        id: obj.get("id").filter(|id| exact_id(id)).cloned(),
        ..rejection
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
            return Err(with_id(Rejection::invalid(format!(
                "\"method\" {} contains control characters",
                shorten(&Value::String(method.clone()).to_string())
            ))));
        }
    }
    Ok(())
}

/// A string or an integer that reads back exactly.
fn exact_id(id: &Value) -> bool {
    match id {
        Value::String(_) => true,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn quoted(key: &str) -> String {
    shorten(&Value::String(key.to_owned()).to_string())
}

/// Where a value sits in a message, as far as behavry reads it: which keys it must see spelled
/// exactly (see [`protected`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The whole line: a message, or a batch of them.
    Line,
    Message,
    Params,
    Meta,
    ClientInfo,
    /// `params.arguments`, at any depth: where paths are read.
    Arguments,
    Other,
}

impl Place {
    fn element(self) -> Place {
        match self {
            Place::Line => Place::Message,
            Place::Arguments => Place::Arguments,
            _ => Place::Other,
        }
    }

    fn entry(self, key: &str) -> Place {
        match (self, key) {
            (Place::Line | Place::Message, "params") => Place::Params,
            (Place::Params, "arguments") => Place::Arguments,
            (Place::Params, "_meta") => Place::Meta,
            (Place::Params, "clientInfo") => Place::ClientInfo,
            (Place::Arguments, _) => Place::Arguments,
            _ => Place::Other,
        }
    }
}

/// The keys behavry reads in an object at `place`. Any other spelling of them that folds to the
/// same string is refused there: a Go server would read it as that field, behavry would not.
/// Elsewhere (tool results the client returns, elicitation answers) keys are nobody's fields
/// but the peers', and only the twin rule applies.
fn protected(place: Place) -> &'static [&'static str] {
    match place {
        Place::Line | Place::Message => &["jsonrpc", "id", "method", "params", "result", "error"],
        Place::Params => &[
            "name",
            "arguments",
            "uri",
            "_meta",
            "requestId",
            "clientInfo",
            "protocolVersion",
            "progressToken",
        ],
        Place::Meta => &["progressToken"],
        Place::ClientInfo => &["name"],
        // Path keys are read in any spelling there (see `policy::input::path_args`); what a Go
        // reader could still take for another key is a Unicode spelling of ASCII letters, which
        // [`unicode_twin`] refuses.
        Place::Arguments | Place::Other => &[],
    }
}

/// Whether `key` holds a non-ASCII character that Go's folding takes for an ASCII letter
/// (U+017F LATIN SMALL LETTER LONG S, U+212A KELVIN SIGN): under that spelling a Go server reads
/// an argument behavry's path rule does not recognise.
fn unicode_twin(key: &str) -> bool {
    key.chars()
        .any(|c| !c.is_ascii() && fold::fold_char(c).is_ascii())
}

/// Builds a `serde_json::Value` like `Value::deserialize`, but refuses key twins, deep nesting
/// and more than the line's memory budget. `violation` tells a refusal of ours apart from a
/// syntax error.
#[derive(Clone, Copy)]
struct Strict<'a> {
    depth: usize,
    at: Place,
    violation: &'a Cell<bool>,
    budget: &'a Cell<usize>,
}

impl<'a> Strict<'a> {
    fn nested<E: de::Error>(self) -> Result<Strict<'a>, E> {
        if self.depth >= MAX_DEPTH {
            return Err(self.refuse(format_args!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(Strict {
            depth: self.depth + 1,
            ..self
        })
    }

    fn at(self, at: Place) -> Strict<'a> {
        Strict { at, ..self }
    }

    fn refuse<E: de::Error>(self, why: impl fmt::Display) -> E {
        self.violation.set(true);
        E::custom(why)
    }

    /// Takes `cost` bytes from the budget.
    fn spend<E: de::Error>(self, cost: usize) -> Result<(), E> {
        match self.budget.get().checked_sub(cost) {
            Some(left) => {
                self.budget.set(left);
                Ok(())
            }
            None => {
                // Marks the refusal as ours for being too big, not for being ambiguous.
                self.budget.set(0);
                Err(self.refuse(
                    "too many values for its length: parsing it would take more memory than \
                     behavry allows a message (send large data as strings, or in several calls)",
                ))
            }
        }
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

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.spend(v.len())?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.spend(v.len())?;
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?.at(self.at.element());
        let mut items = Vec::new();
        loop {
            self.spend(SLOT_COST)?;
            let Some(item) = seq.next_element_seed(inner)? else {
                break;
            };
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let protected = protected(self.at);
        let mut out = Map::new();
        // Fold of each key → the key, to find twins. Keys arrive unescaped, so `"a"` and
        // `"\u0061"` collide here as they should.
        let mut folds: HashMap<String, String> = HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let node = if out.is_empty() { OBJECT_COST } else { 0 };
            self.spend(node + ENTRY_COST + 2 * key.len())?;
            let folded = fold(&key);
            if let Some(first) = folds.get(&folded) {
                let why = if *first == key {
                    format!("duplicate key {}", quoted(&key))
                } else {
                    format!(
                        "keys {} and {} are the same field to a case-insensitive reader (Go's encoding/json)",
                        quoted(first),
                        quoted(&key)
                    )
                };
                return Err(self.refuse(why));
            }
            if let Some(field) = protected.iter().find(|f| **f != key && fold(f) == folded) {
                return Err(self.refuse(format_args!(
                    "key {} is read as {} by a case-insensitive reader (Go's encoding/json) but not by behavry; spell it {}",
                    quoted(&key),
                    quoted(field),
                    quoted(field)
                )));
            }
            if self.at == Place::Arguments && unicode_twin(&key) {
                return Err(self.refuse(format_args!(
                    "key {} spells an ASCII letter with a Unicode one that Go's encoding/json reads as that letter (U+017F is s, U+212A is k); behavry reads argument keys as written; use plain ASCII",
                    quoted(&key)
                )));
            }
            let value = map.next_value_seed(inner.at(self.at.entry(&key)))?;
            folds.insert(folded, key.clone());
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
        assert_eq!(code(b"{} {}"), Some(PARSE_ERROR));
        assert_eq!(code(b"{\"a\":1}x"), Some(PARSE_ERROR));
        assert_eq!(code(b"1e400"), Some(PARSE_ERROR));
        assert_eq!(code(b""), Some(PARSE_ERROR));
        assert_eq!(code(b"{'a':1}"), Some(PARSE_ERROR));
        assert_eq!(code(b"[1,]"), Some(PARSE_ERROR));
        assert_eq!(code(b"{\"a\":\"line\nbreak\"}"), Some(PARSE_ERROR));
        assert_eq!(code(br#"{"a":"\u12"}"#), Some(PARSE_ERROR));
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let table: &[(&[u8], &[u8])] = &[
            (br#"{"a":"\ud800"}"#, br#"{"a":"\ufffd"}"#),
            (br#"{"a":"\udc00"}"#, br#"{"a":"\ufffd"}"#),
            (br#"{"a":"\ud800\u0041"}"#, br#"{"a":"\ufffd\u0041"}"#),
            (br#"{"\ud800":1}"#, br#"{"\ufffd":1}"#),
            (
                br#"{"a":"\uDBFF\uDBFF\uDFFF"}"#,
                br#"{"a":"\ufffd\uDBFF\uDFFF"}"#,
            ),
            (br#"{"a":"x\ud83d"}"#, br#"{"a":"x\ufffd"}"#),
        ];
        for (line, repaired) in table {
            let m = read(line.to_vec()).unwrap();
            assert_eq!(m.bytes, *repaired, "{}", String::from_utf8_lossy(line));
            assert_eq!(parse(line).unwrap(), m.value);
        }
        assert_eq!(parse(br#"["x\ud83d"]"#).unwrap(), json!(["x\u{fffd}"]));
        // Escapes that are not surrogates, pairs, and text outside strings are left alone.
        for line in [
            &br#"{"a":"\ud83d\ude00"}"#[..],
            br#"{"a":"\\ud800"}"#,
            br#"{"a":"\"\ud83d\ude00"}"#,
            br#"{"a":1}"#,
        ] {
            assert_eq!(
                repair_surrogates(line),
                None,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn forwards_the_clients_bytes() {
        let line = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"z":1E5,"a":-0,"n":18446744073709551616}}}"#;
        let m = read(line.to_vec()).unwrap();
        assert_eq!(m.bytes, line.to_vec());
        assert_eq!(parse(&m.bytes).unwrap(), m.value);
    }

    #[test]
    fn refuses_key_twins_at_any_depth() {
        let table: &[&str] = &[
            r#"{"params":{"a":1,"A":2}}"#,
            r#"{"params":{"arguments":{"x":1,"X":2}}}"#,
            "{\"params\":{},\"param\u{17f}\":{}}",
            r#"{"result":{"content":{"k":1,"\u212a":2}}}"#,
            r#"[{"x":[{"Σ":1,"ς":1}]}]"#,
            r#"{"params":{"arguments":{"path":"/tmp","Path":"/prod"}}}"#,
        ];
        for line in table {
            let r = parse(line.as_bytes()).unwrap_err();
            assert_eq!(r.code, INVALID_REQUEST, "{line}");
            assert!(r.message.contains("same field"), "{r}");
        }
    }

    #[test]
    fn refuses_other_spellings_of_the_fields_behavry_reads() {
        let refused: &[&str] = &[
            "{\"param\u{17f}\":{}}",
            r#"{"ID":1}"#,
            r#"{"Method":"tools/call"}"#,
            r#"{"JSONRPC":"2.0"}"#,
            r#"{"params":{"nAme":"x"}}"#,
            "{\"params\":{\"argument\u{17f}\":{}}}",
            r#"{"params":{"Arguments":{}}}"#,
            r#"{"params":{"URI":"file:///prod"}}"#,
            r#"{"params":{"_META":{}}}"#,
            r#"{"params":{"_meta":{"progresstoken":1}}}"#,
            r#"{"params":{"requestid":1}}"#,
            r#"{"params":{"clientinfo":{}}}"#,
            r#"{"params":{"clientInfo":{"NAME":"x"}}}"#,
            "{\"params\":{\"arguments\":{\"\u{17f}rc\":\"/prod\"}}}",
            r#"[{"Id":1}]"#,
        ];
        for line in refused {
            let r = parse(line.as_bytes()).unwrap_err();
            assert_eq!(r.code, INVALID_REQUEST, "{line}");
            assert!(r.message.contains("Go's encoding/json"), "{line}: {r}");
        }
        // Where behavry reads nothing, any spelling is the peers' business; argument keys are
        // read in any ASCII spelling (the path rule compares them case-insensitively).
        let accepted: &[&str] = &[
            r#"{"params":{"arguments":{"Path":"/prod"}}}"#,
            r#"{"params":{"arguments":{"opts":[{"FILE":"/prod"}]}}}"#,
            r#"{"params":{"arguments":{"Name":"x","ID":2,"Method":"m"}}}"#,
            r#"{"result":{"action":"accept","content":{"Name":"x","Path":"/p"}}}"#,
            r#"{"params":{"_meta":{"Name":1}}}"#,
            r#"{"params":{"arguments":{"pathname":"/p","PATHS2":1}}}"#,
            // Dotless and dotted capital I are their own orbits in simple folding.
            "{\"\u{131}d\":1,\"\u{130}d\":2}",
        ];
        for line in accepted {
            assert!(parse(line.as_bytes()).is_ok(), "{line}");
        }
    }

    /// Every spelling of `field` that folds to it: each char replaced by each member of its
    /// folding orbit, one position at a time, plus all-upper and all-lower case.
    fn spellings(field: &str) -> Vec<String> {
        let chars: Vec<char> = field.chars().collect();
        let orbit = |c: char| -> Vec<char> {
            let rep = fold::fold_char(c);
            let mut all: Vec<char> = fold::table()
                .filter(|&(_, r)| r == rep)
                .map(|(a, _)| a)
                .collect();
            all.push(rep);
            all
        };
        let mut out = vec![field.to_uppercase(), field.to_lowercase()];
        for (i, &c) in chars.iter().enumerate() {
            for alt in orbit(c) {
                let mut v = chars.clone();
                v[i] = alt;
                out.push(v.into_iter().collect());
            }
        }
        out.retain(|s| s != field);
        out.sort();
        out.dedup();
        out
    }

    /// Puts a key at a place in a message.
    type Wrap = fn(&str) -> String;

    #[test]
    fn generated_spellings_of_every_read_field_are_refused() {
        let places: [(Place, Wrap); 4] = [
            (Place::Message, |k| format!(r#"{{"{k}":1}}"#)),
            (Place::Params, |k| format!(r#"{{"params":{{"{k}":1}}}}"#)),
            (Place::Meta, |k| {
                format!(r#"{{"params":{{"_meta":{{"{k}":1}}}}}}"#)
            }),
            (Place::ClientInfo, |k| {
                format!(r#"{{"params":{{"clientInfo":{{"{k}":1}}}}}}"#)
            }),
        ];
        let mut tried = 0;
        for (place, wrap) in places {
            for field in protected(place) {
                assert!(parse(wrap(field).as_bytes()).is_ok(), "{field} exactly");
                for spelling in spellings(field) {
                    let line = wrap(&spelling);
                    let r = parse(line.as_bytes()).unwrap_err();
                    assert!(r.message.contains("case-insensitive"), "{line}: {r}");
                    // Beside the exact field it is a twin, whatever the place.
                    let twin = wrap(&format!(r#"{field}":0,"{spelling}"#));
                    assert!(parse(twin.as_bytes()).is_err(), "{twin}");
                    tried += 1;
                }
            }
        }
        assert!(tried > 100, "{tried}");
        // Inside arguments, ASCII spellings of a path key are read as that key; a Unicode
        // spelling Go reads as ASCII letters is refused.
        let in_arguments =
            |k: &str| format!(r#"{{"params":{{"arguments":{{"a":[{{"{k}":1}}]}}}}}}"#);
        let mut unicode = 0;
        for field in crate::policy::input::PATH_KEYS {
            for spelling in spellings(field) {
                let line = in_arguments(&spelling);
                if spelling.is_ascii() {
                    assert!(parse(line.as_bytes()).is_ok(), "{line}");
                } else {
                    assert!(parse(line.as_bytes()).is_err(), "{line}");
                    unicode += 1;
                }
            }
        }
        assert!(unicode >= 6, "{unicode}");
        // A sample of what passes: other letters, fullwidth forms, dotless i, separators.
        for key in [
            "nam",
            "names",
            "ｎame",
            "ıd",
            "ID_",
            "file-path",
            "_meta_",
            "argument",
        ] {
            assert!(
                parse(format!(r#"{{"params":{{"{key}":1}}}}"#).as_bytes()).is_ok(),
                "{key}"
            );
        }
    }

    #[test]
    fn memory_is_bounded_by_the_line() {
        let many = |n: usize, item: &str| format!("[{}]", vec![item; n].join(","));
        // Small messages of any shape fit the constant part.
        assert!(parse(many(1000, "{}").as_bytes()).is_ok());
        assert!(parse(many(50_000, "1").as_bytes()).is_ok());
        // A long line of tiny objects does not.
        let r = parse(many(200_000, "{}").as_bytes()).unwrap_err();
        assert_eq!(r.code, INVALID_REQUEST);
        assert!(r.message.contains("more memory"), "{r}");
        // Long strings cost what they weigh.
        let text = "x".repeat(8 << 20);
        assert!(parse(format!("[\"{text}\"]").as_bytes()).is_ok());
    }

    #[test]
    fn reads_the_id_of_a_refused_line_only_without_doubt() {
        let id = |s: &str| readable_id(s.as_bytes());
        assert_eq!(
            id(r#"{"jsonrpc":"2.0","id":7,"params":{"x":1e400}}"#),
            Some(json!(7))
        );
        assert_eq!(id(r#"{"params":{"x":1e400},"id":"a"}"#), Some(json!("a")));
        assert_eq!(id(r#"{"id":7,"a":1,"a":2}"#), Some(json!(7)));
        assert_eq!(
            id(r#"{"id":18446744073709551615}"#),
            Some(json!(18446744073709551615u64))
        );
        assert_eq!(id(r#"{"id":7,"x":"\ud800"}"#), Some(json!(7)));
        for doubt in [
            r#"{"id":7,"id":8}"#,
            r#"{"id":7,"ID":8}"#,
            r#"{"Id":7}"#,
            r#"{"id":1.0}"#,
            r#"{"id":-0}"#,
            r#"{"id":1e400}"#,
            r#"{"id":[7]}"#,
            r#"{"id":null}"#,
            r#"{"id":7,"x":}"#,
            r#"{"id":7} x"#,
            r#"[{"id":7}]"#,
            r#"{"params":{"id":7}}"#,
        ] {
            assert_eq!(id(doubt), None, "{doubt}");
        }
        assert_eq!(readable_id(b"{\"id\":7,\"x\":\"\xff\"}"), None);
        // A parse refusal carries it.
        let r = read(
            br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"n":1e400}}"#.to_vec(),
        )
        .unwrap_err();
        assert_eq!((r.code, r.id.clone()), (PARSE_ERROR, Some(json!(3))));
        assert!(r.message.contains("beyond the range"), "{r}");
        let r = read(br#"{"jsonrpc":"2.0","id":4,"params":{"a":1,"A":1}}"#.to_vec()).unwrap_err();
        assert_eq!((r.code, r.id), (INVALID_REQUEST, Some(json!(4))));
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
        let r = check(&json!({"id": 5, "method": "a\u{0}"})).unwrap_err();
        assert_eq!(r.id, Some(json!(5)), "a readable id is answered");
        let r = check(&json!({"id": 1.5, "method": "x"})).unwrap_err();
        assert_eq!(r.id, None);
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
    fn rejection_replies_echo_only_the_id_they_are_given() {
        let r = Rejection::invalid("x");
        let v: Value = serde_json::from_slice(&r.reply_to(Some(&json!(9)))).unwrap();
        assert_eq!(v["id"], 9);
        let v: Value = serde_json::from_slice(&r.reply()).unwrap();
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["error"]["code"], INVALID_REQUEST);
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("not forwarded"));
    }
}
