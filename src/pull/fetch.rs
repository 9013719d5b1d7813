//! One download of a bundle archive, as OPA's downloader does it: `If-None-Match` with the last
//! ETag (a 304 means nothing new), `Prefer: modes=snapshot,delta`, and a long poll (`Prefer:
//! wait=N`) only once the server has answered with OPA's bundle content type, since a plain
//! static host would not hold the request. The body is read up to `max_bytes` and no further.

use std::io::Read;
use std::time::Duration;

use super::source::Source;
use crate::team::BundleConfig;

/// The content type of OPA's bundle servers; only they understand long polls.
pub const BUNDLE_CONTENT_TYPE: &str = "application/vnd.openpolicyagent.bundles";

/// How long one download may take, beside any long poll.
const TIMEOUT: Duration = Duration::from_secs(60);

/// What one poll found.
#[derive(Debug)]
pub enum Fetched {
    /// The archive is the one we have (304, or the same ETag).
    NotModified { bundle_server: bool },
    /// A new archive.
    New {
        bytes: Vec<u8>,
        etag: Option<String>,
        /// The server answered with OPA's bundle content type: long polls may follow.
        bundle_server: bool,
    },
}

/// Downloads `source` unless it still has `etag`. `long_poll` asks the server to hold the request
/// until something changes (only for a server known to speak OPA's protocol).
pub fn fetch(
    config: &BundleConfig,
    source: &Source,
    etag: Option<&str>,
    long_poll: bool,
) -> Result<Fetched, String> {
    match source {
        Source::Http(url) => fetch_http(config, url, etag, long_poll),
        Source::File(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let bytes = read_capped(file, config.max_bytes)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Ok(Fetched::New {
                bytes,
                etag: None,
                bundle_server: false,
            })
        }
        Source::Oci(reference) => fetch_oci(config, reference, etag),
    }
}

/// The registry's manifest names the layer by digest; the digest is the ETag, so an unchanged
/// tag costs one manifest request and no download.
fn fetch_oci(
    config: &BundleConfig,
    reference: &str,
    etag: Option<&str>,
) -> Result<Fetched, String> {
    let token = match &config.token_file {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read token_file {}: {e}", file.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let options = crate::oci::PullOptions {
        max_bytes: config.max_bytes,
        token,
        ca_file: config.ca_file.clone(),
    };
    match crate::oci::pull(&format!("oci://{reference}"), etag, &options) {
        Ok(crate::oci::Pulled::NotModified) => Ok(Fetched::NotModified {
            bundle_server: false,
        }),
        Ok(crate::oci::Pulled::Archive { bytes, digest }) => Ok(Fetched::New {
            bytes,
            etag: Some(digest),
            bundle_server: false,
        }),
        Err(e) => Err(e.to_string()),
    }
}

fn fetch_http(
    config: &BundleConfig,
    url: &str,
    etag: Option<&str>,
    long_poll: bool,
) -> Result<Fetched, String> {
    let wait = config.long_poll_secs.filter(|_| long_poll);
    let mut builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        // Redirects to another host are the host's business, but never down to plain http.
        .https_only(url.starts_with("https://"))
        .timeout_global(Some(TIMEOUT + Duration::from_secs(wait.unwrap_or(0))))
        .user_agent(concat!("behavry/", env!("CARGO_PKG_VERSION")));
    if let Some(ca_file) = &config.ca_file {
        builder = builder.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(
                    crate::tls::roots_with(ca_file)
                        .map_err(|e| format!("ca_file {}: {e}", ca_file.display()))?,
                )
                .build(),
        );
    }
    let agent = builder.build().new_agent();
    let mut request = agent.get(url).header("Prefer", "modes=snapshot,delta");
    if let Some(wait) = wait {
        request = request.header("Prefer", format!("wait={wait}"));
    }
    if let Some(etag) = etag {
        request = request.header("If-None-Match", etag);
    }
    if let Some(token_file) = &config.token_file {
        let token = std::fs::read_to_string(token_file)
            .map_err(|e| format!("cannot read token_file {}: {e}", token_file.display()))?;
        request = request.header("Authorization", format!("Bearer {}", token.trim()));
    }
    let mut response = request.call().map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let bundle_server =
        header("content-type").is_some_and(|t| t.trim().starts_with(BUNDLE_CONTENT_TYPE));
    let new_etag = header("etag");
    match status {
        304 => Ok(Fetched::NotModified { bundle_server }),
        200 => {
            if new_etag.is_some() && new_etag.as_deref() == etag {
                return Ok(Fetched::NotModified { bundle_server });
            }
            let limit = config.max_bytes;
            let bytes = response
                .body_mut()
                .with_config()
                .limit(limit)
                .read_to_vec()
                .map_err(|e| match e {
                    ureq::Error::BodyExceedsLimit(_) => format!(
                        "GET {url}: the archive is larger than max_bytes ({limit} bytes); raise max_bytes in [bundles] if it is meant to be"
                    ),
                    e => format!("GET {url}: reading the archive failed: {e}"),
                })?;
            Ok(Fetched::New {
                bytes,
                etag: new_etag,
                bundle_server,
            })
        }
        401 | 403 => Err(format!(
            "GET {url}: HTTP {status}: the host refused the credentials (check token_file)"
        )),
        _ => Err(format!("GET {url}: HTTP {status}")),
    }
}

/// Reads at most `limit` bytes; more is an error, found without reading the rest.
fn read_capped(reader: impl Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "the archive is larger than max_bytes ({limit} bytes)"
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_limit_and_no_further() {
        assert_eq!(read_capped(&b"abcd"[..], 4).unwrap(), b"abcd");
        let err = read_capped(&b"abcde"[..], 4).unwrap_err();
        assert!(err.to_string().contains("max_bytes (4 bytes)"), "{err}");
    }
}
