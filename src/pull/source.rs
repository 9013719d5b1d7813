//! Where a bundle comes from: the URL rules, pure. `https://` anywhere; `http://` only to this
//! machine (a policy fetched in clear text from elsewhere could be swapped on the way — a
//! signature would catch it, but an unsigned bundle would not); `file://`; `oci://` for registries.

use std::net::IpAddr;
use std::path::PathBuf;

/// A parsed bundle URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Fetched over HTTP(S) with ETags: the URL as configured.
    Http(String),
    /// A local archive, read at each poll.
    File(PathBuf),
    /// An OCI registry reference (`registry/repo:tag`), pulled through `crate::oci`.
    Oci(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("bundle url {0:?}: plain http:// is allowed only to this machine (127.0.0.1, ::1, localhost); use https://")]
    PlainHttp(String),
    #[error("bundle url {0:?}: use https://, http:// (this machine only), file:// or oci://")]
    Scheme(String),
    #[error(
        "bundle url {0:?}: a file:// url needs an absolute path (file:///path/to/bundle.tar.gz)"
    )]
    RelativeFile(String),
    #[error("bundle url {0:?} names no host")]
    NoHost(String),
}

impl Source {
    pub fn parse(url: &str) -> Result<Source, UrlError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| UrlError::Scheme(url.to_owned()))?;
        match scheme.to_ascii_lowercase().as_str() {
            "https" => {
                host_of(rest).ok_or_else(|| UrlError::NoHost(url.to_owned()))?;
                Ok(Source::Http(url.to_owned()))
            }
            "http" => {
                let host = host_of(rest).ok_or_else(|| UrlError::NoHost(url.to_owned()))?;
                if is_loopback(host) {
                    Ok(Source::Http(url.to_owned()))
                } else {
                    Err(UrlError::PlainHttp(url.to_owned()))
                }
            }
            "file" => {
                // `file:///abs` (empty host) or `file://localhost/abs`.
                let path = rest.strip_prefix("localhost").unwrap_or(rest);
                if path.starts_with('/') {
                    Ok(Source::File(PathBuf::from(path)))
                } else {
                    Err(UrlError::RelativeFile(url.to_owned()))
                }
            }
            "oci" => {
                host_of(rest).ok_or_else(|| UrlError::NoHost(url.to_owned()))?;
                Ok(Source::Oci(rest.to_owned()))
            }
            _ => Err(UrlError::Scheme(url.to_owned())),
        }
    }
}

/// The host of `authority/path…` (without userinfo or port; IPv6 without brackets).
fn host_of(rest: &str) -> Option<&str> {
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_rules() {
        let ok = |u: &str| Source::parse(u).unwrap();
        let http = |u: &str| Source::Http(u.to_owned());
        let table: &[(&str, Result<Source, UrlError>)] = &[
            (
                "https://p.example.com/b.tar.gz",
                Ok(http("https://p.example.com/b.tar.gz")),
            ),
            (
                "http://127.0.0.1:8080/b.tar.gz",
                Ok(http("http://127.0.0.1:8080/b.tar.gz")),
            ),
            ("http://127.9.9.9/b", Ok(http("http://127.9.9.9/b"))),
            ("http://[::1]:81/b", Ok(http("http://[::1]:81/b"))),
            ("http://LocalHost/b", Ok(http("http://LocalHost/b"))),
            (
                "http://example.com/b",
                Err(UrlError::PlainHttp("http://example.com/b".into())),
            ),
            // Userinfo that looks like loopback does not make the host loopback.
            (
                "http://127.0.0.1@evil.example/b",
                Err(UrlError::PlainHttp(
                    "http://127.0.0.1@evil.example/b".into(),
                )),
            ),
            (
                "http://localhost.evil.example/b",
                Err(UrlError::PlainHttp(
                    "http://localhost.evil.example/b".into(),
                )),
            ),
            (
                "http://10.0.0.1/b",
                Err(UrlError::PlainHttp("http://10.0.0.1/b".into())),
            ),
            (
                "file:///srv/b.tar.gz",
                Ok(Source::File("/srv/b.tar.gz".into())),
            ),
            ("file://localhost/srv/b", Ok(Source::File("/srv/b".into()))),
            (
                "file://b.tar.gz",
                Err(UrlError::RelativeFile("file://b.tar.gz".into())),
            ),
            (
                "oci://ghcr.io/org/policy:v1",
                Ok(Source::Oci("ghcr.io/org/policy:v1".into())),
            ),
            ("ftp://x/b", Err(UrlError::Scheme("ftp://x/b".into()))),
            (
                "/srv/b.tar.gz",
                Err(UrlError::Scheme("/srv/b.tar.gz".into())),
            ),
            ("https:///b", Err(UrlError::NoHost("https:///b".into()))),
        ];
        for (url, want) in table {
            assert_eq!(&Source::parse(url), want, "{url}");
        }
        let _ = ok;
    }
}
