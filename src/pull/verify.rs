//! From archive bytes to a bundle ready to activate, through [`crate::bundle::load`] (unpacked in
//! memory, limits, signature, manifest, roots). Every wrapper runs this on every archive it
//! activates, the one downloaded and the one read from the store alike: the store is only a
//! cache, and a wrapper trusts only its own `[keys]`.

use std::collections::BTreeMap;

use crate::bundle::{self, Bundle, Keys};
use crate::team::{BundleConfig, KeyConfig};

/// A bundle that passed every check, with the host's ETag for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub bundle: Bundle,
    pub etag: Option<String>,
}

impl Verified {
    pub fn name(&self) -> &str {
        &self.bundle.name
    }
    pub fn revision(&self) -> &str {
        &self.bundle.manifest.revision
    }
    pub fn sha256(&self) -> &str {
        &self.bundle.sha256
    }
}

/// The configured keys, read once per wrapper.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Result<Keys, String>,
}

impl Verifier {
    pub fn new(keys: &BTreeMap<String, KeyConfig>) -> Verifier {
        Verifier {
            keys: Keys::load(keys).map_err(|e| e.to_string()),
        }
    }

    /// Reads `packed` as bundle `name` configured by `config`; the error says why not.
    pub fn verify(
        &self,
        name: &str,
        packed: &[u8],
        config: &BundleConfig,
    ) -> Result<Verified, String> {
        let keys = self.keys.as_ref().map_err(Clone::clone)?;
        let bundle = bundle::load(packed, name, config, keys).map_err(|e| e.to_string())?;
        Ok(Verified { bundle, etag: None })
    }
}

/// SHA-256 of the archive bytes, hex (as [`Bundle::sha256`]).
pub fn digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    bundle::hex(&sha2::Sha256::digest(bytes))
}
