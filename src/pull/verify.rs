//! From archive bytes to a bundle ready to activate: unpacked in memory, checked, and its
//! signature verified against the configured keys. Every wrapper runs this on every archive it
//! activates, the one downloaded and the one read from the store alike: the store is only a
//! cache, and a wrapper trusts only its own keys.

use std::io::Read;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::team::BundleConfig;

/// A bundle that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub name: String,
    pub revision: String,
    /// SHA-256 of the archive bytes (hex).
    pub sha256: String,
    /// The key id that verified the signature, when signing is configured.
    pub signer: Option<String>,
    /// The host's ETag for the archive, when it sent one.
    pub etag: Option<String>,
    /// The manifest's roots (`""` is everything), as slash-separated paths.
    pub roots: Vec<String>,
    /// `.rego` modules: (path inside the bundle, text).
    pub modules: Vec<(String, String)>,
    /// Data documents: (the directory they sit in, which is where OPA places them under
    /// `data`, slash-separated, `""` for the root; the document).
    pub data: Vec<(String, Value)>,
}

/// SHA-256 of the archive bytes, hex.
pub fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Unpacks and checks `packed` (a `.tar.gz`) as bundle `name` configured by `config`.
pub fn verify(name: &str, packed: &[u8], config: &BundleConfig) -> Result<Verified, String> {
    if config.signing.is_some() {
        return Err(format!(
            "bundle {name}: signed bundles need the signature verifier, which this build lacks; remove `signing` or upgrade behavry"
        ));
    }
    let entries = unpack(packed, config)?;
    let mut manifest = Value::Null;
    let mut modules = Vec::new();
    let mut data = Vec::new();
    for (path, bytes) in entries {
        let text =
            || String::from_utf8(bytes.clone()).map_err(|_| format!("{path}: not UTF-8 text"));
        let (dir, file) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        if path == ".manifest" {
            manifest = serde_json::from_str(&text()?)
                .map_err(|e| format!(".manifest: not valid JSON: {e}"))?;
        } else if path.ends_with(".rego") {
            modules.push((path.clone(), text()?));
        } else if file == "data.json" {
            let value: Value = serde_json::from_str(&text()?)
                .map_err(|e| format!("{path}: not valid JSON: {e}"))?;
            data.push((dir.to_owned(), value));
        }
        // Anything else is ignored, as OPA ignores it.
    }
    let revision = manifest
        .get("revision")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if manifest.get("rego_version").and_then(Value::as_i64) == Some(0) {
        return Err(".manifest: rego_version 0 is not supported (behavry evaluates Rego v1); rebuild the bundle for Rego v1".into());
    }
    let roots: Vec<String> = match manifest.get("roots").and_then(Value::as_array) {
        Some(roots) => roots
            .iter()
            .map(|r| r.as_str().map(|r| r.trim_matches('/').to_owned()))
            .collect::<Option<_>>()
            .ok_or(".manifest: roots must be strings")?,
        None => vec![String::new()],
    };
    for (dir, _) in &data {
        if !roots.iter().any(|r| covers(r, dir)) {
            return Err(format!(
                "{dir}/data.json lies outside the bundle's roots {roots:?}"
            ));
        }
    }
    for (path, text) in &modules {
        let package = package_of(text).unwrap_or_default().replace('.', "/");
        if !roots.iter().any(|r| covers(r, &package)) {
            return Err(format!(
                "{path}: package {} lies outside the bundle's roots {roots:?}",
                package.replace('/', ".")
            ));
        }
    }
    Ok(Verified {
        name: name.to_owned(),
        revision,
        sha256: digest(packed),
        signer: None,
        etag: None,
        roots,
        modules,
        data,
    })
}

/// Whether root `root` covers `path` (both slash-separated, segment-wise).
pub fn covers(root: &str, path: &str) -> bool {
    root.is_empty() || path == root || path.starts_with(&format!("{root}/"))
}

/// The package a module declares (`package a.b`), without `data.`.
pub fn package_of(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("package ")?;
        let name = rest.split(['#', ' ', '\t']).next()?.trim();
        Some(name.strip_prefix("data.").unwrap_or(name).to_owned())
    })
}

/// The regular files of a `.tar.gz`, by name (leading `/` and `./` stripped), refusing `..`,
/// links, devices and duplicate names, and the limits of `config`.
fn unpack(packed: &[u8], config: &BundleConfig) -> Result<Vec<(String, Vec<u8>)>, String> {
    let gz = flate2::read::GzDecoder::new(packed);
    let mut archive = tar::Archive::new(gz);
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut total: u64 = 0;
    let entries = archive
        .entries()
        .map_err(|e| format!("not a .tar.gz archive: {e}"))?;
    for (count, entry) in entries.enumerate() {
        let entry = entry.map_err(|e| format!("not a .tar.gz archive: {e}"))?;
        if count as u64 >= config.max_entries {
            return Err(format!(
                "more than {} entries (max_entries)",
                config.max_entries
            ));
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(format!("{raw}: links and devices are refused"));
        }
        let name = raw
            .trim_start_matches("./")
            .trim_start_matches('/')
            .to_owned();
        if name.split('/').any(|s| s == "..") {
            return Err(format!("{raw}: a name with `..` is refused"));
        }
        if files.iter().any(|(n, _)| *n == name) {
            return Err(format!("{name}: appears twice in the archive"));
        }
        let room = config.max_unpacked_bytes.saturating_sub(total);
        let mut bytes = Vec::new();
        entry
            .take(room.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{name}: {e}"))?;
        total += bytes.len() as u64;
        if total > config.max_unpacked_bytes {
            return Err(format!(
                "unpacks to more than {} bytes (max_unpacked_bytes)",
                config.max_unpacked_bytes
            ));
        }
        files.push((name, bytes));
    }
    Ok(files)
}
