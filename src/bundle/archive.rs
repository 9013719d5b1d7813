//! Reads a bundle archive (`.tar.gz`) in memory, refusing what could escape or exhaust.
//!
//! Names lose their leading `/` (`opa build` writes `/data.json`); `..`, a name still absolute
//! after that, links, devices and a second file of the same name are refused. The packed size is
//! checked before anything is inflated; the unpacked size is counted as bytes come out of the
//! inflater (headers included), and entries as they are met, so a header's claimed size is never
//! trusted. Directories are skipped, as OPA skips them.

use std::io::Read;

use super::{BundleError, ErrorKind};

/// The limits an archive is read under (`[bundles.NAME] max_bytes`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_unpacked_bytes: u64,
    pub max_entries: u64,
}

impl Limits {
    pub fn of(cfg: &crate::team::BundleConfig) -> Limits {
        Limits {
            max_bytes: cfg.max_bytes,
            max_unpacked_bytes: cfg.max_unpacked_bytes,
            max_entries: cfg.max_entries,
        }
    }
}

/// One regular file of an archive: its name without the leading `/`, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Every regular file in `packed`, in archive order.
pub fn read(packed: &[u8], limits: Limits) -> Result<Vec<Entry>, BundleError> {
    if packed.len() as u64 > limits.max_bytes {
        return Err(BundleError::new(
            ErrorKind::Limit,
            None,
            format!(
                "the archive is {} bytes packed, over max_bytes = {}; raise max_bytes in [bundles.NAME] if it is expected",
                packed.len(),
                limits.max_bytes
            ),
        ));
    }
    let inflated = Counted {
        inner: flate2::read::MultiGzDecoder::new(packed),
        read: 0,
        limit: limits.max_unpacked_bytes,
    };
    let mut archive = tar::Archive::new(inflated);
    let entries = archive.entries().map_err(|e| broken(&e))?;
    let mut out: Vec<Entry> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut count: u64 = 0;
    for entry in entries {
        let mut entry = entry.map_err(|e| broken(&e))?;
        count += 1;
        if count > limits.max_entries {
            return Err(BundleError::new(
                ErrorKind::Limit,
                None,
                format!(
                    "the archive holds more than max_entries = {} entries; raise max_entries in [bundles.NAME] if it is expected",
                    limits.max_entries
                ),
            ));
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous => {}
            T::Directory | T::XGlobalHeader => continue,
            T::Symlink | T::Link => {
                return Err(refused(
                    &shown,
                    "is a link; bundles may hold regular files only",
                ))
            }
            T::Char | T::Block | T::Fifo => {
                return Err(refused(
                    &shown,
                    "is a device or pipe; bundles may hold regular files only",
                ))
            }
            other => {
                return Err(refused(
                    &shown,
                    &format!(
                        "has tar entry type {:?}; bundles may hold regular files only",
                        other.as_byte() as char
                    ),
                ))
            }
        }
        let name = normalize(&raw).map_err(|why| refused(&shown, why))?;
        if !seen.insert(name.clone()) {
            return Err(refused(
                &name,
                "appears twice in the archive; which one counts would be ambiguous",
            ));
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| broken(&e))?;
        out.push(Entry { name, bytes });
    }
    Ok(out)
}

/// The name an entry is known by: without the leading `/` (and `./`), checked to stay inside.
fn normalize(raw: &[u8]) -> Result<String, &'static str> {
    let text = std::str::from_utf8(raw).map_err(|_| "has a name that is not UTF-8")?;
    let text = text.strip_prefix('/').unwrap_or(text);
    let mut parts = Vec::new();
    for (i, part) in text.split('/').enumerate() {
        match part {
            "" if i == 0 => return Err("has an absolute name (after its leading `/`)"),
            "" => return Err("has an empty path segment (`//` or a trailing `/`)"),
            "." => {}
            ".." => return Err("has a `..` segment; names must stay inside the bundle"),
            _ if part.contains('\\') || part.contains('\0') => {
                return Err("has a backslash or NUL in its name")
            }
            // Names are printed (`bundle verify`, errors, the log): one that carries terminal
            // controls or invisible formatting would act on the reader's terminal.
            _ if part.chars().any(crate::display::is_unsafe) => {
                return Err("has a control or invisible formatting character in its name")
            }
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err("has an empty name");
    }
    Ok(parts.join("/"))
}

fn refused(name: &str, why: &str) -> BundleError {
    BundleError::new(ErrorKind::Archive, Some(name.to_string()), why.to_string())
}

/// A read error from the inflater or the tar reader; the unpacked limit shows up here too.
fn broken(e: &std::io::Error) -> BundleError {
    if let Some(over) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<OverLimit>())
    {
        return BundleError::new(
            ErrorKind::Limit,
            None,
            format!(
                "the archive unpacks to more than max_unpacked_bytes = {}; raise max_unpacked_bytes in [bundles.NAME] if it is expected",
                over.0
            ),
        );
    }
    BundleError::new(
        ErrorKind::Archive,
        None,
        format!("not a readable .tar.gz archive: {e}"),
    )
}

#[derive(Debug)]
struct OverLimit(u64);

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unpacked size over {} bytes", self.0)
    }
}

impl std::error::Error for OverLimit {}

/// Counts what the inflater yields and fails once it passes `limit`.
struct Counted<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(std::io::Error::other(OverLimit(self.limit)));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: Limits = Limits {
        max_bytes: 1 << 20,
        max_unpacked_bytes: 1 << 20,
        max_entries: 100,
    };

    /// A `.tar.gz` of raw headers, so tests can write what a careful writer would refuse.
    fn tarball(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, body) in entries {
            let mut header = tar::Header::new_gnu();
            // set_path refuses `..`; write the name bytes directly, as an attacker would.
            let bytes = name.as_bytes();
            header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            header.set_entry_type(*kind);
            header.set_size(body.len() as u64);
            header.set_mode(0o600);
            if *kind == tar::EntryType::Symlink {
                header.set_link_name("/etc/passwd").unwrap();
            }
            header.set_cksum();
            builder.append(&header, *body).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    fn err(packed: &[u8], limits: Limits) -> String {
        read(packed, limits).unwrap_err().to_string()
    }

    use tar::EntryType as T;

    #[test]
    fn strips_the_leading_slash_and_skips_directories() {
        let packed = tarball(&[
            ("/", T::Directory, b""),
            ("/data.json", T::Regular, b"{}"),
            ("./a/b.rego", T::Regular, b"package a"),
        ]);
        let names: Vec<String> = read(&packed, ROOMY)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["data.json", "a/b.rego"]);
    }

    #[test]
    fn refuses_what_could_escape() {
        for (name, kind, want) in [
            ("../x.rego", T::Regular, "`..`"),
            ("/a/../../x.rego", T::Regular, "`..`"),
            ("//etc/x.rego", T::Regular, "absolute"),
            ("a//x.rego", T::Regular, "empty path segment"),
            ("/link.rego", T::Symlink, "is a link"),
            ("/hard.rego", T::Link, "is a link"),
            ("/dev.rego", T::Char, "device"),
            ("/fifo.rego", T::Fifo, "device or pipe"),
        ] {
            let e = err(&tarball(&[(name, kind, b"")]), ROOMY);
            assert!(e.contains(want), "{name}: {e}");
        }
    }

    #[test]
    fn refuses_names_that_would_drive_a_terminal() {
        for name in [
            "/a\u{1b}]0;pwn\u{7}.rego",
            "/b\rc.rego",
            "/gol\u{202e}txt.rego",
        ] {
            let packed = tarball(&[(name, T::Regular, b"package a\n")]);
            let e = err(&packed, ROOMY);
            assert!(
                e.contains("control or invisible formatting character"),
                "{e}"
            );
            assert!(
                !e.chars().any(crate::display::is_unsafe),
                "printed raw: {e:?}"
            );
        }
    }

    #[test]
    fn refuses_duplicate_names_even_spelled_differently() {
        let packed = tarball(&[
            ("/data.json", T::Regular, b"{}"),
            ("data.json", T::Regular, b"{\"a\":1}"),
        ]);
        assert!(err(&packed, ROOMY).contains("data.json: appears twice"));
    }

    #[test]
    fn enforces_each_limit_while_reading() {
        let big = vec![b'x'; 4096];
        let packed = tarball(&[("/a.rego", T::Regular, &big), ("/b.rego", T::Regular, b"")]);
        let packed_len = packed.len() as u64;
        let e = err(
            &packed,
            Limits {
                max_bytes: packed_len - 1,
                ..ROOMY
            },
        );
        assert!(e.contains("over max_bytes"), "{e}");
        let e = err(
            &packed,
            Limits {
                max_unpacked_bytes: 4096,
                ..ROOMY
            },
        );
        assert!(e.contains("max_unpacked_bytes"), "{e}");
        let e = err(
            &packed,
            Limits {
                max_entries: 1,
                ..ROOMY
            },
        );
        assert!(e.contains("max_entries"), "{e}");
        assert_eq!(read(&packed, ROOMY).unwrap().len(), 2);
    }

    #[test]
    fn a_gzip_bomb_is_cut_off_by_the_count() {
        // A tiny packed stream that inflates past the limit.
        let zeros = vec![0u8; 1 << 20];
        let packed = tarball(&[("/a.rego", T::Regular, &zeros)]);
        assert!(packed.len() < 8192);
        let e = err(
            &packed,
            Limits {
                max_unpacked_bytes: 1 << 16,
                ..ROOMY
            },
        );
        assert!(e.contains("max_unpacked_bytes"), "{e}");
    }

    #[test]
    fn garbage_is_an_archive_error() {
        assert!(err(b"not gzip", ROOMY).contains("not a readable .tar.gz"));
    }
}
