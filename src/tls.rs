//! The certificates behavry's HTTPS clients trust: bundle hosts, registries and collectors.

use std::path::Path;

/// The built-in (Mozilla) roots plus every certificate in the PEM file `ca_file`: beside, not
/// instead of, them, so a host that redirects to public storage (S3, a CDN) still works. The
/// error says what is wrong with the file.
pub fn roots_with(ca_file: &Path) -> Result<ureq::tls::RootCerts, String> {
    Ok(ureq::tls::RootCerts::Specific(std::sync::Arc::new(
        certificates(ca_file)?,
    )))
}

fn certificates(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read the CA file: {e}"))?;
    let mut own = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let ureq::tls::PemItem::Certificate(cert) = item.map_err(|e| e.to_string())? {
            own.push(cert);
        }
    }
    if own.is_empty() {
        return Err("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    let mut certs: Vec<_> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    certs.extend(own);
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBiTCCAS+gAwIBAgIUI5eXgc9SpG257y7U/+TQWp8EpRcwCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPYmVoYXZyeSB0ZXN0IENBMB4XDTI2MTEyOTE1NTk1MloXDTM2
MTEyNjE1NTk1MlowGjEYMBYGA1UEAwwPYmVoYXZyeSB0ZXN0IENBMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEMsS/gO48seoElzwbAHC8N8VDRrvSi/lmrouLQMC5
e+G68kfDMEmhCaWmdGqBuX8AcEGdc4+6x9XEnAVEF/hrC6NTMFEwHQYDVR0OBBYE
FBSlbGOQoZs0QjLQxThxEaZubjfbMB8GA1UdIwQYMBaAFBSlbGOQoZs0QjLQxThx
EaZubjfbMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgOmVROYrt
1/fctZR+CC31/5dmmGcZhYhKWa3l/5XRlEACIQC3oPgwUiHKaPvsRsfpJ+xCDzts
qcDnhAAAVDzZaXK1PQ==
-----END CERTIFICATE-----
";

    #[test]
    fn a_ca_file_adds_to_the_built_in_roots() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, TEST_CA).unwrap();
        let certs = certificates(&file).unwrap();
        assert_eq!(
            certs.len(),
            webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() + 1
        );
        assert!(certs.last().unwrap().der().len() > 300);

        std::fs::write(&file, "not a certificate\n").unwrap();
        let err = certificates(&file).unwrap_err();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        let err = certificates(&dir.path().join("missing.pem")).unwrap_err();
        assert!(err.contains("cannot read the CA file"), "{err}");
    }
}
