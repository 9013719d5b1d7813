//! Pulling a policy bundle from an OCI registry (`oci://registry[:port]/repo:tag`), the way OPA
//! does (`v1/download/oci_download.go`): the image manifest, its first
//! `application/vnd.oci.image.layer.v1.tar+gzip` layer, that layer's blob checked against its
//! digest. The digest is the etag: a manifest naming the digest already held is "not modified",
//! and the blob is not downloaded again.
//!
//! Blocking (`ureq`), for the fetching thread; never on the decision path. `http` is used only
//! for a loopback registry: anything else is `https`, so a bundle cannot be swapped on the wire.
//! The archive's contents are not looked at here: unpacking and verifying it is the caller's.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// The manifest type asked for (OCI image manifest, as `oras push` writes).
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The layer type OPA takes the bundle from.
pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// A manifest is a few hundred bytes; anything past this is not one.
const MAX_MANIFEST: u64 = 4 * 1024 * 1024;
/// A token endpoint's answer is small too.
const MAX_TOKEN_ANSWER: u64 = 64 * 1024;

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// The largest layer accepted (packed); a manifest announcing more is refused unread.
    pub max_bytes: u64,
    /// Sent as `Authorization: Bearer <token>` (the contents of `token_file`), and to a token
    /// endpoint the registry points at.
    pub token: Option<String>,
    /// PEM certificates trusted for this registry beside the built-in (Mozilla) roots.
    pub ca_file: Option<PathBuf>,
}

/// What a pull found.
#[derive(Debug, PartialEq, Eq)]
pub enum Pulled {
    /// The layer's digest equals the etag given: nothing downloaded.
    NotModified,
    /// The layer (a gzip tar), whose sha256 was checked against `digest` (`sha256:<hex>`), the
    /// next etag.
    Archive { bytes: Vec<u8>, digest: String },
}

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{0}")]
    Url(String),
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url}: the registry answered {status}{hint}")]
    Status {
        url: String,
        status: u16,
        hint: &'static str,
    },
    #[error("the manifest of {reference} {message}")]
    Manifest { reference: String, message: String },
    #[error(
        "the bundle layer of {reference} is {size} bytes, over the limit of {max} (max_bytes)"
    )]
    TooLarge {
        reference: String,
        size: u64,
        max: u64,
    },
    #[error("the bundle layer of {reference} does not match its digest: the manifest says {want}, the blob is {got}")]
    Digest {
        reference: String,
        want: String,
        got: String,
    },
    #[error("ca_file {path}: {message}")]
    CaFile { path: PathBuf, message: String },
}

/// `oci://registry[:port]/repo[/…]:tag` (or `@sha256:…`), taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `https` or, for a loopback registry only, `http`.
    pub scheme: &'static str,
    /// `host[:port]`, as written.
    pub registry: String,
    pub repository: String,
    /// A tag, or a `sha256:…` digest.
    pub reference: String,
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sep = if self.reference.contains(':') {
            '@'
        } else {
            ':'
        };
        write!(
            f,
            "oci://{}/{}{sep}{}",
            self.registry, self.repository, self.reference
        )
    }
}

impl Reference {
    /// Parses an `oci://` URL. The registry is reached over `https`, or `http` when its host is
    /// loopback (`localhost`, `127.0.0.0/8`, `[::1]`), which tests and local mirrors use.
    pub fn parse(url: &str) -> Result<Reference, OciError> {
        let bad = |why: &str| {
            OciError::Url(format!(
                "{url:?} is not an OCI reference ({why}); write oci://registry[:port]/repository:tag"
            ))
        };
        let rest = url
            .strip_prefix("oci://")
            .ok_or_else(|| bad("it must start with oci://"))?;
        let (registry, path) = rest.split_once('/').ok_or_else(|| bad("no repository"))?;
        if registry.is_empty() || registry.contains(['@', '?', '#']) {
            return Err(bad("no registry host"));
        }
        let (repository, reference) = match path.split_once('@') {
            Some((repo, digest)) => (repo, digest.to_owned()),
            None => match path.rsplit_once(':') {
                // A ':' after the last '/' separates the tag.
                Some((repo, tag)) if !tag.contains('/') => (repo, tag.to_owned()),
                _ => return Err(bad("no tag")),
            },
        };
        // The OCI distribution spec's grammar, which also keeps the URL path what it looks like.
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                    && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            });
        if !repo_ok {
            return Err(bad(
                "the repository may hold only a-z, 0-9, '.', '_', '-' and '/'",
            ));
        }
        let tag_ok = if reference.contains(':') {
            valid_digest(&reference)
        } else {
            !reference.is_empty()
                && reference.len() <= 128
                && reference
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        };
        if !tag_ok {
            return Err(bad("the tag is not valid"));
        }
        let scheme = if is_loopback(registry) {
            "http"
        } else {
            "https"
        };
        Ok(Reference {
            scheme,
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            reference,
        })
    }

    fn url(&self, kind: &str, what: &str) -> String {
        format!(
            "{}://{}/v2/{}/{kind}/{what}",
            self.scheme, self.registry, self.repository
        )
    }
}

/// Whether `host[:port]` names this machine.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => registry.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `sha256:` and 64 lowercase hex digits: the only digest accepted (and the only one put in a URL).
fn valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
    })
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
}

/// Pulls the bundle at `url` (see the module doc); `etag` is the digest of the archive held now.
pub fn pull(url: &str, etag: Option<&str>, opts: &PullOptions) -> Result<Pulled, OciError> {
    let reference = Reference::parse(url)?;
    let client = Client::new(opts, &reference)?;
    let name = reference.to_string();

    let manifest_url = reference.url("manifests", &reference.reference);
    let body = client.get(&manifest_url, MANIFEST_TYPE, MAX_MANIFEST, &reference)?;
    let bad_manifest = |message: String| OciError::Manifest {
        reference: name.clone(),
        message,
    };
    let manifest: Manifest = serde_json::from_slice(&body)
        .map_err(|e| bad_manifest(format!("is not an OCI image manifest: {e}")))?;
    if let Some(kind) = manifest
        .media_type
        .as_deref()
        .filter(|t| *t != MANIFEST_TYPE)
    {
        return Err(bad_manifest(format!(
            "is a {kind}, not an image manifest ({MANIFEST_TYPE})"
        )));
    }
    let Some(layer) = manifest.layers.iter().find(|l| l.media_type == LAYER_TYPE) else {
        let found: Vec<&str> = manifest
            .layers
            .iter()
            .map(|l| l.media_type.as_str())
            .collect();
        return Err(bad_manifest(format!(
            "has no {LAYER_TYPE} layer (found: {}); push the bundle with \
             `oras push REGISTRY/REPO:TAG bundle.tar.gz:{LAYER_TYPE}`",
            if found.is_empty() {
                "no layers".to_owned()
            } else {
                found.join(", ")
            }
        )));
    };
    if !valid_digest(&layer.digest) {
        return Err(bad_manifest(format!(
            "names the layer digest {:?}; only sha256 digests are accepted",
            layer.digest
        )));
    }
    if etag == Some(layer.digest.as_str()) {
        return Ok(Pulled::NotModified);
    }
    if layer.size > opts.max_bytes {
        return Err(OciError::TooLarge {
            reference: name,
            size: layer.size,
            max: opts.max_bytes,
        });
    }

    let blob_url = reference.url("blobs", &layer.digest);
    // The manifest's size is a claim; the limit holds whatever the body turns out to be.
    let bytes = client.get(&blob_url, "*/*", opts.max_bytes, &reference)?;
    let got = format!("sha256:{:x}", Sha256::digest(&bytes));
    if got != layer.digest {
        return Err(OciError::Digest {
            reference: name,
            want: layer.digest.clone(),
            got,
        });
    }
    Ok(Pulled::Archive { bytes, digest: got })
}

/// One pull's HTTP client: the agent, and the bearer token in use (the configured one, or one a
/// registry's token endpoint handed out).
struct Client {
    agent: ureq::Agent,
    configured: Option<String>,
    token: std::cell::RefCell<Option<String>>,
}

impl Client {
    fn new(opts: &PullOptions, reference: &Reference) -> Result<Client, OciError> {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_global(Some(Duration::from_secs(300)))
            // A registry (or the blob store it sends pulls to) may redirect, never down to http.
            .https_only(reference.scheme == "https")
            .user_agent(concat!("behavry/", env!("CARGO_PKG_VERSION")));
        if reference.scheme == "http" {
            // A proxy (HTTPS_PROXY, …) cannot reach this machine's loopback for us.
            config = config.proxy(None);
        }
        if let Some(path) = &opts.ca_file {
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(crate::tls::roots_with(path).map_err(|message| {
                        OciError::CaFile {
                            path: path.clone(),
                            message,
                        }
                    })?)
                    .build(),
            );
        }
        Ok(Client {
            agent: config.build().into(),
            configured: opts.token.clone(),
            token: std::cell::RefCell::new(opts.token.clone()),
        })
    }

    /// GETs `url`, answering one `WWW-Authenticate: Bearer` challenge; at most `limit` bytes.
    fn get(
        &self,
        url: &str,
        accept: &str,
        limit: u64,
        reference: &Reference,
    ) -> Result<Vec<u8>, OciError> {
        let mut response = self.send(url, accept)?;
        if response.status() == 401 {
            let challenge = response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .and_then(Challenge::parse);
            if let Some(challenge) = challenge {
                *self.token.borrow_mut() = Some(self.fetch_token(&challenge, reference)?);
                response = self.send(url, accept)?;
            }
        }
        let status = response.status().as_u16();
        if status != 200 {
            return Err(OciError::Status {
                url: url.to_owned(),
                status,
                hint: match status {
                    401 | 403 => " (check token_file)",
                    404 => " (no such repository, tag or blob)",
                    _ => "",
                },
            });
        }
        read_limited(response, limit, url)
    }

    fn send(&self, url: &str, accept: &str) -> Result<ureq::http::Response<ureq::Body>, OciError> {
        let mut request = self.agent.get(url).header("Accept", accept);
        if let Some(token) = self.token.borrow().as_deref() {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        request.call().map_err(|e| OciError::Http {
            url: url.to_owned(),
            message: e.to_string(),
        })
    }

    /// A token from the registry's token endpoint (the Docker token protocol OCI registries
    /// use), presenting the configured token if there is one.
    fn fetch_token(
        &self,
        challenge: &Challenge,
        reference: &Reference,
    ) -> Result<String, OciError> {
        let realm = &challenge.realm;
        let realm_ok = realm.starts_with("https://")
            || (realm.starts_with("http://")
                && is_loopback(
                    realm["http://".len()..]
                        .split(['/', '?'])
                        .next()
                        .unwrap_or(""),
                ));
        if !realm_ok {
            return Err(OciError::Http {
                url: realm.clone(),
                message: "the registry's token endpoint is not https (http is accepted only on \
                          loopback)"
                    .into(),
            });
        }
        let scope = challenge
            .scope
            .clone()
            .unwrap_or_else(|| format!("repository:{}:pull", reference.repository));
        let mut request = self.agent.get(realm).query("scope", &scope);
        if let Some(service) = &challenge.service {
            request = request.query("service", service);
        }
        if let Some(token) = &self.configured {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = request.call().map_err(|e| OciError::Http {
            url: realm.clone(),
            message: e.to_string(),
        })?;
        if response.status() != 200 {
            return Err(OciError::Status {
                url: realm.clone(),
                status: response.status().as_u16(),
                hint: " (the token endpoint refused; check token_file)",
            });
        }
        let body = read_limited(response, MAX_TOKEN_ANSWER, realm)?;
        #[derive(Deserialize)]
        struct Answer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| OciError::Http {
            url: realm.clone(),
            message: format!("the token endpoint's answer is not JSON: {e}"),
        })?;
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OciError::Http {
                url: realm.clone(),
                message: "the token endpoint's answer holds no token".into(),
            })
    }
}

/// Reads at most `limit` bytes of the body; more is an error, not a truncation.
fn read_limited(
    response: ureq::http::Response<ureq::Body>,
    limit: u64,
    url: &str,
) -> Result<Vec<u8>, OciError> {
    let mut bytes = Vec::new();
    response
        .into_body()
        .into_reader()
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| OciError::Http {
            url: url.to_owned(),
            message: format!("reading the body failed: {e}"),
        })?;
    if bytes.len() as u64 > limit {
        return Err(OciError::Http {
            url: url.to_owned(),
            message: format!("the body is over the limit of {limit} bytes"),
        });
    }
    Ok(bytes)
}

/// `WWW-Authenticate: Bearer realm="…",service="…",scope="…"`.
#[derive(Debug, PartialEq, Eq)]
struct Challenge {
    realm: String,
    service: Option<String>,
    scope: Option<String>,
}

impl Challenge {
    fn parse(header: &str) -> Option<Challenge> {
        let (scheme, params) = header.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let mut realm = None;
        let mut service = None;
        let mut scope = None;
        let mut rest = params.trim();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let (value, after) = match after.strip_prefix('"') {
                Some(quoted) => {
                    let end = quoted.find('"')?;
                    (&quoted[..end], &quoted[end + 1..])
                }
                None => after.split_once(',').unwrap_or((after, "")),
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "realm" => realm = Some(value.to_owned()),
                "service" => service = Some(value.to_owned()),
                "scope" => scope = Some(value.to_owned()),
                _ => {}
            }
            rest = after.trim_start_matches([',', ' ']);
        }
        Some(Challenge {
            realm: realm?,
            service,
            scope,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let ok: &[(&str, &str, &str, &str, &str)] = &[
            (
                "oci://ghcr.io/org/policies:v1",
                "https",
                "ghcr.io",
                "org/policies",
                "v1",
            ),
            (
                "oci://127.0.0.1:5000/behavry/bundle:latest",
                "http",
                "127.0.0.1:5000",
                "behavry/bundle",
                "latest",
            ),
            (
                "oci://localhost:5000/b:1.0",
                "http",
                "localhost:5000",
                "b",
                "1.0",
            ),
            ("oci://[::1]:5000/b:t", "http", "[::1]:5000", "b", "t"),
            (
                "oci://registry.example.com:5000/b:t",
                "https",
                "registry.example.com:5000",
                "b",
                "t",
            ),
            (
                "oci://r.example.com/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "https",
                "r.example.com",
                "b",
                "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
        ];
        for (url, scheme, registry, repository, reference) in ok {
            let r = Reference::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(
                (
                    r.scheme,
                    r.registry.as_str(),
                    r.repository.as_str(),
                    r.reference.as_str()
                ),
                (*scheme, *registry, *repository, *reference),
                "{url}"
            );
            assert_eq!(r.to_string(), *url);
        }
        let bad: &[(&str, &str)] = &[
            ("https://ghcr.io/org/p:v1", "oci://"),
            ("oci://ghcr.io", "no repository"),
            ("oci://ghcr.io/org/p", "no tag"),
            ("oci://ghcr.io/org/p:", "tag is not valid"),
            ("oci://ghcr.io/Org/p:v1", "repository may hold"),
            ("oci://ghcr.io/org/../p:v1", "repository may hold"),
            ("oci://ghcr.io/org//p:v1", "repository may hold"),
            ("oci://ghcr.io/org/p:v1?x", "tag is not valid"),
            ("oci://ghcr.io/org/p@sha256:00", "tag is not valid"),
            ("oci://ghcr.io/org/p@md5:00", "tag is not valid"),
            ("oci:///org/p:v1", "no registry host"),
            ("oci://user@ghcr.io/org/p:v1", "no registry host"),
        ];
        for (url, words) in bad {
            let err = Reference::parse(url).unwrap_err().to_string();
            assert!(err.contains(words), "{url}: {err}");
        }
    }

    #[test]
    fn http_only_to_loopback() {
        for host in [
            "127.0.0.1:1",
            "127.1.2.3",
            "localhost",
            "[::1]:80",
            "LOCALHOST:5",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "10.0.0.1",
            "localhost.example.com",
            "[::2]",
            "example.com:80",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    /// A self-signed test CA (public certificate only).

    #[test]
    fn parses_bearer_challenges() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:org/p:pull""#
            ),
            Some(Challenge {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scope: Some("repository:org/p:pull".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"Bearer realm="https://a/t""#).map(|c| c.realm),
            Some("https://a/t".into())
        );
        assert_eq!(Challenge::parse(r#"Basic realm="x""#), None);
        assert_eq!(Challenge::parse(r#"Bearer service="x""#), None);
        assert_eq!(Challenge::parse(r#"Bearer realm="unterminated"#), None);
    }
}
