//! Canonical paths: where a path-like argument actually leads, so a rule written against
//! `/prod/` holds for `/tmp/../prod/x`, `file:///%70rod/x`, a symlink into `/prod`, `~/…` and
//! `./x` sent to a server running in `/prod`.
//!
//! Two steps, kept apart so the first stays pure:
//! - [`lexical`] (pure): `file://` URIs are percent-decoded exactly once, `~` expands, relative
//!   paths resolve against the server's working directory (it is behavry's: the server inherits
//!   it), `.` and `..` are removed. Ambiguous spellings are refused: NUL, double encoding
//!   (`%2570`), malformed escapes, `file:` URIs naming another host or carrying `?`/`#`.
//! - [`resolve`] (reads the file system): symlinks are followed for the longest existing prefix,
//!   the way the kernel does, including a dangling last link (a write through it creates its
//!   target); the part that does not exist yet is appended as written.
//!
//! Servers differ in one place: most normalise `..` before opening (Node's `path.resolve`), the
//! kernel applies `..` after following a symlink (`/tmp/link/../x` is `<link target>/../x`). When
//! the two readings differ, both are returned and the policy engine decides each (the strictest
//! verdict wins).
//!
//! [`Resolver`] also knows behavry's own directories: a path inside one is refused whatever the
//! policies say, and writes or deletes of a directory that contains one are too.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Paths longer than this cannot be opened (Linux `PATH_MAX`); they are read lexically only,
/// which also bounds the file-system work one argument can cause.
const PATH_MAX: usize = 4096;

/// How many symlinks one path may pass through (Linux `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// How many readings one call may ask for (relative paths × the directories they are read
/// against). Each costs a few `statx`; beyond this the call is refused rather than slowed.
pub const MAX_READINGS: usize = 1024;

/// A path-like string found in a request's arguments, and where it was found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NamedPath {
    /// JSON pointer (RFC 6901) to the string inside `action.arguments`: `/edits/0/path`.
    pub pointer: String,
    /// The object key it sits under (for a string in an array, the array's key).
    pub key: Option<String>,
    /// The string as the client sent it.
    pub raw: String,
}

/// A path-like argument: as sent, and where it leads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PathArg {
    /// JSON pointer to the argument inside `action.arguments`.
    pub pointer: String,
    /// The object key it sits under.
    pub key: Option<String>,
    /// The argument as the client sent it.
    pub raw: String,
    /// Where it leads: normally one canonical path; two when the lexical and the kernel's reading
    /// of `..` disagree; the URI itself for a non-file URI. Empty when refused.
    pub canonical: Vec<String>,
    /// Why a call naming this path must be refused whatever the policies say.
    pub refused: Option<String>,
    /// Set when the path is a directory that contains one of behavry's own (a write or delete of
    /// it would reach behavry's files).
    pub contains_own: Option<String>,
}

/// The path-like strings of one call, as [`crate::policy::input::path_args`] finds them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallPaths {
    pub named: Vec<NamedPath>,
    /// Set when the call is refused before any path is read (too many paths to check).
    pub refused: Option<String>,
}

impl PathArg {
    pub fn refused(raw: String, why: String) -> PathArg {
        PathArg {
            raw,
            refused: Some(why),
            ..PathArg::default()
        }
    }
}

/// How [`lexical`] reads an argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lexical {
    /// A local path. `absolute` keeps `..` as written (the kernel's reading needs it);
    /// `normalised` has `.` and `..` removed. `dir` records a trailing `/`.
    Path {
        absolute: PathBuf,
        normalised: PathBuf,
        dir: bool,
    },
    /// A URI with a scheme other than `file`, kept as sent. `also` is the argument read as a
    /// relative path, when that reading climbs with `..` (a server that does not know the scheme
    /// would open it).
    Uri { uri: String, also: Option<PathBuf> },
}

/// Reads an argument without touching the file system. `Err` says why it is refused.
pub fn lexical(raw: &str, cwd: &Path, home: Option<&Path>) -> Result<Lexical, String> {
    if raw.contains('\0') {
        return Err("contains a NUL character".into());
    }
    if let Some(rest) = strip_prefix_ignore_case(raw, "file:") {
        let decoded = file_uri_path(rest)?;
        let dir = decoded.ends_with('/');
        let absolute = PathBuf::from(decoded);
        return Ok(Lexical::Path {
            normalised: normalise(&absolute),
            absolute,
            dir,
        });
    }
    if is_uri(raw) {
        let as_path = cwd.join(raw);
        let climbs = Path::new(raw)
            .components()
            .any(|c| matches!(c, Component::ParentDir));
        return Ok(Lexical::Uri {
            uri: raw.to_owned(),
            also: climbs.then(|| normalise(&as_path)),
        });
    }
    let path = match (raw, home) {
        ("~", Some(home)) => home.to_path_buf(),
        (_, Some(home)) if raw.starts_with("~/") => home.join(&raw[2..]),
        // `~name` is not expanded: MCP servers (Node's and Python's path helpers) take it literally.
        _ => PathBuf::from(raw),
    };
    let absolute = if path.is_absolute() {
        path
    } else {
        cwd.join(path)
    };
    Ok(Lexical::Path {
        normalised: normalise(&absolute),
        absolute,
        dir: raw.ends_with('/'),
    })
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `scheme://…` with an RFC 3986 scheme of two characters or more.
fn is_uri(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    scheme.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// The local path a `file:` URI names (`rest` follows `file:`), decoded once.
fn file_uri_path(rest: &str) -> Result<String, String> {
    let Some(rest) = rest.strip_prefix("//") else {
        return Err("is a file: URI without `//`; write file:///absolute/path".into());
    };
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !host.is_empty() && !host.eq_ignore_ascii_case("localhost") {
        return Err(format!(
            "is a file URI naming the host {host:?}; only local files (file:///path) are understood"
        ));
    }
    if path.is_empty() {
        return Err("is a file URI without a path".into());
    }
    if path.contains(['?', '#']) {
        return Err(
            "is a file URI with a query or fragment, which servers read differently; percent-encode `?` and `#` in file names"
                .into(),
        );
    }
    let decoded = percent_decode(path)?;
    if decoded.contains('\0') {
        return Err("encodes a NUL character".into());
    }
    if has_escape(&decoded) {
        return Err(
            "is percent-encoded twice (it still holds %XX after decoding); servers disagree on how often to decode"
                .into(),
        );
    }
    Ok(decoded)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn has_escape(s: &str) -> bool {
    s.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && hex(w[1]).is_some() && hex(w[2]).is_some())
}

/// Decodes `%XX` escapes once. A `%` not followed by two hex digits, or bytes that are not UTF-8
/// once decoded, are refused: each server would repair them its own way.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        match (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
            _ => {
                return Err(
                    "has a malformed percent-escape (`%` must be followed by two hex digits)"
                        .into(),
                )
            }
        }
        i += 3;
    }
    String::from_utf8(out).map_err(|_| "decodes to bytes that are not UTF-8".to_string())
}

/// Removes `.` and `..` from an absolute path without looking at the file system; `..` at the
/// root stays at the root.
pub fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Follows symlinks through the existing part of an absolute path, component by component as
/// the kernel does (`..` after a symlink climbs from its target); the rest is appended
/// lexically. Never fails: what cannot be inspected is taken as written.
pub fn resolve(path: &Path) -> PathBuf {
    if path.as_os_str().len() > PATH_MAX {
        return normalise(path);
    }
    let mut todo: VecDeque<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut out = PathBuf::from("/");
    let mut links = 0;
    let mut existing = true;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            // `out` holds no symlinks, so popping it is what the kernel does.
            out.pop();
            continue;
        }
        let next = out.join(&part);
        if !existing {
            out = next;
            continue;
        }
        let is_link = match std::fs::symlink_metadata(&next) {
            Ok(meta) => meta.file_type().is_symlink(),
            Err(_) => {
                existing = false;
                false
            }
        };
        if !is_link {
            out = next;
            continue;
        }
        links += 1;
        let target = (links <= MAX_LINKS)
            .then(|| std::fs::read_link(&next).ok())
            .flatten();
        let Some(target) = target else {
            // A loop or an unreadable link: the kernel fails here; keep what was written.
            existing = false;
            out = next;
            continue;
        };
        if target.is_absolute() {
            out = PathBuf::from("/");
        }
        for c in target.components().rev() {
            match c {
                Component::Normal(p) => todo.push_front(p.to_owned()),
                Component::ParentDir => todo.push_front("..".into()),
                _ => {}
            }
        }
    }
    out
}

/// One of behavry's own directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnDir {
    /// What it is, for the reason given to the agent: "policy directory".
    pub what: String,
    pub dir: PathBuf,
}

/// Resolves path arguments for one wrapped server.
#[derive(Debug, Clone)]
pub struct Resolver {
    cwd: PathBuf,
    home: Option<PathBuf>,
    own: Vec<OwnDir>,
}

impl Resolver {
    /// `own` directories are resolved now (they may not exist yet, or sit behind a symlink).
    pub fn new(cwd: PathBuf, home: Option<PathBuf>, own: Vec<OwnDir>) -> Resolver {
        let mut own: Vec<OwnDir> = own
            .into_iter()
            .map(|o| OwnDir {
                dir: resolve(&normalise(&cwd.join(&o.dir))),
                what: o.what,
            })
            .collect();
        // Most specific first, so a refusal names the policy directory, not the config
        // directory that holds it.
        own.sort_by_key(|o| std::cmp::Reverse(o.dir.components().count()));
        let mut merged: Vec<OwnDir> = Vec::with_capacity(own.len());
        for o in own {
            match merged.iter_mut().find(|m| m.dir == o.dir) {
                // BEHAVRY_HOME makes one directory both config and data directory.
                Some(m) if !m.what.contains(&o.what) => m.what = join_names(&m.what, &o.what),
                Some(_) => {}
                None => merged.push(o),
            }
        }
        Resolver {
            cwd,
            home,
            own: merged,
        }
    }

    /// Resolves every path a call names. A relative path is read against the working directory
    /// and against every absolute path named in the same call (`{"repo_path": "/prod/app",
    /// "files": ["config.yaml"]}` names `/prod/app/config.yaml`): which one the server means is
    /// its own business, so the policy decides them all.
    pub fn resolve_call(&self, found: &CallPaths) -> Vec<PathArg> {
        if let Some(why) = &found.refused {
            return vec![PathArg::refused(String::new(), why.clone())];
        }
        let home = self.home.as_deref();
        let mut bases: Vec<PathBuf> = Vec::new();
        for named in found.named.iter().filter(|n| !is_relative(&n.raw, home)) {
            if let Ok(Lexical::Path { absolute, .. }) = lexical(&named.raw, &self.cwd, home) {
                if absolute != self.cwd && !bases.contains(&absolute) {
                    bases.push(absolute);
                }
            }
        }
        let relative = found
            .named
            .iter()
            .filter(|n| is_relative(&n.raw, home))
            .count();
        let readings = relative * bases.len() + found.named.len();
        if readings > MAX_READINGS {
            let why = format!(
                "the call names {relative} relative paths and {} absolute ones: {readings} readings to check, more than behavry's limit of {MAX_READINGS}; split the call",
                bases.len()
            );
            return vec![PathArg::refused(String::new(), why)];
        }
        found
            .named
            .iter()
            .map(|named| {
                let bases = if is_relative(&named.raw, home) {
                    bases.as_slice()
                } else {
                    &[]
                };
                PathArg {
                    pointer: named.pointer.clone(),
                    key: named.key.clone(),
                    ..self.resolve_in(&named.raw, bases)
                }
            })
            .collect()
    }

    /// Resolves one path against the working directory.
    pub fn resolve(&self, raw: &str) -> PathArg {
        self.resolve_in(raw, &[])
    }

    /// Resolves one path against the working directory and, if it is relative, against `bases`
    /// too; every reading is checked against behavry's own directories.
    fn resolve_in(&self, raw: &str, bases: &[PathBuf]) -> PathArg {
        let mut uris: Vec<String> = Vec::new();
        let mut readings: Vec<PathBuf> = Vec::new();
        let mut dir = false;
        let add = |path: PathBuf, readings: &mut Vec<PathBuf>| {
            if !readings.contains(&path) {
                readings.push(path);
            }
        };
        for base in std::iter::once(&self.cwd).chain(bases) {
            match lexical(raw, base, self.home.as_deref()) {
                Err(why) => {
                    return PathArg::refused(
                        raw.to_owned(),
                        format!("the path {} {why}", quote(raw)),
                    )
                }
                Ok(Lexical::Uri { uri, also }) => {
                    if !uris.contains(&uri) {
                        uris.push(uri);
                    }
                    if let Some(path) = also {
                        add(resolve(&path), &mut readings);
                    }
                }
                Ok(Lexical::Path {
                    absolute,
                    normalised,
                    dir: is_dir,
                }) => {
                    dir = is_dir;
                    add(resolve(&normalised), &mut readings);
                    let climbs = absolute
                        .components()
                        .any(|c| matches!(c, Component::ParentDir));
                    if climbs {
                        // The kernel applies `..` after following symlinks.
                        add(resolve(&absolute), &mut readings);
                    }
                }
            }
        }
        let mut arg = PathArg {
            raw: raw.to_owned(),
            canonical: uris,
            ..PathArg::default()
        };
        for path in &readings {
            for own in &self.own {
                if path.starts_with(&own.dir) && arg.refused.is_none() {
                    arg.refused = Some(format!(
                        "{} is inside behavry's {} ({}); wrapped servers may not touch behavry's own files, whatever the policies say",
                        quote(raw),
                        own.what,
                        own.dir.display()
                    ));
                } else if own.dir.starts_with(path) && arg.contains_own.is_none() {
                    arg.contains_own = Some(format!(
                        "{} contains behavry's {} ({}); wrapped servers may not write or delete it, whatever the policies say",
                        quote(raw),
                        own.what,
                        own.dir.display()
                    ));
                }
            }
            let mut s = path.to_string_lossy().into_owned();
            // Keep a trailing slash: `startswith(path, "/prod/")` must match "/prod/".
            if dir && !s.ends_with('/') {
                s.push('/');
            }
            arg.canonical.push(s);
        }
        arg
    }
}

/// Whether `raw` depends on the directory it is read against: not absolute, not `~`, not a
/// `file:` URI. Non-file URIs count (their `..` reading does).
fn is_relative(raw: &str, home: Option<&Path>) -> bool {
    if strip_prefix_ignore_case(raw, "file:").is_some() {
        return false;
    }
    if home.is_some() && (raw == "~" || raw.starts_with("~/")) {
        return false;
    }
    !Path::new(raw).is_absolute()
}

/// "configuration directory" + "data directory" → "configuration and data directory".
fn join_names(a: &str, b: &str) -> String {
    match (a.strip_suffix(" directory"), b.strip_suffix(" directory")) {
        (Some(a), Some(b)) => format!("{a} and {b} directory"),
        _ => format!("{a} and {b}"),
    }
}

fn quote(raw: &str) -> String {
    let shown: String = raw.chars().take(200).collect();
    let ellipsis = if shown.len() < raw.len() { "…" } else { "" };
    format!("{:?}{ellipsis}", shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(raw: &str) -> Result<String, String> {
        match lexical(raw, Path::new("/srv/app"), Some(Path::new("/home/alice")))? {
            Lexical::Path {
                normalised, dir, ..
            } => {
                let mut s = normalised.display().to_string();
                if dir && !s.ends_with('/') {
                    s.push('/');
                }
                Ok(s)
            }
            Lexical::Uri { uri, also } => Ok(match also {
                Some(p) => format!("{uri} | {}", p.display()),
                None => uri,
            }),
        }
    }

    #[test]
    fn lexical_readings() {
        let table = [
            ("/prod/config.yaml", "/prod/config.yaml"),
            ("/tmp/../prod/x", "/prod/x"),
            ("/a/./b//c", "/a/b/c"),
            ("./x", "/srv/app/x"),
            ("x", "/srv/app/x"),
            ("../../../../etc/passwd", "/etc/passwd"),
            ("~/.ssh/id_rsa", "/home/alice/.ssh/id_rsa"),
            ("~", "/home/alice"),
            ("~bob/x", "/srv/app/~bob/x"),
            ("file:///prod/x", "/prod/x"),
            ("FILE:///prod/x", "/prod/x"),
            ("file:///%70rod/x", "/prod/x"),
            ("file:///tmp/%2e%2e/prod/x", "/prod/x"),
            ("file:///a%20b/%C3%A9", "/a b/é"),
            ("file://localhost/etc/hosts", "/etc/hosts"),
            ("file://LOCALHOST/etc/hosts", "/etc/hosts"),
            ("https://example.com/a/b", "https://example.com/a/b"),
            (
                "ab://../../prod/secret",
                "ab://../../prod/secret | /srv/prod/secret",
            ),
            ("/prod/", "/prod/"),
            ("file:///prod/", "/prod/"),
            ("bad%zz", "/srv/app/bad%zz"),
            ("%2570", "/srv/app/%2570"),
            ("notes:2024.txt", "/srv/app/notes:2024.txt"),
            ("/..", "/"),
            // One-letter schemes read as paths: a server would, too.
            ("x://../../prod/y", "/srv/prod/y"),
        ];
        for (raw, want) in table {
            assert_eq!(lex(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn ambiguous_spellings_are_refused() {
        let table = [
            ("/prod\0/x", "NUL"),
            ("file:///%2570rod/x", "twice"),
            ("file:///prod%00/x", "NUL"),
            ("file:///prod/%zz", "malformed"),
            ("file:///prod/%7", "malformed"),
            ("file:///%ff", "not UTF-8"),
            ("file://prod/x", "host"),
            ("file:/prod/x", "without `//`"),
            ("file:///prod/x?y", "query"),
            ("file:///prod/x#y", "query"),
            ("file://", "without a path"),
        ];
        for (raw, want) in table {
            let err = lex(raw).unwrap_err();
            assert!(err.contains(want), "{raw}: {err}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_followed_like_the_kernel_does() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let root = resolve(tmp.path());
        std::fs::create_dir_all(root.join("prod/sub")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        symlink(root.join("prod"), root.join("tmp/link")).unwrap();
        symlink("../prod/sub", root.join("tmp/rel")).unwrap();
        symlink(root.join("prod/new.txt"), root.join("tmp/dangling")).unwrap();
        symlink(root.join("tmp/loop"), root.join("tmp/loop")).unwrap();
        let r = |p: &str| resolve(&root.join(p));
        assert_eq!(r("tmp/link/x"), root.join("prod/x"));
        assert_eq!(r("tmp/link/sub/a/b"), root.join("prod/sub/a/b"));
        assert_eq!(r("tmp/rel/y"), root.join("prod/sub/y"));
        // The kernel applies `..` after following the link.
        assert_eq!(r("tmp/rel/../z"), root.join("prod/z"));
        // A write through a dangling link creates its target.
        assert_eq!(r("tmp/dangling"), root.join("prod/new.txt"));
        assert_eq!(r("tmp/loop/x"), root.join("tmp/loop/x"));
        assert_eq!(r("nope/../tmp"), root.join("tmp"));

        let resolver = Resolver::new(root.join("prod"), None, Vec::new());
        let arg = resolver.resolve(&format!("{}/tmp/rel/../z", root.display()));
        // Lexically it is tmp/z; the kernel opens prod/z. Both are decided.
        assert_eq!(
            arg.canonical,
            [
                root.join("tmp/z").display().to_string(),
                root.join("prod/z").display().to_string()
            ]
        );
        assert_eq!(
            resolver.resolve("./x").canonical,
            [root.join("prod/x").display().to_string()]
        );
        let dir = format!("{}/tmp/link/", root.display());
        assert_eq!(
            resolver.resolve(&dir).canonical,
            [format!("{}/", root.join("prod").display())]
        );
    }

    fn named(pointer: &str, raw: &str) -> NamedPath {
        NamedPath {
            pointer: pointer.into(),
            key: pointer.rsplit('/').next().map(str::to_owned),
            raw: raw.into(),
        }
    }

    #[test]
    fn relative_paths_are_read_against_every_directory_the_call_names() {
        let tmp = tempfile::tempdir().unwrap();
        let root = resolve(tmp.path());
        let own = vec![OwnDir {
            what: "data directory".into(),
            dir: root.join("home"),
        }];
        let resolver = Resolver::new(root.join("work"), None, own);
        let r = |p: &str| root.join(p).display().to_string();
        let call = CallPaths {
            named: vec![
                named("/repo_path", &r("prod/app")),
                named("/files/0", "config.yaml"),
                named("/files/1", "../x"),
                named("/to", "https://example.com/a"),
            ],
            refused: None,
        };
        let args = resolver.resolve_call(&call);
        assert_eq!(args[0].canonical, [r("prod/app")]);
        assert_eq!(args[0].pointer, "/repo_path");
        assert_eq!(
            args[1].canonical,
            [r("work/config.yaml"), r("prod/app/config.yaml")]
        );
        assert_eq!(args[1].key.as_deref(), Some("0"));
        assert_eq!(args[2].canonical, [r("x"), r("prod/x")]);
        assert_eq!(args[3].canonical, ["https://example.com/a"]);

        // A reading against another named directory is guarded like any other.
        let call = CallPaths {
            named: vec![named("/repo", &r("home")), named("/file", "behavry.db")],
            refused: None,
        };
        let args = resolver.resolve_call(&call);
        assert!(args[1]
            .refused
            .as_deref()
            .unwrap_or("")
            .contains("inside behavry's data directory"));

        let refused = resolver.resolve_call(&CallPaths {
            named: Vec::new(),
            refused: Some("too many".into()),
        });
        assert_eq!(refused[0].refused.as_deref(), Some("too many"));

        // Relative paths × directories are bounded.
        let mut named_paths: Vec<NamedPath> = (0..40)
            .map(|i| named(&format!("/d/{i}"), &r(&format!("d{i}"))))
            .collect();
        named_paths.extend((0..40).map(|i| named(&format!("/f/{i}"), &format!("f{i}"))));
        let args = resolver.resolve_call(&CallPaths {
            named: named_paths,
            refused: None,
        });
        let why = args[0].refused.as_deref().unwrap_or("");
        assert!(why.contains("more than behavry's limit"), "{why}");
    }

    #[test]
    fn own_directories_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = resolve(tmp.path());
        let home = root.join("behavry");
        let resolver = Resolver::new(
            root.join("work"),
            None,
            vec![
                OwnDir {
                    what: "policy directory".into(),
                    dir: home.join("policies"),
                },
                OwnDir {
                    what: "data directory".into(),
                    dir: home.clone(),
                },
            ],
        );
        let inside = resolver.resolve("../behavry/policies/../behavry.db");
        let why = inside.refused.expect("refused");
        assert!(why.contains("inside behavry's data directory"), "{why}");
        let policy = resolver.resolve(&format!("file://{}/policies/x.rego", home.display()));
        assert!(policy.refused.is_some());
        let parent = resolver.resolve(&root.display().to_string());
        assert!(parent.refused.is_none());
        assert!(parent.contains_own.is_some());
        let sibling = resolver.resolve(&format!("{}/behavry2/x", root.display()));
        assert_eq!((sibling.refused, sibling.contains_own), (None, None));
    }
}
