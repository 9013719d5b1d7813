//! Bundle signatures as OPA checks them (`v1/bundle/verify.go`) and writes them (`sign.go`).
//!
//! `.signatures.json` is `{"signatures": ["<one compact JWS>"]}`; its payload lists every file
//! (`files: [{name, hash, algorithm}]`) with a `scope`, `iat`, `iss` and the deprecated `keyid`.
//! The key is the configured one, else the header's `kid`, else the `keyid` claim; the token's
//! `alg` must be the key's configured algorithm. Only public-key algorithms: RS256/384/512,
//! PS256, ES256/384 (ES signatures are JWS's fixed `r‖s`, not DER). HS* is refused (a secret on
//! every laptop lets any of them sign) and so is `none`. ring does the cryptography; PEM and the
//! SubjectPublicKeyInfo wrapper around the key are unwrapped here, minimally.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use ring::signature::{self, KeyPair as _};
use serde::{Deserialize, Serialize};

use super::{hash, BundleError, Entry, ErrorKind, SIGNATURES};
use crate::team::{Algorithm, KeyConfig};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The public keys bundle signatures are checked against, by key id (`[keys.ID]`).
#[derive(Debug, Clone, Default)]
pub struct Keys {
    keys: BTreeMap<String, PublicKey>,
}

#[derive(Debug, Clone)]
struct PublicKey {
    algorithm: Algorithm,
    /// What ring verifies with: PKCS#1 `RSAPublicKey` DER, or an uncompressed EC point.
    raw: Vec<u8>,
}

impl Keys {
    /// Reads every `[keys.ID]` key file. A key that cannot be read or does not suit its
    /// algorithm is an error naming the key and the file.
    pub fn load(config: &BTreeMap<String, KeyConfig>) -> Result<Keys, BundleError> {
        let mut keys = Keys::default();
        for (id, key) in config {
            let pem = read_key_file(id, &key.key_file)?;
            keys.insert_pem(id, key.algorithm, &pem)
                .map_err(|e| BundleError {
                    message: format!("[keys.{id}] {}: {}", key.key_file.display(), e.message),
                    ..e
                })?;
        }
        Ok(keys)
    }

    /// Adds one PEM public key (`-----BEGIN PUBLIC KEY-----` or `RSA PUBLIC KEY`) under `id`.
    pub fn insert_pem(
        &mut self,
        id: &str,
        algorithm: Algorithm,
        pem: &str,
    ) -> Result<(), BundleError> {
        let bad = |why: String| BundleError::new(ErrorKind::Key, None, why);
        let (label, der) = pem_decode(pem).map_err(bad)?;
        let raw = match label.as_str() {
            "PUBLIC KEY" => spki_key(&der, algorithm).map_err(bad)?,
            "RSA PUBLIC KEY" if is_rsa(algorithm) => der,
            other => {
                return Err(bad(format!(
                    "a PEM `{other}` block is not a public key for {algorithm:?}; give the `-----BEGIN PUBLIC KEY-----` form (`openssl pkey -pubout`)"
                )))
            }
        };
        self.keys
            .insert(id.to_string(), PublicKey { algorithm, raw });
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The configured key ids.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

fn read_key_file(id: &str, path: &Path) -> Result<String, BundleError> {
    std::fs::read_to_string(path).map_err(|e| {
        BundleError::new(
            ErrorKind::Key,
            None,
            format!("[keys.{id}] key_file {}: cannot read: {e}", path.display()),
        )
    })
}

fn is_rsa(algorithm: Algorithm) -> bool {
    !matches!(algorithm, Algorithm::ES256 | Algorithm::ES384)
}

fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
    }
}

/// Parses `RS256`, … (as `--algorithm` takes it); HS* and `none` are named as refused.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    Ok(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        n if n.starts_with("HS") => {
            return Err(format!(
                "{n} is refused: a shared secret on every machine lets any of them sign; use RS256/384/512, PS256 or ES256/384"
            ))
        }
        n => {
            return Err(format!(
                "unknown algorithm \"{n}\"; use RS256, RS384, RS512, PS256, ES256 or ES384"
            ))
        }
    })
}

fn verification(algorithm: Algorithm) -> &'static dyn signature::VerificationAlgorithm {
    match algorithm {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
    }
}

/// One file's entry in the signature's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    pub name: String,
    pub hash: String,
    pub algorithm: String,
}

#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(default)]
    files: Vec<FileInfo>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    keyid: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SignaturesFile {
    #[serde(default)]
    signatures: Vec<String>,
    #[serde(default)]
    plugin: Option<String>,
}

/// A signature that held: the key id that verified it and the files it lists.
#[derive(Debug)]
pub struct Verified {
    pub keyid: String,
    pub files: BTreeMap<String, FileInfo>,
}

fn refused(why: impl Into<String>) -> BundleError {
    BundleError::new(ErrorKind::Signature, Some(SIGNATURES.into()), why)
}

/// Checks `.signatures.json` (its bytes): one JWS, by a known key, with the expected scope
/// (`None` means the token must carry none, as in OPA).
pub fn verify(
    signatures: &[u8],
    keyid: Option<&str>,
    scope: Option<&str>,
    keys: &Keys,
) -> Result<Verified, BundleError> {
    let file: SignaturesFile =
        serde_json::from_slice(signatures).map_err(|e| refused(format!("not valid JSON: {e}")))?;
    if let Some(plugin) = file.plugin.filter(|p| !p.is_empty()) {
        return Err(refused(format!(
            "names signature plugin \"{plugin}\"; behavry checks only OPA's default JWS signatures"
        )));
    }
    let token = match file.signatures.as_slice() {
        [one] => one,
        [] => return Err(refused("holds no signature (expected exactly one JWT)")),
        _ => {
            return Err(refused(
                "holds several signatures (expected exactly one JWT)",
            ))
        }
    };
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refused(
            "the signature is not a compact JWS (header.payload.signature)",
        ));
    };
    let decode = |part: &str, what: &str| {
        B64.decode(part)
            .map_err(|e| refused(format!("the JWS {what} is not base64url: {e}")))
    };
    let header: serde_json::Value = serde_json::from_slice(&decode(h, "header")?)
        .map_err(|e| refused(format!("the JWS header is not JSON: {e}")))?;
    let alg = header.get("alg").and_then(|a| a.as_str()).unwrap_or("");
    if alg.eq_ignore_ascii_case("none") || alg.is_empty() {
        return Err(refused(
            "the JWS is unsigned (`alg: none`); sign the bundle with a private key",
        ));
    }
    let alg = parse_algorithm(alg).map_err(|e| refused(format!("the JWS algorithm {e}")))?;
    let payload: Payload = serde_json::from_slice(&decode(p, "payload")?)
        .map_err(|e| refused(format!("the JWS payload is not a bundle signature: {e}")))?;
    let keyid = keyid
        .map(str::to_string)
        .or_else(|| {
            header
                .get("kid")
                .and_then(|k| k.as_str())
                .map(str::to_string)
        })
        .or_else(|| payload.keyid.clone())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            refused("names no key (no `kid` header, no `keyid` claim) and none is configured")
        })?;
    let key = keys.keys.get(&keyid).ok_or_else(|| {
        refused(format!(
            "is signed by key `{keyid}`, which is not configured; add [keys.{keyid}] with its public key"
        ))
    })?;
    if key.algorithm != alg {
        return Err(refused(format!(
            "is signed with {}, but [keys.{keyid}] is {}; a key is used only with its configured algorithm",
            algorithm_name(alg),
            algorithm_name(key.algorithm)
        )));
    }
    let sig = decode(s, "signature")?;
    let signed = &token[..h.len() + 1 + p.len()];
    signature::UnparsedPublicKey::new(verification(alg), &key.raw)
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| {
            refused(format!(
                "the signature does not verify with key `{keyid}` ({}): signed by another key, or altered",
                algorithm_name(alg)
            ))
        })?;
    let want = scope.unwrap_or("");
    let got = payload.scope.as_deref().unwrap_or("");
    if want != got {
        return Err(refused(format!(
            "the signature's scope is \"{got}\", but \"{want}\" is required (`signing.scope`)"
        )));
    }
    let files = payload
        .files
        .into_iter()
        .map(|f| (f.name.clone(), f))
        .collect();
    Ok(Verified { keyid, files })
}

/// Every file present is listed with a matching digest, and every listed file is present.
pub fn check_files(
    entries: &[Entry],
    mut listed: BTreeMap<String, FileInfo>,
) -> Result<(), BundleError> {
    for entry in entries {
        let file = || Some(entry.name.clone());
        let info = listed.remove(&entry.name).ok_or_else(|| {
            BundleError::new(
                ErrorKind::Signature,
                file(),
                "is not listed in the bundle's signature (added after signing?)",
            )
        })?;
        let digest = hash::digest(&entry.name, &entry.bytes, &info.algorithm)
            .map_err(|e| BundleError::new(ErrorKind::Signature, file(), e))?;
        if super::hex(&digest) != info.hash.to_ascii_lowercase() {
            return Err(BundleError::new(
                ErrorKind::Signature,
                file(),
                format!(
                    "digest mismatch: the signature lists {}, the file hashes to {} (changed after signing)",
                    info.hash,
                    super::hex(&digest)
                ),
            ));
        }
    }
    if let Some(name) = listed.keys().next() {
        return Err(BundleError::new(
            ErrorKind::Signature,
            Some(name.clone()),
            "is listed in the bundle's signature but missing from the archive",
        ));
    }
    Ok(())
}

/// A private key for `behavry bundle build`: PKCS#8 (`PRIVATE KEY`) or, for RSA, PKCS#1.
pub struct PrivateKey {
    algorithm: Algorithm,
    key: Signer,
}

enum Signer {
    Rsa(signature::RsaKeyPair),
    Ecdsa(signature::EcdsaKeyPair),
}

impl PrivateKey {
    pub fn from_pem(algorithm: Algorithm, pem: &str) -> Result<PrivateKey, String> {
        let (label, der) = pem_decode(pem)?;
        let rng = ring::rand::SystemRandom::new();
        let key = match (label.as_str(), algorithm) {
            ("PRIVATE KEY", Algorithm::ES256) => signature::EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &der,
                &rng,
            )
            .map(Signer::Ecdsa)
            .map_err(|e| format!("not a P-256 PKCS#8 private key: {e}"))?,
            ("PRIVATE KEY", Algorithm::ES384) => signature::EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                &der,
                &rng,
            )
            .map(Signer::Ecdsa)
            .map_err(|e| format!("not a P-384 PKCS#8 private key: {e}"))?,
            ("PRIVATE KEY", _) => signature::RsaKeyPair::from_pkcs8(&der)
                .map(Signer::Rsa)
                .map_err(|e| format!("not an RSA PKCS#8 private key: {e}"))?,
            ("RSA PRIVATE KEY", a) if is_rsa(a) => signature::RsaKeyPair::from_der(&der)
                .map(Signer::Rsa)
                .map_err(|e| format!("not an RSA private key: {e}"))?,
            ("EC PRIVATE KEY", _) => {
                return Err(
                    "an `EC PRIVATE KEY` (SEC1) block; convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8`".into(),
                )
            }
            (other, a) => {
                return Err(format!(
                    "a PEM `{other}` block is not a private key for {}",
                    algorithm_name(a)
                ))
            }
        };
        Ok(PrivateKey { algorithm, key })
    }

    /// The public half, as a PEM `PUBLIC KEY` (for tests and for printing).
    pub fn public_key_raw(&self) -> Vec<u8> {
        match &self.key {
            Signer::Rsa(k) => k.public().as_ref().to_vec(),
            Signer::Ecdsa(k) => k.public_key().as_ref().to_vec(),
        }
    }

    /// A compact JWS over `payload`, with `kid` in its header.
    pub fn sign(&self, keyid: &str, payload: &[u8]) -> Result<String, String> {
        let header =
            serde_json::json!({"alg": algorithm_name(self.algorithm), "kid": keyid, "typ": "JWT"});
        let signing_input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(payload));
        let rng = ring::rand::SystemRandom::new();
        let sig = match &self.key {
            Signer::Ecdsa(k) => k
                .sign(&rng, signing_input.as_bytes())
                .map_err(|e| format!("signing failed: {e}"))?
                .as_ref()
                .to_vec(),
            Signer::Rsa(k) => {
                let padding: &'static dyn signature::RsaEncoding = match self.algorithm {
                    Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_SHA256,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(padding, &rng, signing_input.as_bytes(), &mut sig)
                    .map_err(|e| format!("signing failed: {e}"))?;
                sig
            }
        };
        Ok(format!("{signing_input}.{}", B64.encode(sig)))
    }
}

/// The label and bytes of the first PEM block in `text`.
fn pem_decode(text: &str) -> Result<(String, Vec<u8>), String> {
    let begin = text
        .find("-----BEGIN ")
        .ok_or("not a PEM file (no `-----BEGIN …-----` line)")?;
    let rest = &text[begin + 11..];
    let label_end = rest.find("-----").ok_or("malformed PEM header")?;
    let label = rest[..label_end].to_string();
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let body_end = rest[body_start..]
        .find(&end_marker)
        .ok_or_else(|| format!("PEM block `{label}` has no END line"))?;
    let body: String = rest[body_start..body_start + body_end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| format!("PEM block `{label}` is not base64: {e}"))?;
    Ok((label, der))
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// The key inside a SubjectPublicKeyInfo, checked to be of the kind `algorithm` needs:
/// `SEQUENCE { SEQUENCE { OID, params }, BIT STRING key }`.
fn spki_key(der: &[u8], algorithm: Algorithm) -> Result<Vec<u8>, String> {
    const MALFORMED: &str = "not a SubjectPublicKeyInfo (malformed DER)";
    let (spki, _) = der_take(der, 0x30).ok_or(MALFORMED)?;
    let (alg_id, rest) = der_take(spki, 0x30).ok_or(MALFORMED)?;
    let (bits, _) = der_take(rest, 0x03).ok_or(MALFORMED)?;
    let (oid, params) = der_take(alg_id, 0x06).ok_or(MALFORMED)?;
    let key = match bits.split_first() {
        Some((0, key)) => key.to_vec(),
        _ => return Err(MALFORMED.into()),
    };
    let curve = der_take(params, 0x06).map(|(c, _)| c);
    let fits = match algorithm {
        Algorithm::ES256 => oid == OID_EC && curve == Some(OID_P256),
        Algorithm::ES384 => oid == OID_EC && curve == Some(OID_P384),
        _ => oid == OID_RSA,
    };
    if !fits {
        let kind = if oid == OID_RSA {
            "an RSA key"
        } else if oid == OID_EC && curve == Some(OID_P256) {
            "a P-256 key"
        } else if oid == OID_EC && curve == Some(OID_P384) {
            "a P-384 key"
        } else {
            "a key of another kind"
        };
        return Err(format!(
            "is {kind}, which does not suit {}",
            algorithm_name(algorithm)
        ));
    }
    Ok(key)
}

/// One DER element of type `tag` at the start of `der`: its contents and what follows.
fn der_take(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = der.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| (&rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_and_truncation() {
        assert_eq!(
            der_take(&[0x30, 0x01, 0xaa, 0xbb], 0x30),
            Some((&[0xaa][..], &[0xbb][..]))
        );
        assert_eq!(
            der_take(&[0x30, 0x81, 0x01, 0xaa], 0x30),
            Some((&[0xaa][..], &[][..]))
        );
        assert_eq!(der_take(&[0x30, 0x05, 0xaa], 0x30), None);
        assert_eq!(der_take(&[0x31, 0x00], 0x30), None);
        assert_eq!(der_take(&[0x30, 0x85, 0, 0, 0, 0, 1], 0x30), None);
    }

    #[test]
    fn hs_and_unknown_algorithms_are_refused_by_name() {
        assert!(parse_algorithm("HS256")
            .unwrap_err()
            .contains("shared secret"));
        assert!(parse_algorithm("EdDSA").unwrap_err().contains("unknown"));
        assert_eq!(parse_algorithm("PS256"), Ok(Algorithm::PS256));
    }

    #[test]
    fn pem_errors_say_what_is_wrong() {
        assert!(pem_decode("hello").unwrap_err().contains("not a PEM"));
        assert!(pem_decode("-----BEGIN PUBLIC KEY-----\nAAAA\n")
            .unwrap_err()
            .contains("no END"));
        let mut keys = Keys::default();
        let e = keys
            .insert_pem(
                "k",
                Algorithm::ES256,
                "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n",
            )
            .unwrap_err();
        assert!(e.message.contains("SubjectPublicKeyInfo"), "{e}");
    }
}
