//! Finds and reads the files a policy set is made of: `.rego` modules and `.json` data documents
//! under each policy directory, recursively, in sorted order.
//!
//! Owns the rules about which files count — hidden files and editor leftovers (`.#x.rego`,
//! `x.rego~`, `.x.rego.swp`) never do, and `*_test.rego` files only when tests are wanted — and the
//! sudo-style refusal of files and directories that group or others can write: a policy anyone
//! else can edit is no policy at all. Reading never fails; problems are collected and make the
//! set unusable (fail closed).

use std::fs::Metadata;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::diagnostic::{shell_quote, Diagnostic};

/// Directories deeper than this are not descended into (a symlink loop ends here).
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A `.rego` module.
    Rego,
    /// A `.json` document, merged into `data`.
    Data,
}

/// One file of a policy set, as read.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub kind: Kind,
    pub text: String,
}

impl SourceFile {
    /// The name regorus and every message use for the file: its path as found.
    pub fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// `*_test.rego`: tests, run by `behavry policy test`, never enforced.
    pub fn is_test(&self) -> bool {
        is_test_file(&self.path)
    }
}

/// What to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Read `*_test.rego` files too.
    pub include_tests: bool,
    /// Refuse files and directories writable by group or others.
    pub check_permissions: bool,
}

impl Scan {
    /// What `behavry wrap` enforces (and `policy check`/`eval`/`add` validate).
    pub const ENFORCE: Scan = Scan {
        include_tests: false,
        check_permissions: true,
    };
    /// What `behavry policy test` runs: a working tree, tests included, permissions not judged.
    pub const TEST: Scan = Scan {
        include_tests: true,
        check_permissions: false,
    };
}

/// The files found under a set of policy directories, and the problems that stop them being used.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub files: Vec<SourceFile>,
    pub problems: Vec<Diagnostic>,
}

impl Sources {
    /// SHA-256 over every file's name and contents: the `policy_hash` recorded with decisions.
    pub fn hash(&self) -> String {
        let pairs: Vec<(String, &str)> = self
            .files
            .iter()
            .map(|f| (f.name(), f.text.as_str()))
            .collect();
        hash_pairs(pairs.iter().map(|(n, t)| (n.as_str(), *t)))
    }

    /// Changes whenever the set would load differently: contents, or problems (a `chmod go-w`
    /// changes no contents but turns a refused set into a usable one).
    pub fn fingerprint(&self) -> String {
        let problems: Vec<String> = self.problems.iter().map(Diagnostic::to_string).collect();
        let joined = problems.join("\n");
        hash_pairs([
            ("hash", self.hash().as_str()),
            ("problems", joined.as_str()),
        ])
    }
}

/// SHA-256 over (name, text) pairs, length-prefixed so ("ab","c") and ("a","bc") differ.
pub fn hash_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut hasher = Sha256::new();
    for (name, text) in pairs {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    hex(&hasher.finalize())
}

/// SHA-256 of one file's contents, as `behavry policy list` shows it.
pub fn sha256(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads every policy file under `dirs`. A directory that does not exist holds no policies.
pub fn scan(dirs: &[PathBuf], opts: Scan) -> Sources {
    let mut found = Vec::new();
    let mut sources = Sources::default();
    for dir in dirs {
        walk(dir, 0, opts, &mut found, &mut sources.problems);
    }
    found.sort();
    found.dedup();
    for (path, kind) in found {
        match read(&path, opts) {
            Ok(text) => sources.files.push(SourceFile { path, kind, text }),
            Err(problem) => sources.problems.push(problem),
        }
    }
    sources
}

/// Whether a file name is one a policy set is made of (and of which kind).
pub fn kind_of(path: &Path, include_tests: bool) -> Option<Kind> {
    let name = path.file_name()?.to_str()?;
    // Hidden files are editors' swap files, lock files (`.#x.rego`, a dangling symlink) and
    // `behavry policy add`'s temporary file: never policy.
    if name.starts_with('.') {
        return None;
    }
    if name.ends_with(".rego") {
        (include_tests || !is_test_file(path)).then_some(Kind::Rego)
    } else if name.ends_with(".json") {
        Some(Kind::Data)
    } else {
        None
    }
}

fn is_test_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with("_test.rego"))
}

fn walk(
    dir: &Path,
    depth: usize,
    opts: Scan,
    found: &mut Vec<(PathBuf, Kind)>,
    problems: &mut Vec<Diagnostic>,
) {
    let shown = dir.display();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && depth == 0 => return,
        Err(e) => return problems.push(Diagnostic::file(shown, format!("cannot read: {e}"))),
    };
    if opts.check_permissions {
        if let Some(problem) = std::fs::metadata(dir)
            .ok()
            .and_then(|m| unsafe_mode(dir, &m, "directory"))
        {
            problems.push(problem);
        }
    }
    if depth >= MAX_DEPTH {
        return problems.push(Diagnostic::file(
            shown,
            format!("nested more than {MAX_DEPTH} directories deep (a symlink loop?); not read"),
        ));
    }
    for entry in entries {
        let path = match entry {
            Ok(entry) => entry.path(),
            Err(e) => return problems.push(Diagnostic::file(shown, format!("cannot list: {e}"))),
        };
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        // Follows symlinks: a linked policy directory or file is as good as a real one.
        if path.is_dir() {
            if !hidden {
                walk(&path, depth + 1, opts, found, problems);
            }
        } else if let Some(kind) = kind_of(&path, opts.include_tests) {
            found.push((path, kind));
        }
    }
}

fn read(path: &Path, opts: Scan) -> Result<String, Diagnostic> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| Diagnostic::file(&shown, format!("cannot read: {e}")))?;
    // A FIFO or device named *.rego would block the reader forever.
    if !meta.is_file() {
        return Err(Diagnostic::file(&shown, "not a regular file; not read"));
    }
    if opts.check_permissions {
        if let Some(problem) = unsafe_mode(path, &meta, "file") {
            return Err(problem);
        }
    }
    std::fs::read_to_string(path).map_err(|e| Diagnostic::file(&shown, format!("cannot read: {e}")))
}

/// The refusal for a file or directory that group or others may write, naming the fix.
fn unsafe_mode(path: &Path, meta: &Metadata, what: &str) -> Option<Diagnostic> {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 == 0 {
        return None;
    }
    let shown = path.display().to_string();
    Some(Diagnostic::file(
        &shown,
        format!(
            "{what} is writable by {} (mode {mode:04o}); behavry refuses policies that other users can change. \
             Fix: chmod go-w {}",
            match (mode & 0o020 != 0, mode & 0o002 != 0) {
                (true, true) => "group and others",
                (true, false) => "its group",
                _ => "others",
            },
            shell_quote(&shown)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn finds_policy_and_data_files_recursively_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        write(&root.join("b.rego"), "b", 0o644);
        write(&root.join("sub/a.rego"), "a", 0o644);
        write(&root.join("sub/a_test.rego"), "t", 0o644);
        write(&root.join("data.json"), "{}", 0o600);
        write(&root.join(".#b.rego"), "lock", 0o644);
        write(&root.join("b.rego~"), "backup", 0o644);
        write(&root.join(".hidden/c.rego"), "c", 0o644);
        write(&root.join("notes.txt"), "n", 0o644);

        let s = scan(std::slice::from_ref(&root), Scan::ENFORCE);
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        let names: Vec<_> = s
            .files
            .iter()
            .map(|f| f.path.strip_prefix(&root).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["b.rego", "data.json", "sub/a.rego"]);
        assert_eq!(s.files[1].kind, Kind::Data);

        let t = scan(std::slice::from_ref(&root), Scan::TEST);
        assert_eq!(t.files.len(), 4);
        assert!(t.files.iter().any(SourceFile::is_test));
    }

    #[test]
    fn refuses_what_others_can_write() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("policies");
        write(&root.join("ok.rego"), "x", 0o644);
        write(&root.join("bad.rego"), "x", 0o664);
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o757)).unwrap();
        let s = scan(std::slice::from_ref(&root), Scan::ENFORCE);
        let problems: Vec<String> = s.problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().any(
            |p| p.contains("directory is writable by others (mode 0757)")
                && p.ends_with(&format!("chmod go-w {}", root.display()))
        ));
        let bad = root.join("bad.rego");
        assert!(problems.iter().any(|p| p
            .starts_with(&format!("{}: file is writable by its group", bad.display()))
            && p.ends_with(&format!("chmod go-w {}", bad.display()))));
        assert_eq!(s.files.len(), 1, "the refused file is not read");

        // Tests run on a working tree, whatever its umask.
        assert!(scan(std::slice::from_ref(&root), Scan::TEST)
            .problems
            .is_empty());
    }

    #[test]
    fn missing_dirs_are_empty_and_fifos_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = scan(&[dir.path().join("nope")], Scan::ENFORCE);
        assert!(s.files.is_empty() && s.problems.is_empty());

        let fifo = dir.path().join("p.rego");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let s = scan(&[dir.path().to_path_buf()], Scan::ENFORCE);
        assert!(s.problems[0].message.contains("not a regular file"));
    }

    #[test]
    fn fingerprint_sees_permission_fixes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        write(&root.join("p.rego"), "x", 0o666);
        let before = scan(std::slice::from_ref(&root), Scan::ENFORCE);
        std::fs::set_permissions(root.join("p.rego"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let after = scan(std::slice::from_ref(&root), Scan::ENFORCE);
        assert_ne!(before.fingerprint(), after.fingerprint());
        assert_eq!(
            after.fingerprint(),
            scan(&[root], Scan::ENFORCE).fingerprint()
        );
    }
}
