//! OPA bundles: reading one (in memory), checking its signature, building one.
//!
//! A bundle is the `.tar.gz` `opa build -b` writes: `.rego` modules, `data.json`/`data.yaml`
//! documents placed at `data.<their directory>`, a `.manifest` (`revision`, `roots`,
//! `rego_version`, `metadata`) and, when signed, a `.signatures.json` holding one JWS over the
//! hash of every file. [`load`] turns the packed bytes into a [`Bundle`] or says, naming the
//! file, why not; [`build`] writes one. Fetching and activating bundles live elsewhere: this
//! module never touches the network, the disk (but for key files) or the policy in force.
//!
//! OPA's source (`v1/bundle/bundle.go`, `verify.go`, `hash.go`) is the reference; where behavry
//! is stricter it says so: links, devices, duplicate names, Wasm and delta bundles are refused,
//! and Rego v0 too (behavry evaluates Rego v1 only).

mod archive;
pub mod build;
mod hash;
mod sign;

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use archive::{Entry, Limits};
pub use hash::canonical_json;
pub use sign::{parse_algorithm, Keys, PrivateKey};

use crate::team::BundleConfig;

/// The manifest file, at the archive's root.
pub const MANIFEST: &str = ".manifest";
/// The signatures file, at the archive's root.
pub const SIGNATURES: &str = ".signatures.json";

/// A bundle read, verified and checked against its roots.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// The `[bundles.NAME]` it was loaded as.
    pub name: String,
    pub manifest: Manifest,
    /// Every `.rego` file, tests included (see [`Module::is_test`]), in archive order.
    pub modules: Vec<Module>,
    /// Every data document, placed as OPA places them: a `data.json` in `a/b/` at `data.a.b`.
    pub data: Value,
    /// SHA-256 (hex) of the packed archive.
    pub sha256: String,
    /// The key id the signature was verified with; `None` for an unsigned bundle.
    pub signer: Option<String>,
    /// Every file in the archive, with its size, in archive order.
    pub files: Vec<(String, u64)>,
}

/// `.manifest`. A bundle without one has revision `""` and roots `[""]` (everything).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Manifest {
    pub revision: String,
    /// Normalised: no leading or trailing `/`. `""` is the whole of `data`.
    pub roots: Vec<String>,
    pub metadata: Option<Value>,
    pub rego_version: Option<i64>,
    pub file_rego_versions: BTreeMap<String, i64>,
}

/// One `.rego` file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Its name in the archive, without the leading `/`.
    pub name: String,
    pub text: String,
    /// Its package as a slash path under `data` (`package team.authz` → `team/authz`), the form
    /// roots are written in.
    pub package: String,
}

impl Module {
    /// `*_test.rego`: tests, run by `behavry bundle verify`, never enforced.
    pub fn is_test(&self) -> bool {
        self.name.ends_with("_test.rego")
    }
}

/// Why a bundle was refused. The message names the file and says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleError {
    pub kind: ErrorKind,
    /// The file inside the archive the problem is in, when there is one.
    pub file: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not a readable archive, or an entry that could escape (`..`, links, devices, duplicates).
    Archive,
    /// Over `max_bytes`, `max_unpacked_bytes` or `max_entries`.
    Limit,
    /// Unsigned where a signature is required, or a signature that does not hold.
    Signature,
    /// `.manifest` unreadable or asking for what behavry does not do (Rego v0, Wasm).
    Manifest,
    /// A module or data document outside the manifest's roots.
    Roots,
    /// A `.rego` file that does not parse.
    Rego,
    /// A data document that does not parse or does not merge.
    Data,
    /// A `[keys.ID]` that cannot be read or used.
    Key,
    /// Two bundles whose roots overlap.
    Overlap,
}

impl BundleError {
    pub fn new(kind: ErrorKind, file: Option<String>, message: impl Into<String>) -> BundleError {
        BundleError {
            kind,
            file,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for BundleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The file name and the message may quote the archive's bytes: shown inert.
        let message = crate::display::escape(&self.message);
        match &self.file {
            Some(file) => write!(f, "{}: {message}", crate::display::escape(file)),
            None => f.write_str(&message),
        }
    }
}

impl std::error::Error for BundleError {}

/// Reads `packed` as the bundle `name` configured by `cfg`: unpacks it within `cfg`'s limits,
/// checks its signature against `keys` when `cfg.signing` is set (and refuses a signed bundle
/// when it is not, as OPA does), then its manifest, modules and data against its roots.
pub fn load(
    packed: &[u8],
    name: &str,
    cfg: &BundleConfig,
    keys: &Keys,
) -> Result<Bundle, BundleError> {
    let sha256 = hex(&Sha256::digest(packed));
    let entries = archive::read(packed, Limits::of(cfg))?;
    let (signatures, entries): (Vec<Entry>, Vec<Entry>) =
        entries.into_iter().partition(|e| e.name == SIGNATURES);
    if let Some(stray) = entries.iter().find(|e| e.name.ends_with("signatures.json")) {
        return Err(BundleError::new(
            ErrorKind::Signature,
            Some(stray.name.clone()),
            "OPA reads any file ending in `signatures.json` as the bundle's signatures; only `/.signatures.json` at the root is accepted",
        ));
    }
    let signer = match (&cfg.signing, signatures.first()) {
        (Some(signing), None) => {
            return Err(BundleError::new(
                ErrorKind::Signature,
                None,
                format!(
                    "the bundle is not signed (no /.signatures.json), but [bundles.{name}] requires a signature by key `{}`; sign it with `behavry bundle build --signing-key` or `opa sign`",
                    signing.keyid
                ),
            ))
        }
        (None, Some(_)) => {
            return Err(BundleError::new(
                ErrorKind::Signature,
                Some(SIGNATURES.into()),
                format!(
                    "the bundle is signed, but no key is configured to check it (OPA refuses this too): set signing = {{ keyid = \"…\" }} in [bundles.{name}] with a [keys.…] entry, or pass `bundle verify --key`"
                ),
            ))
        }
        (None, None) => None,
        (Some(signing), Some(sig)) => {
            let verified = sign::verify(
                &sig.bytes,
                Some(signing.keyid.as_str()),
                signing.scope.as_deref(),
                keys,
            )?;
            sign::check_files(&entries, verified.files)?;
            Some(verified.keyid)
        }
    };
    let mut bundle = read_contents(name, &entries)?;
    bundle.sha256 = sha256;
    bundle.signer = signer;
    bundle.files = signatures
        .iter()
        .chain(entries.iter())
        .map(|e| (e.name.clone(), e.bytes.len() as u64))
        .collect();
    Ok(bundle)
}

/// The manifest, modules and data of already verified entries, checked against the roots.
fn read_contents(name: &str, entries: &[Entry]) -> Result<Bundle, BundleError> {
    let mut manifest = Manifest {
        roots: vec![String::new()],
        ..Manifest::default()
    };
    let mut modules = Vec::new();
    let mut data = Value::Object(Map::new());
    for entry in entries {
        let base = entry.name.rsplit('/').next().unwrap_or(&entry.name);
        let file = || Some(entry.name.clone());
        match base {
            _ if entry.name == MANIFEST => manifest = parse_manifest(&entry.bytes)?,
            _ if base.ends_with(".manifest") => {
                return Err(BundleError::new(
                    ErrorKind::Manifest,
                    file(),
                    "a manifest must be `/.manifest` at the bundle's root; OPA would read this one as the manifest too",
                ))
            }
            "policy.wasm" | "plan.json" => {
                return Err(BundleError::new(
                    ErrorKind::Manifest,
                    file(),
                    "Wasm and plan bundles are not evaluated by behavry, which runs Rego source; build the bundle without `-t wasm`/`-t plan`",
                ))
            }
            "patch.json" => {
                return Err(BundleError::new(
                    ErrorKind::Manifest,
                    file(),
                    "delta bundles (patch.json) are not supported; publish a snapshot bundle",
                ))
            }
            "data.json" | "data.yaml" | "data.yml" => {
                let value = parse_data(&entry.name, &entry.bytes)?;
                insert_data(&mut data, &entry.name, value)?;
            }
            _ if base.ends_with(".rego") => {
                let text = String::from_utf8(entry.bytes.clone()).map_err(|_| {
                    BundleError::new(ErrorKind::Rego, file(), "not UTF-8 text")
                })?;
                let package = package_of(&entry.name, &text)?;
                modules.push(Module {
                    name: entry.name.clone(),
                    text,
                    package,
                });
            }
            // OPA ignores every other file (a README, a .gitignore): so does behavry. A signed
            // bundle still lists them, so they were checked above.
            _ => {}
        }
    }
    check_rego_version(&manifest)?;
    check_roots(&manifest, &modules, &data)?;
    Ok(Bundle {
        name: name.to_string(),
        manifest,
        modules,
        data,
        sha256: String::new(),
        signer: None,
        files: Vec::new(),
    })
}

fn parse_manifest(bytes: &[u8]) -> Result<Manifest, BundleError> {
    let bad = |why: String| BundleError::new(ErrorKind::Manifest, Some(MANIFEST.into()), why);
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(bad("must be a JSON object".into()));
    };
    let mut manifest = Manifest {
        roots: vec![String::new()],
        ..Manifest::default()
    };
    for (key, value) in fields {
        match (key.as_str(), value) {
            // The revision is printed and recorded with every decision: nothing in it may act on
            // a terminal.
            ("revision", Value::String(s)) if s.chars().any(crate::display::is_unsafe) => {
                return Err(bad(
                    "`revision` has a control or invisible formatting character".into(),
                ))
            }
            ("revision", Value::String(s)) => manifest.revision = s,
            ("revision", Value::Null) => {}
            ("revision", _) => return Err(bad("`revision` must be a string".into())),
            ("roots", Value::Array(roots)) => {
                manifest.roots = roots
                    .into_iter()
                    .map(|r| match r {
                        Value::String(s) if s.chars().any(crate::display::is_unsafe) => Err(bad(
                            "a root has a control or invisible formatting character".into(),
                        )),
                        Value::String(s) => Ok(s.trim_matches('/').to_string()),
                        _ => Err(bad("`roots` must be a list of strings".into())),
                    })
                    .collect::<Result<_, _>>()?;
            }
            ("roots", Value::Null) => {}
            ("roots", _) => return Err(bad("`roots` must be a list of strings".into())),
            ("rego_version", Value::Null) => {}
            ("rego_version", v) => {
                manifest.rego_version = Some(
                    v.as_i64()
                        .ok_or_else(|| bad("`rego_version` must be 0 or 1".into()))?,
                )
            }
            ("file_rego_versions", Value::Object(map)) => {
                for (pattern, v) in map {
                    let v = v.as_i64().ok_or_else(|| {
                        bad(format!("`file_rego_versions` \"{pattern}\" must be 0 or 1"))
                    })?;
                    manifest.file_rego_versions.insert(pattern, v);
                }
            }
            ("file_rego_versions", Value::Null) => {}
            ("file_rego_versions", _) => {
                return Err(bad("`file_rego_versions` must be an object".into()))
            }
            ("metadata", Value::Null) => {}
            ("metadata", v @ Value::Object(_)) => manifest.metadata = Some(v),
            ("metadata", _) => return Err(bad("`metadata` must be an object".into())),
            ("wasm", Value::Array(w)) if w.is_empty() => {}
            ("wasm", _) => {
                return Err(bad(
                    "names Wasm modules; behavry evaluates Rego source only, so build the bundle without `-t wasm`".into(),
                ))
            }
            // OPA ignores fields it does not know; so does behavry.
            _ => {}
        }
    }
    for i in 0..manifest.roots.len() {
        for j in i + 1..manifest.roots.len() {
            if roots_overlap(&manifest.roots[i], &manifest.roots[j]) {
                return Err(bad(format!(
                    "roots \"{}\" and \"{}\" overlap",
                    manifest.roots[i], manifest.roots[j]
                )));
            }
        }
    }
    Ok(manifest)
}

/// behavry parses Rego v1 only: a bundle that asks for v0 would be read differently than its
/// author meant, so it is refused rather than misread.
fn check_rego_version(manifest: &Manifest) -> Result<(), BundleError> {
    let bad = |why: String| BundleError::new(ErrorKind::Manifest, Some(MANIFEST.into()), why);
    const WHY: &str = "behavry evaluates Rego v1 only; port the policies to v1 (`opa fmt --v1-compatible`) and build the bundle without `--v0-compatible`";
    match manifest.rego_version {
        None | Some(1) => {}
        Some(0) => return Err(bad(format!("`rego_version: 0` asks for Rego v0: {WHY}"))),
        Some(n) => {
            return Err(bad(format!(
                "unknown `rego_version: {n}` (OPA knows 0 and 1)"
            )))
        }
    }
    for (pattern, v) in &manifest.file_rego_versions {
        match v {
            1 => {}
            0 => {
                return Err(bad(format!(
                    "`file_rego_versions` marks \"{pattern}\" as Rego v0: {WHY}"
                )))
            }
            n => {
                return Err(bad(format!(
                    "unknown rego version {n} for \"{pattern}\" in `file_rego_versions` (OPA knows 0 and 1)"
                )))
            }
        }
    }
    Ok(())
}

fn parse_data(name: &str, bytes: &[u8]) -> Result<Value, BundleError> {
    let bad = |why: String| BundleError::new(ErrorKind::Data, Some(name.to_string()), why);
    if name.ends_with(".json") {
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))
    } else {
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
        yaml_serde::from_str(text).map_err(|e| bad(format!("not valid YAML: {e}")))
    }
}

/// Merges one document into `data` at its directory's path, as OPA's `insertValue` does: objects
/// merge key by key; the same key holding anything else in two documents is a conflict.
fn insert_data(data: &mut Value, name: &str, value: Value) -> Result<(), BundleError> {
    let bad = |why: String| BundleError::new(ErrorKind::Data, Some(name.to_string()), why);
    let dir: Vec<&str> = name.split('/').collect();
    let dir = &dir[..dir.len().saturating_sub(1)];
    if dir.is_empty() && !value.is_object() {
        return Err(bad(
            "a data document at the root must be an object (its keys become `data.<key>`)".into(),
        ));
    }
    let mut tree = value;
    for segment in dir.iter().rev() {
        let mut map = Map::new();
        map.insert((*segment).to_string(), tree);
        tree = Value::Object(map);
    }
    merge(data, tree, &mut Vec::new()).map_err(|at| {
        bad(format!(
            "conflicts with another data document at `data.{}`",
            at.join(".")
        ))
    })
}

fn merge(into: &mut Value, from: Value, at: &mut Vec<String>) -> Result<(), Vec<String>> {
    let (Value::Object(into), Value::Object(from)) = (into, from) else {
        return Err(at.clone());
    };
    for (key, value) in from {
        at.push(key.clone());
        match into.get_mut(&key) {
            Some(existing) => merge(existing, value, at)?,
            None => {
                into.insert(key, value);
            }
        }
        at.pop();
    }
    Ok(())
}

/// The package a module declares, as a slash path; the module must parse as Rego v1. The parser
/// reads it, as the engine will: `package a["b"]`, a tab or a line break all name `a/b`.
pub fn package_of(name: &str, text: &str) -> Result<String, BundleError> {
    let mut engine = regorus::Engine::new();
    let package = engine
        .add_policy(name.to_string(), text.to_string())
        .map_err(|e| BundleError::new(ErrorKind::Rego, Some(name.to_string()), format!("{e}")))?;
    let path = package.strip_prefix("data.").unwrap_or(&package);
    Ok(path.replace('.', "/"))
}

/// Every module's package and every data path must lie under a root (OPA's
/// `validateAndInjectDefaults`).
fn check_roots(manifest: &Manifest, modules: &[Module], data: &Value) -> Result<(), BundleError> {
    let roots = &manifest.roots;
    for module in modules {
        if !root_covers(roots, &module.package) {
            return Err(BundleError::new(
                ErrorKind::Roots,
                Some(module.name.clone()),
                format!(
                    "package `{}` is outside the manifest's roots {roots:?}; add its path to `roots` in .manifest or move the package",
                    module.package.replace('/', ".")
                ),
            ));
        }
    }
    check_data_roots(roots, data, &mut Vec::new())
}

fn check_data_roots(
    roots: &[String],
    node: &Value,
    at: &mut Vec<String>,
) -> Result<(), BundleError> {
    let path = at.join("/");
    if root_covers(roots, &path) {
        return Ok(());
    }
    // An ancestor of a root: its children may still lead under one.
    let leads_to_root = roots.iter().any(|r| root_contains(&path, r));
    match node {
        Value::Object(map) if leads_to_root || at.is_empty() => {
            for (key, child) in map {
                at.push(key.clone());
                check_data_roots(roots, child, at)?;
                at.pop();
            }
            Ok(())
        }
        _ => Err(BundleError::new(
            ErrorKind::Roots,
            None,
            format!(
                "data at `data.{}` is outside the manifest's roots {roots:?}; add it to `roots` in .manifest or move the data.json/data.yaml that holds it",
                at.join(".")
            ),
        )),
    }
}

/// Whether `path` (a slash path under `data`: a package `team/authz` or a data key `team/limits`)
/// lies under one of `roots`. Root `""` covers everything. For `local = "merge"`.
pub fn root_covers(roots: &[String], path: &str) -> bool {
    let path = path.trim_matches('/');
    roots
        .iter()
        .any(|r| root_contains(r.trim_matches('/'), path))
}

/// OPA's `rootContains`: `root` is `other` or one of its ancestors, segment by segment.
fn root_contains(root: &str, other: &str) -> bool {
    if root.is_empty() {
        return true;
    }
    let (root, other): (Vec<&str>, Vec<&str>) =
        (root.split('/').collect(), other.split('/').collect());
    root.len() <= other.len() && root.iter().zip(&other).all(|(a, b)| a == b)
}

fn roots_overlap(a: &str, b: &str) -> bool {
    root_contains(a, b) || root_contains(b, a)
}

/// Refuses bundles whose roots overlap: each part of `data` has one owner, as in OPA.
pub fn check_disjoint(bundles: &[&Bundle]) -> Result<(), BundleError> {
    for (i, a) in bundles.iter().enumerate() {
        for b in &bundles[i + 1..] {
            for ra in &a.manifest.roots {
                for rb in &b.manifest.roots {
                    if roots_overlap(ra, rb) {
                        return Err(BundleError::new(
                            ErrorKind::Overlap,
                            None,
                            format!(
                                "bundles `{}` (root \"{ra}\") and `{}` (root \"{rb}\") overlap; give each bundle its own `roots` in its .manifest",
                                a.name, b.name
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::team::Signing;

    fn config() -> BundleConfig {
        serde_json::from_value(json!({"url": "https://example.com/b.tar.gz"})).unwrap()
    }

    fn packed(files: &[(&str, &str)]) -> Vec<u8> {
        let files: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|(n, t)| (n.to_string(), t.as_bytes().to_vec()))
            .collect();
        build::pack(&files).unwrap()
    }

    fn load_files(files: &[(&str, &str)]) -> Result<Bundle, BundleError> {
        load(&packed(files), "org", &config(), &Keys::default())
    }

    fn refusal(files: &[(&str, &str)]) -> String {
        load_files(files).unwrap_err().to_string()
    }

    #[test]
    fn places_data_as_opa_does_and_defaults_the_manifest() {
        let b = load_files(&[
            ("data.json", r#"{"top": 1}"#),
            ("a/b/data.json", r#"{"x": [1]}"#),
            ("a/data.yaml", "y: two\n"),
            ("a/p.rego", "package a.p\nallow := true\n"),
            ("README.md", "ignored, as OPA ignores it"),
            ("other.json", "not data: OPA reads only data.json"),
        ])
        .unwrap();
        assert_eq!(
            b.data,
            json!({"top": 1, "a": {"b": {"x": [1]}, "y": "two"}})
        );
        assert_eq!(b.manifest.revision, "");
        assert_eq!(b.manifest.roots, [""]);
        assert_eq!(b.modules[0].package, "a/p");
        assert_eq!(b.signer, None);
        assert_eq!(b.files.len(), 6);
        assert_eq!(b.sha256.len(), 64);
    }

    #[test]
    fn data_documents_that_collide_are_refused() {
        let e = refusal(&[
            ("data.json", r#"{"a": {"b": 1}}"#),
            ("a/data.json", r#"{"b": 2}"#),
        ]);
        assert_eq!(
            e,
            "a/data.json: conflicts with another data document at `data.a.b`"
        );
        assert!(refusal(&[("data.json", "[1]")])
            .contains("data.json: a data document at the root must be an object"));
        assert!(refusal(&[("x/data.json", "{")]).starts_with("x/data.json: not valid JSON"));
    }

    #[test]
    fn manifest_rules() {
        for (manifest, want) in [
            (r#"{"revision": 3}"#, "`revision` must be a string"),
            (
                r#"{"revision": "r1\u001b[2J"}"#,
                "`revision` has a control or invisible formatting character",
            ),
            (
                r#"{"roots": ["a\r"]}"#,
                "a root has a control or invisible formatting character",
            ),
            (r#"{"roots": "a"}"#, "`roots` must be a list of strings"),
            (
                r#"{"roots": ["a", "a/b"]}"#,
                "roots \"a\" and \"a/b\" overlap",
            ),
            (
                r#"{"roots": ["/a/", "a"]}"#,
                "roots \"a\" and \"a\" overlap",
            ),
            (
                r#"{"rego_version": 0}"#,
                "`rego_version: 0` asks for Rego v0: behavry evaluates Rego v1 only",
            ),
            (r#"{"rego_version": 2}"#, "unknown `rego_version: 2`"),
            (
                r#"{"file_rego_versions": {"x/*.rego": 0}}"#,
                "marks \"x/*.rego\" as Rego v0",
            ),
            (
                r#"{"wasm": [{"entrypoint": "a", "module": "/policy.wasm"}]}"#,
                "names Wasm modules",
            ),
            (r#"{"metadata": 1}"#, "`metadata` must be an object"),
            ("[]", "must be a JSON object"),
            ("{", "not valid JSON"),
        ] {
            let e = refusal(&[(".manifest", manifest)]);
            assert!(
                e.starts_with(".manifest: ") && e.contains(want),
                "{manifest}: {e}"
            );
        }
        let b = load_files(&[(
            ".manifest",
            r#"{"revision": "r1", "roots": ["/a/"], "rego_version": 1, "metadata": {"k": "v"}, "unknown": 1}"#,
        )])
        .unwrap();
        assert_eq!(b.manifest.revision, "r1");
        assert_eq!(b.manifest.roots, ["a"]);
        assert_eq!(b.manifest.metadata, Some(json!({"k": "v"})));
    }

    #[test]
    fn what_behavry_cannot_evaluate_is_refused() {
        for (name, text, want) in [
            ("policy.wasm", "", "Wasm and plan bundles"),
            ("x/plan.json", "{}", "Wasm and plan bundles"),
            ("patch.json", "{}", "delta bundles"),
            ("sub/.manifest", "{}", "must be `/.manifest`"),
            (
                "sub/.signatures.json",
                "{}",
                "only `/.signatures.json` at the root",
            ),
            ("p.rego", "package p\nallow { true }\n", "p.rego: "),
        ] {
            let e = refusal(&[(name, text)]);
            assert!(e.contains(want), "{name}: {e}");
        }
    }

    #[test]
    fn everything_must_lie_under_a_root() {
        let manifest = (".manifest", r#"{"roots": ["team/authz", "team/limits"]}"#);
        assert!(load_files(&[
            manifest,
            ("team/authz/p.rego", "package team.authz\nallow := true\n"),
            ("data.json", r#"{"team": {"limits": {"max": 1}}}"#),
            ("team/limits/data.json", r#"{"min": 0}"#),
        ])
        .is_ok());
        for (file, want) in [
            (
                ("p.rego", "package team\nallow := true\n"),
                "p.rego: package `team` is outside",
            ),
            (
                ("p.rego", "package other.x\nallow := true\n"),
                "package `other.x` is outside",
            ),
            (
                ("data.json", r#"{"team": {"other": 1}}"#),
                "data at `data.team.other` is outside",
            ),
            // A leaf on the way to a root is outside it too.
            (
                ("data.json", r#"{"team": 1}"#),
                "data at `data.team` is outside",
            ),
            (("x/data.json", "{}"), "data at `data.x` is outside"),
        ] {
            let e = refusal(&[manifest, file]);
            assert!(e.contains(want), "{file:?}: {e}");
        }
    }

    #[test]
    fn roots_cover_by_segment() {
        let roots = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (rs, path, want) in [
            (&[""][..], "anything/at/all", true),
            (&["team"], "team", true),
            (&["team"], "team/authz", true),
            (&["team"], "teams", false),
            (&["team/authz"], "team", false),
            (&["a", "b/c"], "/b/c/d/", true),
        ] {
            assert_eq!(root_covers(&roots(rs), path), want, "{rs:?} {path}");
        }
    }

    #[test]
    fn overlapping_bundles_are_refused() {
        let with_roots = |name: &str, roots: &[&str]| Bundle {
            name: name.into(),
            manifest: Manifest {
                roots: roots.iter().map(|s| s.to_string()).collect(),
                ..Manifest::default()
            },
            modules: Vec::new(),
            data: json!({}),
            sha256: String::new(),
            signer: None,
            files: Vec::new(),
        };
        let (a, b, c, all) = (
            with_roots("a", &["team/x"]),
            with_roots("b", &["team/y", "other"]),
            with_roots("c", &["team"]),
            with_roots("all", &[""]),
        );
        assert!(check_disjoint(&[&a, &b]).is_ok());
        assert!(check_disjoint(&[&a, &b, &c])
            .unwrap_err()
            .message
            .contains("bundles `a` (root \"team/x\") and `c` (root \"team\")"));
        assert_eq!(
            check_disjoint(&[&all, &a]).unwrap_err().kind,
            ErrorKind::Overlap
        );
    }

    /// A P-256 key made by ring, as a PKCS#8 private key and an SPKI public key, in PEM.
    fn es256_pair() -> (String, String) {
        use base64::Engine as _;
        use ring::signature::KeyPair as _;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        let pem = |label: &str, der: &[u8]| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
        };
        (pem("PRIVATE KEY", pkcs8.as_ref()), pem("PUBLIC KEY", &spki))
    }

    #[test]
    fn a_built_and_signed_bundle_loads_and_any_change_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("team")).unwrap();
        std::fs::write(
            dir.path().join("team/p.rego"),
            "package team\nallow := true\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("team/data.json"), r#"{"n": 1.50}"#).unwrap();
        let (private, public) = es256_pair();
        let options = build::Options {
            revision: Some("r7".into()),
            roots: Some(vec!["team".into()]),
            signing: Some(build::Signing {
                key: PrivateKey::from_pem(crate::team::Algorithm::ES256, &private).unwrap(),
                keyid: "org-2026".into(),
                scope: Some("behavry".into()),
            }),
        };
        let archive = build::build(dir.path(), &options).unwrap();
        let mut keys = Keys::default();
        keys.insert_pem("org-2026", crate::team::Algorithm::ES256, &public)
            .unwrap();
        let mut cfg = config();
        cfg.signing = Some(Signing {
            keyid: "org-2026".into(),
            scope: Some("behavry".into()),
        });
        let b = load(&archive, "org", &cfg, &keys).unwrap();
        assert_eq!(b.signer.as_deref(), Some("org-2026"));
        assert_eq!(b.manifest.revision, "r7");
        assert_eq!(b.data, json!({"team": {"n": 1.5}}));

        let e = load(&archive, "org", &cfg, &Keys::default()).unwrap_err();
        assert!(e.message.contains("add [keys.org-2026]"), "{e}");
        cfg.signing = Some(Signing {
            keyid: "org-2026".into(),
            scope: None,
        });
        let e = load(&archive, "org", &cfg, &keys).unwrap_err();
        assert!(e.message.contains("scope is \"behavry\""), "{e}");

        // Repack with one file changed: the signature no longer covers it.
        let mut entries = archive::read(&archive, Limits::of(&config())).unwrap();
        for entry in &mut entries {
            if entry.name == "team/p.rego" {
                entry.bytes = b"package team\nallow := false\n".to_vec();
            }
        }
        let files: Vec<(String, Vec<u8>)> =
            entries.into_iter().map(|e| (e.name, e.bytes)).collect();
        cfg.signing = Some(Signing {
            keyid: "org-2026".into(),
            scope: Some("behavry".into()),
        });
        let e = load(&build::pack(&files).unwrap(), "org", &cfg, &keys).unwrap_err();
        assert!(
            e.to_string().starts_with("team/p.rego: digest mismatch"),
            "{e}"
        );
        assert_eq!(e.kind, ErrorKind::Signature);
    }
}
