//! Problems with a policy set, each with the place it happened (`file:line:col` when there is
//! one). Owns turning regorus's multi-line error text into that shape, so every command and the
//! wrapper report errors the same way.

use std::fmt;

/// One problem: a syntax or compile error, an unreadable or unsafe file, a bad data document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// `file:line:col`, or just `file` when the problem is with the whole file.
    pub location: Option<String>,
    pub message: String,
    /// The offending source line with a caret under the column, as regorus draws it.
    pub snippet: Option<String>,
}

impl Diagnostic {
    pub fn new(location: Option<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            location,
            message: message.into(),
            snippet: None,
        }
    }

    /// A problem with a whole file.
    pub fn file(path: impl fmt::Display, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Some(path.to_string()), message)
    }

    /// Parses regorus's error text:
    ///
    /// ```text
    ///
    /// --> policies/p.rego:3:10
    ///   |
    /// 3 | allow if x == 1
    ///   |          ^
    /// error: use of undefined variable `x` is unsafe
    /// ```
    ///
    /// Errors without a `-->` line (limits, data merges) keep their text and get `file`, when
    /// given, as their location.
    pub fn from_regorus(error: &str, file: Option<&str>) -> Diagnostic {
        let lines: Vec<&str> = error.trim_matches('\n').lines().collect();
        let arrow = lines
            .iter()
            .position(|l| l.trim_start().starts_with("--> "));
        let message_at = lines.iter().rposition(|l| l.starts_with("error: "));
        match (arrow, message_at) {
            (Some(a), Some(m)) if a < m => {
                let location = lines[a].trim_start().trim_start_matches("--> ").trim();
                let mut message = lines[m].trim_start_matches("error: ").to_owned();
                // Anything after the `error:` line continues the message.
                for extra in &lines[m + 1..] {
                    message.push('\n');
                    message.push_str(extra);
                }
                // Anything before the arrow is context regorus (or anyhow) put in front.
                let before = lines[..a].join(" ");
                if !before.trim().is_empty() {
                    message = format!("{message} ({})", before.trim());
                }
                Diagnostic {
                    location: Some(location.to_owned()),
                    message,
                    snippet: Some(lines[a + 1..m].join("\n")).filter(|s| !s.trim().is_empty()),
                }
            }
            _ => Diagnostic::new(file.map(str::to_owned), error.trim().to_owned()),
        }
    }

    /// The diagnostic with the source snippet under it, for a terminal.
    pub fn render(&self) -> String {
        match &self.snippet {
            Some(snippet) => format!("{self}\n{snippet}"),
            None => self.to_string(),
        }
    }
}

impl fmt::Display for Diagnostic {
    /// `file:line:col: message` on one line (the shape editors and CI annotate).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Quotes `path` for a shell command line when it needs it, so a printed fix can be pasted.
pub fn shell_quote(path: &str) -> String {
    let plain = !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%~".contains(c));
    if plain {
        path.to_owned()
    } else {
        format!("'{}'", path.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_regorus_errors() {
        let raw = "\n--> /p/unsafe.rego:3:10\n  |\n3 | allow if x == 1\n  |          ^\nerror: use of undefined variable `x` is unsafe";
        let d = Diagnostic::from_regorus(raw, None);
        assert_eq!(d.location.as_deref(), Some("/p/unsafe.rego:3:10"));
        assert_eq!(d.message, "use of undefined variable `x` is unsafe");
        assert_eq!(
            d.to_string(),
            "/p/unsafe.rego:3:10: use of undefined variable `x` is unsafe"
        );
        assert_eq!(
            d.render(),
            "/p/unsafe.rego:3:10: use of undefined variable `x` is unsafe\n  |\n3 | allow if x == 1\n  |          ^"
        );
    }

    #[test]
    fn errors_without_a_place_keep_their_text() {
        let d =
            Diagnostic::from_regorus("value for key `a` generated multiple times", Some("d.json"));
        assert_eq!(
            d.to_string(),
            "d.json: value for key `a` generated multiple times"
        );
        let d = Diagnostic::from_regorus("oops", None);
        assert_eq!(d.render(), "oops");
    }

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(shell_quote("/a/b.rego"), "/a/b.rego");
        assert_eq!(shell_quote("/a b/c"), "'/a b/c'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
