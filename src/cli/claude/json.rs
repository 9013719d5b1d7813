//! A JSON document edited in place: parsed with the byte span of every value and object members
//! in file order, so an edit replaces or inserts only the text it changes and everything else
//! (key order, indentation, number spelling, string escapes) stays byte for byte.
//!
//! serde_json without `preserve_order` sorts keys, and turning that feature on would change it for
//! the whole crate; this small tree is used only to edit Claude Code's config files.

use std::ops::Range;

/// How deep a document may nest (Claude Code's files are a few levels deep).
const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// The number's text as written.
    Number(String),
    String(String),
    Array(Vec<Node>),
    Object(Vec<Member>),
}

/// A value and where it is in the source (`None` for a value an edit creates).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Option<Range<usize>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub key: String,
    /// Where the key's opening quote is.
    pub key_start: Option<usize>,
    pub value: Node,
}

impl Node {
    pub fn new(value: Value) -> Node {
        Node { value, span: None }
    }

    pub fn string(s: &str) -> Node {
        Node::new(Value::String(s.to_owned()))
    }

    pub fn strings<S: AsRef<str>>(items: &[S]) -> Node {
        Node::new(Value::Array(
            items.iter().map(|s| Node::string(s.as_ref())).collect(),
        ))
    }

    pub fn object(members: Vec<(&str, Node)>) -> Node {
        Node::new(Value::Object(
            members
                .into_iter()
                .map(|(key, value)| Member {
                    key: key.to_owned(),
                    key_start: None,
                    value,
                })
                .collect(),
        ))
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.members()?
            .iter()
            .find(|m| m.key == key)
            .map(|m| &m.value)
    }

    pub fn members(&self) -> Option<&[Member]> {
        match &self.value {
            Value::Object(members) => Some(members),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// An array of strings, or `None` if this is anything else.
    pub fn as_strings(&self) -> Option<Vec<String>> {
        match &self.value {
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect(),
            _ => None,
        }
    }

    /// Sets `key` to `value`, in place if it exists, else right after `after` (or at the end).
    pub fn set(&mut self, key: &str, value: Node, after: Option<&str>) {
        let Value::Object(members) = &mut self.value else {
            return;
        };
        if let Some(member) = members.iter_mut().find(|m| m.key == key) {
            member.value = value;
            return;
        }
        let at = after
            .and_then(|a| members.iter().position(|m| m.key == a))
            .map_or(members.len(), |i| i + 1);
        members.insert(
            at,
            Member {
                key: key.to_owned(),
                key_start: None,
                value,
            },
        );
    }
}

/// A parsed document: its text and its tree.
pub struct Doc {
    pub text: String,
    pub root: Node,
}

/// A replacement of `range` in the text by `text` (an insertion when the range is empty).
#[derive(Debug)]
pub struct Edit {
    pub range: Range<usize>,
    pub text: String,
}

impl Doc {
    /// Parses `text`; the message says where it is malformed. Duplicate keys are refused: which
    /// one a reader takes is a guess this tool will not make on someone's config.
    pub fn parse(text: String) -> Result<Doc, String> {
        // serde_json is the strict judge of validity; the span parser below can then be simple.
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&text) {
            return Err(e.to_string());
        }
        let mut parser = Parser {
            text: &text,
            pos: 0,
            depth: 0,
        };
        parser.skip_ws();
        let root = parser.value()?;
        Ok(Doc { text, root })
    }

    /// The text with `edits` (non-overlapping) applied.
    pub fn apply(&self, mut edits: Vec<Edit>) -> String {
        edits.sort_by_key(|e| std::cmp::Reverse(e.range.start));
        let mut text = self.text.clone();
        for edit in edits {
            text.replace_range(edit.range, &edit.text);
        }
        text
    }

    /// An edit that replaces `old` (which has a span) by `new`, keeping `old`'s layout: on one line
    /// if it was, else indented like the file.
    pub fn replace(&self, old: &Node, new: &Node) -> Option<Edit> {
        let span = old.span.clone()?;
        let style = self.style_at(span.clone());
        Some(Edit {
            text: self.render(new, &style, 0),
            range: span,
        })
    }

    /// An edit that adds `key: value` at the end of the object `object` (which has a span).
    pub fn insert(&self, object: &Node, key: &str, value: &Node) -> Option<Edit> {
        let span = object.span.clone()?;
        let members = object.members()?;
        let Some(last) = members.last() else {
            // `{}`: write the whole object anew, in the file's layout.
            let style = if self.is_pretty() {
                Style::Pretty {
                    base: self.line_indent(span.start),
                }
            } else {
                self.style_at(span.clone())
            };
            let object = Node::object(vec![(key, value.clone())]);
            return Some(Edit {
                text: self.render(&object, &style, 0),
                range: span,
            });
        };
        let end = last.value.span.as_ref()?.end;
        let (separator, style) = if self.text[span.clone()].contains('\n') {
            let indent = self.line_indent(last.key_start?);
            (
                format!(",\n{indent}"),
                Style::Pretty {
                    base: indent.clone(),
                },
            )
        } else {
            let style = self.style_at(span);
            let gap = if matches!(style, Style::Line { spaced: true }) {
                " "
            } else {
                ""
            };
            (format!(",{gap}"), style)
        };
        let colon = if matches!(style, Style::Line { spaced: false }) {
            ":"
        } else {
            ": "
        };
        Some(Edit {
            range: end..end,
            text: format!(
                "{separator}{}{colon}{}",
                quote(key),
                self.render(value, &style, 0)
            ),
        })
    }

    /// Whether the document is laid out over several lines (an empty document counts as pretty:
    /// that is how Claude Code writes its files).
    fn is_pretty(&self) -> bool {
        let trimmed = self.text.trim();
        trimmed.contains('\n') || trimmed == "{}" || trimmed.is_empty()
    }

    fn style_at(&self, span: Range<usize>) -> Style {
        let text = &self.text[span.clone()];
        if text.contains('\n') {
            Style::Pretty {
                base: self.line_indent(span.start),
            }
        } else {
            Style::Line {
                spaced: text.contains(": ") || text.contains(", "),
            }
        }
    }

    /// The indentation unit: the first indented line's leading whitespace, else two spaces.
    fn unit(&self) -> String {
        self.text
            .lines()
            .skip(1)
            .map(|l| &l[..l.len() - l.trim_start().len()])
            .find(|ws| !ws.is_empty())
            .unwrap_or("  ")
            .to_owned()
    }

    /// The leading whitespace of the line holding byte `pos`.
    fn line_indent(&self, pos: usize) -> String {
        let start = self.text[..pos].rfind('\n').map_or(0, |i| i + 1);
        let line = &self.text[start..];
        line[..line.len() - line.trim_start_matches([' ', '\t']).len()].to_owned()
    }

    /// `node` as JSON text. Strings and numbers read from the file keep their exact spelling.
    fn render(&self, node: &Node, style: &Style, depth: usize) -> String {
        let source = |n: &Node| n.span.clone().map(|s| self.text[s].to_owned());
        match &node.value {
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.clone(),
            Value::String(s) => source(node).unwrap_or_else(|| quote(s)),
            Value::Array(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| self.render(i, style, depth + 1))
                    .collect();
                self.join(&parts, '[', ']', style, depth)
            }
            Value::Object(members) => {
                let colon = if matches!(style, Style::Line { spaced: false }) {
                    ":"
                } else {
                    ": "
                };
                let parts: Vec<String> = members
                    .iter()
                    .map(|m| {
                        format!(
                            "{}{colon}{}",
                            quote(&m.key),
                            self.render(&m.value, style, depth + 1)
                        )
                    })
                    .collect();
                self.join(&parts, '{', '}', style, depth)
            }
        }
    }

    fn join(
        &self,
        parts: &[String],
        open: char,
        close: char,
        style: &Style,
        depth: usize,
    ) -> String {
        if parts.is_empty() {
            return format!("{open}{close}");
        }
        match style {
            Style::Line { spaced } => {
                let sep = if *spaced { ", " } else { "," };
                format!("{open}{}{close}", parts.join(sep))
            }
            Style::Pretty { base } => {
                let unit = self.unit();
                let inner = format!("{base}{}", unit.repeat(depth + 1));
                let outer = format!("{base}{}", unit.repeat(depth));
                let body: Vec<String> = parts.iter().map(|p| format!("{inner}{p}")).collect();
                format!("{open}\n{}\n{outer}{close}", body.join(",\n"))
            }
        }
    }
}

/// How a value is laid out: on one line (with or without spaces after `:` and `,`), or one item
/// per line, indented from `base` by the file's unit (as `JSON.stringify(v, null, 2)` does).
enum Style {
    Line { spaced: bool },
    Pretty { base: String },
}

fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.pos)
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected `{}`", byte as char)))
        }
    }

    fn value(&mut self) -> Result<Node, String> {
        self.skip_ws();
        let start = self.pos;
        let value = match self.peek() {
            Some(b'{') => self.nested(Self::object)?,
            Some(b'[') => self.nested(Self::array)?,
            Some(b'"') => Value::String(self.string()?),
            Some(b't') => self.word("true", Value::Bool(true))?,
            Some(b'f') => self.word("false", Value::Bool(false))?,
            Some(b'n') => self.word("null", Value::Null)?,
            Some(b'-' | b'0'..=b'9') => {
                while matches!(
                    self.peek(),
                    Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                ) {
                    self.pos += 1;
                }
                Value::Number(self.text[start..self.pos].to_owned())
            }
            _ => return Err(self.error("expected a value")),
        };
        Ok(Node {
            value,
            span: Some(start..self.pos),
        })
    }

    fn nested(&mut self, f: fn(&mut Self) -> Result<Value, String>) -> Result<Value, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        let value = f(self);
        self.depth -= 1;
        value
    }

    fn word(&mut self, word: &str, value: Value) -> Result<Value, String> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.peek() {
                Some(b'\\') => self.pos += 2,
                Some(b'"') => break,
                Some(_) => self.pos += 1,
                None => return Err(self.error("unterminated string")),
            }
        }
        self.pos += 1;
        serde_json::from_str(&self.text[start..self.pos]).map_err(|e| self.error(&e.to_string()))
    }

    fn array(&mut self) -> Result<Value, String> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    fn object(&mut self) -> Result<Value, String> {
        self.pos += 1;
        let mut members: Vec<Member> = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_ws();
            let key_start = self.pos;
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a key"));
            }
            let key = self.string()?;
            if members.iter().any(|m| m.key == key) {
                return Err(format!("the key {key:?} appears twice in one object"));
            }
            self.expect(b':')?;
            let value = self.value()?;
            members.push(Member {
                key,
                key_start: Some(key_start),
                value,
            });
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Doc {
        Doc::parse(text.to_owned()).unwrap()
    }

    #[test]
    fn replacing_a_value_with_itself_changes_nothing() {
        for text in [
            "{\n  \"b\": 1,\n  \"a\": {\n    \"x\": [\n      \"\\u00e9\",\n      2.50\n    ]\n  }\n}\n",
            "{\"b\":1,\"a\":{\"x\":[\"y\",{}]}}",
            "{\"b\": 1, \"a\": {\"x\": [\"y\", []]}}",
            "{\n\t\"a\": {\n\t\t\"x\": true\n\t}\n}",
        ] {
            let d = doc(text);
            let a = d.root.get("a").unwrap();
            let edit = d.replace(a, &Node::new(a.value.clone())).unwrap();
            assert_eq!(d.apply(vec![edit]), text);
        }
    }

    #[test]
    fn inserts_in_the_layout_of_the_object() {
        let table: &[(&str, &str)] = &[
            ("{}", "{\n  \"k\": [\n    \"v\"\n  ]\n}"),
            (
                "{\n  \"a\": 1\n}\n",
                "{\n  \"a\": 1,\n  \"k\": [\n    \"v\"\n  ]\n}\n",
            ),
            ("{\"a\": 1}", "{\"a\": 1, \"k\": [\"v\"]}"),
            ("{\"a\":1}", "{\"a\":1,\"k\":[\"v\"]}"),
            (
                "{\n    \"a\": {}\n}",
                "{\n    \"a\": {},\n    \"k\": [\n        \"v\"\n    ]\n}",
            ),
        ];
        for (before, after) in table {
            let d = doc(before);
            let edit = d.insert(&d.root, "k", &Node::strings(&["v"])).unwrap();
            assert_eq!(d.apply(vec![edit]), *after, "{before}");
        }
        let d = doc("{\n  \"a\": {}\n}");
        let a = d.root.get("a").unwrap();
        let edit = d.insert(a, "k", &Node::string("v")).unwrap();
        assert_eq!(
            d.apply(vec![edit]),
            "{\n  \"a\": {\n    \"k\": \"v\"\n  }\n}"
        );
    }

    #[test]
    fn refuses_what_is_not_one_clear_document() {
        for bad in [
            "{",
            "{\"a\": 1,}",
            "{\"a\": 1, \"a\": 2}",
            "[1] [2]",
            "",
            "{'a': 1}",
        ] {
            assert!(Doc::parse(bad.to_owned()).is_err(), "{bad}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(Doc::parse(deep).is_err());
    }
}
