//! Text for a person's terminal: client-controlled strings made inert, and fitted to a width.
//!
//! Tool names, paths, arguments, `clientInfo.name` and the policy reasons built from them come
//! from the agent's side. Written raw, an escape sequence in them can set the window title, move
//! the cursor and repaint what the approver is about to approve, and a bidi override can make
//! `/prod/db` read as something else. Every human-facing output (the approver, `log`'s table,
//! `approve --list`, stderr notes, `policy eval` text) passes such text through [`escape`] first:
//! C0 and C1 controls, DEL, line/paragraph separators and format characters (Unicode general
//! category Cf: bidi controls, zero-width characters, the BOM, …) are shown as visible escapes
//! (`\u{1b}`), so what is on screen is exactly what is stored. Widths are measured after escaping.
//!
//! Machine outputs (`--json`, CSV, the database) keep the exact text; only people get this view.

use std::borrow::Cow;

use ratatui::text::Span;

/// Whether `c` must not reach a terminal as itself.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() // C0, DEL, C1 (includes \t, \n, \r, BS, ESC, the 8-bit CSI U+009B)
        || matches!(c, '\u{2028}' | '\u{2029}') // line and paragraph separators
        || is_format(c)
}

/// Unicode general category Cf (format characters), Unicode 15.1. Invisible, or reorder the text
/// around them (U+202E, U+2066–U+2069), so a person cannot see what they do.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{0600}'..='\u{0605}'
        | '\u{061C}'
        | '\u{06DD}'
        | '\u{070F}'
        | '\u{0890}'..='\u{0891}'
        | '\u{08E2}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}'
        | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}'
        | '\u{E0020}'..='\u{E007F}'
    )
}

/// `s` with every [unsafe](is_unsafe) character written as `\u{…}` (lower-case hex). Borrowed when
/// nothing needed escaping, which is nearly always.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Columns `s` takes on a terminal (`s` already escaped).
pub fn width(s: &str) -> usize {
    Span::raw(s).width()
}

fn char_width(c: char) -> usize {
    let mut buf = [0; 4];
    width(c.encode_utf8(&mut buf))
}

/// Escapes `s` and fits it in `max` columns by cutting its middle (`/home/al…/db/prod.sqlite`):
/// both ends of a path say the most. Never shorter than it needs to be.
pub fn elide_middle(s: &str, max: usize) -> String {
    let s = escape(s);
    if width(&s) <= max {
        return s.into_owned();
    }
    if max == 0 {
        return String::new();
    }
    let budget = max - 1; // the ellipsis
    let tail_budget = budget / 2 + budget % 2; // the end (file name) gets the odd column
    let head_budget = budget - tail_budget;
    let chars: Vec<char> = s.chars().collect();
    let mut head = String::new();
    let mut used = 0;
    for &c in &chars {
        let w = char_width(c);
        if used + w > head_budget {
            break;
        }
        used += w;
        head.push(c);
    }
    let mut tail = Vec::new();
    let mut used = 0;
    for &c in chars.iter().rev() {
        let w = char_width(c);
        if used + w > tail_budget {
            break;
        }
        used += w;
        tail.push(c);
    }
    head.push('…');
    head.extend(tail.into_iter().rev());
    head
}

/// Escapes `s` and fits it in `max` columns keeping its end (`…/file.txt`).
pub fn elide_start(s: &str, max: usize) -> String {
    let s = escape(s);
    if width(&s) <= max {
        return s.into_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut tail = Vec::new();
    let mut used = 1;
    for c in s.chars().rev() {
        let w = char_width(c);
        if used + w > max {
            break;
        }
        used += w;
        tail.push(c);
    }
    std::iter::once('…').chain(tail.into_iter().rev()).collect()
}

/// Escapes `s` and fits it in `max` columns keeping its start (`writes need a…`).
pub fn elide_end(s: &str, max: usize) -> String {
    let s = escape(s);
    if width(&s) <= max {
        return s.into_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut head = String::new();
    let mut used = 1;
    for c in s.chars() {
        let w = char_width(c);
        if used + w > max {
            break;
        }
        used += w;
        head.push(c);
    }
    head.push('…');
    head
}

/// `s` (already escaped) padded with spaces to `columns` wide; `format!("{:<n}")` counts chars,
/// which misaligns wide characters.
pub fn pad(s: &str, columns: usize) -> String {
    let fill = columns.saturating_sub(width(s));
    format!("{s}{}", " ".repeat(fill))
}

/// Escapes `s` and cuts it into lines of at most `max` columns (at least one line, even for "").
pub fn wrap(s: &str, max: usize) -> Vec<String> {
    let s = escape(s);
    let max = max.max(1);
    let mut lines = vec![String::new()];
    let mut used = 0;
    for c in s.chars() {
        let w = char_width(c);
        if used + w > max && used > 0 {
            lines.push(String::new());
            used = 0;
        }
        used += w;
        if let Some(line) = lines.last_mut() {
            line.push(c);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_drive_a_terminal() {
        let cases = [
            ("plain /tmp/a.txt", "plain /tmp/a.txt"),
            ("\u{1b}]0;pwn\u{7}", "\\u{1b}]0;pwn\\u{7}"),
            ("\u{1b}[1G\u{1b}[2K", "\\u{1b}[1G\\u{1b}[2K"),
            ("a\rb\u{8}c\nd\te", "a\\u{d}b\\u{8}c\\u{a}d\\u{9}e"),
            ("del\u{7f}", "del\\u{7f}"),
            ("c1 csi \u{9b}31m", "c1 csi \\u{9b}31m"),
            ("/tmp/\u{202e}bd.gol", "/tmp/\\u{202e}bd.gol"),
            ("\u{2066}isolate\u{2069}", "\\u{2066}isolate\\u{2069}"),
            (
                "zero\u{200b}width\u{200d}joiner",
                "zero\\u{200b}width\\u{200d}joiner",
            ),
            ("\u{feff}bom", "\\u{feff}bom"),
            ("soft\u{ad}hyphen", "soft\\u{ad}hyphen"),
            ("tag\u{e0041}", "tag\\u{e0041}"),
            ("line\u{2028}sep", "line\\u{2028}sep"),
            // Visible text, including wide and combining characters, stays as it is.
            ("日本語/é/🙂", "日本語/é/🙂"),
        ];
        for (input, want) in cases {
            assert_eq!(escape(input), want, "{input:?}");
            assert!(!escape(input).chars().any(is_unsafe), "{input:?}");
        }
        assert!(matches!(escape("clean"), Cow::Borrowed(_)));
    }

    #[test]
    fn widths_are_counted_after_escaping() {
        assert_eq!(width(&escape("\u{1b}")), 6);
        assert_eq!(width("日本"), 4);
        assert_eq!(pad("日本", 6), "日本  ");
        assert_eq!(pad("toolong", 3), "toolong");
    }

    #[test]
    fn middle_elision_keeps_both_ends() {
        let path = "/home/alice/projects/service/db/prod.sqlite";
        assert_eq!(elide_middle(path, 80), path);
        let cut = elide_middle(path, 20);
        assert_eq!(width(&cut), 20);
        assert_eq!(cut, "/home/ali…rod.sqlite");
        // The escape itself is elided like any text, never written raw.
        let cut = elide_middle("\u{1b}[2K/prod/db", 12);
        assert_eq!(width(&cut), 12);
        assert!(!cut.contains('\u{1b}'));
        // Wide characters that do not fit whole leave a column unused rather than overflow.
        assert_eq!(elide_middle("日本語日本語日本語", 7), "日…語");
        assert_eq!(elide_middle("abc", 0), "");
    }

    #[test]
    fn start_elision_keeps_the_end() {
        assert_eq!(elide_start("abc", 5), "abc");
        assert_eq!(elide_start("/very/long/path/file.txt", 10), "…/file.txt");
        assert_eq!(elide_start("x\u{1b}", 5), "…{1b}");
    }

    #[test]
    fn end_elision_keeps_the_start() {
        assert_eq!(elide_end("abc", 3), "abc");
        assert_eq!(elide_end("writes need a person", 10), "writes ne…");
        assert_eq!(elide_end("\u{1b}x", 4), "\\u{…");
    }

    #[test]
    fn wraps_by_columns() {
        assert_eq!(wrap("", 4), [""]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("日本語", 4), ["日本", "語"]);
        assert_eq!(wrap("a\u{1b}", 4), ["a\\u{", "1b}"]);
        // A long line never escapes the width it is given.
        let long = "x".repeat(10_000);
        assert!(wrap(&long, 80).iter().all(|l| width(l) <= 80));
    }
}
