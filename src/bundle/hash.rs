//! File digests as OPA's `hash.go` computes them for signatures.
//!
//! Most files are hashed as bytes. `data.json`, `data.yaml` and `.manifest` (OPA's "structured"
//! documents) are hashed over a canonical form instead, so whitespace and key order do not
//! matter: objects with keys sorted (by bytes), no spaces, strings escaped as Go's
//! `json.Encoder` with `SetEscapeHTML(false)` escapes them (`\"`, `\\`, `\n`, `\r`, `\t`, `\b`,
//! `\f`, other controls as `\u00xx`, U+2028/U+2029 as `\u2028`/`\u2029`; `<>&` kept), and
//! numbers exactly as written (OPA decodes with `UseNumber`). The canonical JSON is produced
//! from the text by a small parser of our own, since `serde_json::Value` would rewrite numbers.
//! (`data.yml` is hashed as bytes: OPA's `IsStructuredDoc` does not list it.)

use sha2::{Digest, Sha256, Sha384, Sha512};

/// The digest of one file, by the algorithm its signature entry names.
pub fn digest(name: &str, bytes: &[u8], algorithm: &str) -> Result<Vec<u8>, String> {
    let canonical;
    let input: &[u8] = if is_structured(name) {
        canonical = if name.ends_with(".yaml") {
            yaml_canonical(bytes)?
        } else {
            canonical_json(bytes)?
        };
        &canonical
    } else {
        bytes
    };
    Ok(match algorithm {
        "SHA-256" => Sha256::digest(input).to_vec(),
        "SHA-384" => Sha384::digest(input).to_vec(),
        "SHA-512" => Sha512::digest(input).to_vec(),
        other => {
            return Err(format!(
                "hashing algorithm \"{other}\" is not accepted (behavry checks SHA-256, SHA-384 and SHA-512)"
            ))
        }
    })
}

/// OPA's `IsStructuredDoc`.
fn is_structured(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    matches!(base, "data.json" | "data.yaml" | ".manifest")
}

/// YAML goes through `serde_json` (as OPA converts YAML to JSON before hashing): integers and
/// strings hash as OPA hashes them; a float may be written differently (`1.0` vs OPA's `1`).
fn yaml_canonical(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let value: serde_json::Value =
        yaml_serde::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let json = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
    canonical_json(&json)
}

/// The canonical form of a JSON text (see the module doc). Duplicate keys: the last wins, as
/// when Go decodes into a map.
pub fn canonical_json(text: &[u8]) -> Result<Vec<u8>, String> {
    let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
    let mut parser = Parser { text, at: 0 };
    parser.space();
    let value = parser.value(0)?;
    parser.space();
    if parser.at != text.len() {
        return Err(parser.error("unexpected text after the document"));
    }
    let mut out = Vec::with_capacity(text.len());
    write(&value, &mut out);
    Ok(out)
}

enum Node<'a> {
    /// `null`, `true`, `false` or a number, exactly as written.
    Raw(&'a [u8]),
    Str(String),
    Array(Vec<Node<'a>>),
    Object(std::collections::BTreeMap<String, Node<'a>>),
}

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 512;

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, what: &str) -> String {
        format!("not valid JSON: {what} at byte {}", self.at)
    }

    fn space(&mut self) {
        while matches!(self.text.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node<'a>, String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        match self.text.get(self.at) {
            Some(b'{') => {
                self.at += 1;
                let mut map = std::collections::BTreeMap::new();
                self.space();
                if self.text.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Ok(Node::Object(map));
                }
                loop {
                    self.space();
                    let key = self.string()?;
                    self.space();
                    self.expect(b':')?;
                    self.space();
                    let value = self.value(depth + 1)?;
                    map.insert(key, value);
                    self.space();
                    match self.text.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Node::Object(map));
                        }
                        _ => return Err(self.error("expected `,` or `}`")),
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.space();
                if self.text.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Ok(Node::Array(items));
                }
                loop {
                    self.space();
                    items.push(self.value(depth + 1)?);
                    self.space();
                    match self.text.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Node::Array(items));
                        }
                        _ => return Err(self.error("expected `,` or `]`")),
                    }
                }
            }
            Some(b'"') => Ok(Node::Str(self.string()?)),
            Some(b't') => self.word(b"true"),
            Some(b'f') => self.word(b"false"),
            Some(b'n') => self.word(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.error("expected a value")),
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        if self.text.get(self.at) == Some(&byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected `{}`", byte as char)))
        }
    }

    fn word(&mut self, word: &'static [u8]) -> Result<Node<'a>, String> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(Node::Raw(word))
        } else {
            Err(self.error("expected a value"))
        }
    }

    /// JSON's number grammar, kept as written.
    fn number(&mut self) -> Result<Node<'a>, String> {
        let start = self.at;
        let digits = |p: &mut Self| {
            let from = p.at;
            while matches!(p.text.get(p.at), Some(b'0'..=b'9')) {
                p.at += 1;
            }
            p.at - from
        };
        if self.text.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        match self.text.get(self.at) {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.error("malformed number")),
        }
        if self.text.get(self.at) == Some(&b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return Err(self.error("malformed number"));
            }
        }
        if matches!(self.text.get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.text.get(self.at), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if digits(self) == 0 {
                return Err(self.error("malformed number"));
            }
        }
        Ok(Node::Raw(&self.text[start..self.at]))
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&byte) = self.text.get(self.at) else {
                return Err(self.error("unterminated string"));
            };
            self.at += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    let Some(&escape) = self.text.get(self.at) else {
                        return Err(self.error("unterminated string"));
                    };
                    self.at += 1;
                    let c = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(self.error("unknown escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => return Err(self.error("control character in string")),
                _ => out.push(byte),
            }
        }
        // Go replaces invalid UTF-8 with U+FFFD when decoding; do the same.
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .text
            .get(self.at..self.at + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| self.error("malformed \\u escape"))?;
        self.at += 4;
        Ok(digits)
    }

    /// `\uXXXX`, pairing surrogates; a lone surrogate becomes U+FFFD, as in Go.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let first = self.hex4()?;
        if (0xd800..0xdc00).contains(&first) && self.text[self.at..].starts_with(b"\\u") {
            let save = self.at;
            self.at += 2;
            let second = self.hex4()?;
            if (0xdc00..0xe000).contains(&second) {
                let c = 0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00);
                return Ok(char::from_u32(c).unwrap_or('\u{fffd}'));
            }
            self.at = save;
        }
        Ok(char::from_u32(first).unwrap_or('\u{fffd}'))
    }
}

fn write(node: &Node<'_>, out: &mut Vec<u8>) {
    match node {
        Node::Raw(raw) => out.extend_from_slice(raw),
        Node::Str(s) => write_string(s, out),
        Node::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        Node::Object(map) => {
            out.push(b'{');
            for (i, (key, value)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write(value, out);
            }
            out.push(b'}');
        }
    }
}

/// Go's `encoding/json` string encoding with HTML escaping off (Go ≥ 1.22: `\b`, `\f`).
fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\u{0}'..='\u{1f}' => out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes()),
            '\u{2028}' => out.extend_from_slice(b"\\u2028"),
            '\u{2029}' => out.extend_from_slice(b"\\u2029"),
            _ => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        String::from_utf8(canonical_json(text.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn canonical_form_matches_go() {
        for (input, want) in [
            (
                r#"{ "b": 1, "a": [true, null, "x"] }"#,
                r#"{"a":[true,null,"x"],"b":1}"#,
            ),
            // Numbers as written: OPA decodes with UseNumber.
            (
                "[1.50, 1e3, -0, 12345678901234567890]",
                "[1.50,1e3,-0,12345678901234567890]",
            ),
            // HTML characters kept; U+2028/9 and controls escaped as Go escapes them.
            (
                r#""<a&b>\u2028\u2029\u0001\b\f\/""#,
                r#""<a&b>\u2028\u2029\u0001\b\f/""#,
            ),
            (r#""é\ud83d\ude00""#, "\"é😀\""),
            (r#"{"a":1,"a":2}"#, r#"{"a":2}"#),
            // Keys sorted by bytes: "B" < "a" < "é".
            (r#"{"é":0,"a":0,"B":0}"#, r#"{"B":0,"a":0,"é":0}"#),
            ("\u{feff}{}", "{}"),
        ] {
            assert_eq!(canon(input), want, "{input}");
        }
    }

    #[test]
    fn malformed_json_is_refused() {
        for bad in [
            "{",
            "[1,]",
            "01",
            "1.",
            "\"\u{1}\"",
            "{} x",
            "nul",
            r#""\q""#,
        ] {
            assert!(canonical_json(bad.as_bytes()).is_err(), "{bad}");
        }
        let deep = "[".repeat(600) + &"]".repeat(600);
        assert!(canonical_json(deep.as_bytes()).is_err());
    }

    #[test]
    fn only_structured_documents_are_canonicalised() {
        let spaced = br#"{ "a" : 1 }"#;
        let tight = br#"{"a":1}"#;
        assert_eq!(
            digest("x/data.json", spaced, "SHA-256").unwrap(),
            digest("x/data.json", tight, "SHA-256").unwrap()
        );
        assert_ne!(
            digest("x/other.json", spaced, "SHA-256").unwrap(),
            digest("x/other.json", tight, "SHA-256").unwrap()
        );
        assert_eq!(
            digest("data.yaml", b"a: 1\n", "SHA-256").unwrap(),
            digest("data.json", tight, "SHA-256").unwrap()
        );
        assert!(digest("a.rego", b"", "MD5")
            .unwrap_err()
            .contains("not accepted"));
    }
}
