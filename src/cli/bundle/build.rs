//! `behavry bundle build DIR -o FILE`: a bundle laid out as `opa build -b DIR` writes it, signed
//! as `opa sign` signs it when a key is given (see [`crate::bundle::build`]).

use std::io::Write;
use std::path::PathBuf;

use crate::bundle::{self, build, PrivateKey};

/// Write an OPA bundle (.tar.gz) from a policy directory, optionally signed
#[derive(Debug, clap::Args)]
#[command(
    after_help = "DIR holds .rego files, data.json/data.yaml documents (placed at \
    data.<their directory>) and optionally a .manifest (revision, roots, metadata). The archive \
    is written as `opa build -b` writes it: /data.json, /<path>.rego, /.signatures.json, /.manifest; \
    entries sorted, mtime 0. A signing key is a PKCS#8 PEM private key (RSA or EC)."
)]
pub(super) struct BuildArgs {
    /// The policy directory
    dir: PathBuf,
    /// Where to write the archive
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// The bundle's revision (over .manifest's)
    #[arg(long, value_name = "R")]
    revision: Option<String>,
    /// A root the bundle owns (repeatable; over .manifest's roots)
    #[arg(long = "root", value_name = "PATH")]
    roots: Vec<String>,
    /// Sign with this PEM private key
    #[arg(long, value_name = "PEM", requires = "keyid")]
    signing_key: Option<PathBuf>,
    /// The key id written in the signature (`kid`)
    #[arg(long, value_name = "ID", requires = "signing_key")]
    keyid: Option<String>,
    /// The scope claim the signature carries
    #[arg(long, value_name = "SCOPE", requires = "signing_key")]
    scope: Option<String>,
    /// The signing algorithm: RS256, RS384, RS512, PS256, ES256, ES384
    #[arg(
        long,
        value_name = "ALG",
        default_value = "RS256",
        requires = "signing_key"
    )]
    algorithm: String,
}

pub(super) fn run(args: BuildArgs) -> anyhow::Result<i32> {
    let signing = match (&args.signing_key, &args.keyid) {
        (Some(path), Some(keyid)) => {
            let algorithm = bundle::parse_algorithm(&args.algorithm)
                .map_err(|e| anyhow::anyhow!("--algorithm {e}"))?;
            let pem = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("--signing-key {}: cannot read: {e}", path.display())
            })?;
            let key = PrivateKey::from_pem(algorithm, &pem)
                .map_err(|e| anyhow::anyhow!("--signing-key {}: {e}", path.display()))?;
            Some(build::Signing {
                key,
                keyid: keyid.clone(),
                scope: args.scope.clone(),
            })
        }
        _ => None,
    };
    let options = build::Options {
        revision: args.revision.clone(),
        roots: (!args.roots.is_empty()).then(|| args.roots.clone()),
        signing,
    };
    let packed = match build::build(&args.dir, &options) {
        Ok(packed) => packed,
        Err(e) => {
            crate::note!("{e}");
            return Ok(1);
        }
    };
    std::fs::write(&args.output, &packed)
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", args.output.display()))?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "wrote {} ({} bytes{})",
        args.output.display(),
        packed.len(),
        if options.signing.is_some() {
            ", signed"
        } else {
            ""
        }
    )?;
    Ok(0)
}
