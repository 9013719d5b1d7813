//! Writes a bundle from a directory, laid out as `opa build -b DIR` and `opa sign` write it, for
//! teams without OPA: `/data.json` (every `data.json`/`data.yaml` merged at its directory's
//! path), each `.rego` at `/<its path>`, `/.signatures.json` when signed, then `/.manifest`
//! (with `rego_version: 1`, as OPA 1.x writes). Entries are sorted, mode 0600, mtime 0, owner
//! 0: the same directory gives the same archive (but for the signature's randomness and `iat`).

use std::path::Path;

use serde_json::{json, Map, Value};

use super::sign::{FileInfo, PrivateKey};
use super::{hash, insert_data, parse_data, parse_manifest, MANIFEST, SIGNATURES};

/// How `build` signs: the key, the key id written as `kid`/`keyid`, and the scope claim.
pub struct Signing {
    pub key: PrivateKey,
    pub keyid: String,
    pub scope: Option<String>,
}

#[derive(Default)]
pub struct Options {
    /// Overrides the directory's `.manifest` revision.
    pub revision: Option<String>,
    /// Overrides the directory's `.manifest` roots.
    pub roots: Option<Vec<String>>,
    pub signing: Option<Signing>,
}

/// The packed bundle for `dir`. Errors name the file and what is wrong.
pub fn build(dir: &Path, options: &Options) -> Result<Vec<u8>, String> {
    let mut found = Vec::new();
    walk(dir, dir, 0, &mut found)?;
    found.sort();
    let mut data = Value::Object(Map::new());
    let mut modules: Vec<(String, Vec<u8>)> = Vec::new();
    let mut manifest: Map<String, Value> = Map::new();
    for name in &found {
        let bytes =
            std::fs::read(dir.join(name)).map_err(|e| format!("{name}: cannot read: {e}"))?;
        let base = name.rsplit('/').next().unwrap_or(name);
        if name == MANIFEST {
            // Checked as a reader would check it, then kept field for field.
            parse_manifest(&bytes).map_err(|e| e.to_string())?;
            manifest = serde_json::from_slice(&bytes).map_err(|e| format!("{name}: {e}"))?;
        } else if matches!(base, "data.json" | "data.yaml" | "data.yml") {
            let value = parse_data(name, &bytes).map_err(|e| e.to_string())?;
            insert_data(&mut data, name, value).map_err(|e| e.to_string())?;
        } else if base.ends_with(".rego") {
            modules.push((name.clone(), bytes));
        }
    }
    if let Some(revision) = &options.revision {
        manifest.insert("revision".into(), json!(revision));
    }
    if let Some(roots) = &options.roots {
        manifest.insert("roots".into(), json!(roots));
    }
    if manifest.get("rego_version").is_some_and(|v| v != &json!(1)) {
        return Err(format!(
            "{}/.manifest: rego_version must be 1 (behavry evaluates Rego v1 only)",
            dir.display()
        ));
    }
    manifest.insert("rego_version".into(), json!(1));
    // OPA's field order: revision, roots, rego_version, then the rest.
    let mut ordered = Map::new();
    ordered.insert(
        "revision".into(),
        manifest.remove("revision").unwrap_or_else(|| json!("")),
    );
    ordered.insert(
        "roots".into(),
        manifest.remove("roots").unwrap_or_else(|| json!([""])),
    );
    ordered.insert("rego_version".into(), json!(1));
    ordered.extend(manifest);

    let data_json = serde_json::to_vec(&data).map_err(|e| e.to_string())?;
    let manifest_json = serde_json::to_vec(&Value::Object(ordered)).map_err(|e| e.to_string())?;

    let mut files: Vec<(String, Vec<u8>)> = vec![("data.json".into(), data_json)];
    files.extend(modules);
    let mut archive: Vec<(String, Vec<u8>)> = files.clone();
    if let Some(signing) = &options.signing {
        files.push((MANIFEST.into(), manifest_json.clone()));
        let signatures = sign(&files, signing)?;
        archive.push((SIGNATURES.into(), signatures));
    }
    archive.push((MANIFEST.into(), manifest_json));
    pack(&archive)
}

/// `.signatures.json` over `files`, as `opa sign` writes it.
fn sign(files: &[(String, Vec<u8>)], signing: &Signing) -> Result<Vec<u8>, String> {
    let listed: Vec<FileInfo> = files
        .iter()
        .map(|(name, bytes)| {
            Ok(FileInfo {
                name: name.clone(),
                hash: super::hex(&hash::digest(name, bytes, "SHA-256")?),
                algorithm: "SHA-256".into(),
            })
        })
        .collect::<Result<_, String>>()?;
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut payload =
        json!({"files": listed, "iat": iat, "iss": "behavry", "keyid": signing.keyid});
    if let Some(scope) = &signing.scope {
        payload["scope"] = json!(scope);
    }
    let token = signing
        .key
        .sign(&signing.keyid, payload.to_string().as_bytes())?;
    serde_json::to_vec_pretty(&json!({"signatures": [token]})).map_err(|e| e.to_string())
}

/// A gzip'd tar of `files`, each `/<name>`, mode 0600, mtime 0, in the order given.
pub fn pack(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in files {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o600);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(bytes.len() as u64);
        tar.append_data(&mut header, format!("/{name}"), bytes.as_slice())
            .map_err(|e| format!("{name}: cannot add to the archive: {e}"))?;
    }
    let gz = tar.into_inner().map_err(|e| e.to_string())?;
    gz.finish().map_err(|e| e.to_string())
}

/// Every file under `dir` (relative, `/`-separated), hidden ones skipped but for the root's
/// `.manifest`.
fn walk(root: &Path, dir: &Path, depth: usize, found: &mut Vec<String>) -> Result<(), String> {
    if depth > 32 {
        return Err(format!(
            "{}: nested too deeply (a symlink loop?)",
            dir.display()
        ));
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("{}: cannot read: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        let Ok(relative) = path.strip_prefix(root) else {
            continue;
        };
        let Some(name) = relative.to_str().map(|s| s.replace('\\', "/")) else {
            return Err(format!("{}: name is not UTF-8", path.display()));
        };
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if path.is_dir() {
            if !hidden {
                walk(root, &path, depth + 1, found)?;
            }
        } else if !hidden || name == MANIFEST {
            found.push(name);
        }
    }
    Ok(())
}
