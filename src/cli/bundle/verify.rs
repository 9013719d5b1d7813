//! `behavry bundle verify FILE`: the checks a wrapper makes before activating a bundle (limits,
//! entries, signature, manifest, roots), then compiling it with its data and running its
//! `*_test.rego` tests. Prints what it found; exit 1 on any failure.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::bundle::{self, Keys};
use crate::config::{Config, Paths};
use crate::policy::source::{Kind, SourceFile, Sources};
use crate::policy::{testing, PolicySet};
use crate::team::{BundleConfig, Signing};

/// A test may take longer than a decision on the proxy path, but not forever.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Check a bundle archive as a wrapper would, compile it and run its tests
#[derive(Debug, clap::Args)]
#[command(
    after_help = "With --bundle NAME, the limits, signing and keys of [bundles.NAME] in \
    config.toml apply; with --key, the flags give them. Without either, a signed bundle is refused \
    (as OPA refuses it): say which key checks it."
)]
pub(super) struct VerifyArgs {
    /// The bundle archive (.tar.gz)
    file: PathBuf,
    /// Check it as [bundles.NAME] in config.toml says (limits, signing, keys)
    #[arg(long, value_name = "NAME", conflicts_with = "key")]
    bundle: Option<String>,
    /// A PEM public key (-----BEGIN PUBLIC KEY-----) that must have signed it
    #[arg(long, value_name = "PEM", requires_all = ["algorithm", "keyid"])]
    key: Option<PathBuf>,
    /// The key's algorithm: RS256, RS384, RS512, PS256, ES256, ES384
    #[arg(long, value_name = "ALG", requires = "key")]
    algorithm: Option<String>,
    /// The key id the signature must name (or be checked under)
    #[arg(long, value_name = "ID", requires = "key")]
    keyid: Option<String>,
    /// The scope the signature must carry
    #[arg(long, value_name = "SCOPE", requires = "key")]
    scope: Option<String>,
}

pub(super) fn run(args: VerifyArgs) -> anyhow::Result<i32> {
    let (name, cfg, keys) = match setup(&args) {
        Ok(setup) => setup,
        Err(e) => {
            crate::note!("{e}");
            return Ok(1);
        }
    };
    let packed = std::fs::read(&args.file)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", args.file.display()))?;
    let bundle = match bundle::load(&packed, &name, &cfg, &keys) {
        Ok(bundle) => bundle,
        Err(e) => {
            crate::note!("{}: refused: {e}", args.file.display());
            return Ok(1);
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "bundle:   {}", args.file.display())?;
    writeln!(out, "sha256:   {}", bundle.sha256)?;
    writeln!(out, "revision: {}", bundle.manifest.revision)?;
    let roots: Vec<String> = bundle
        .manifest
        .roots
        .iter()
        .map(|r| format!("{r:?}"))
        .collect();
    writeln!(out, "roots:    {}", roots.join(", "))?;
    match &bundle.signer {
        Some(keyid) => writeln!(out, "signer:   {keyid} (signature verified)")?,
        None => writeln!(out, "signer:   none (unsigned)")?,
    }
    writeln!(out, "files:")?;
    for (file, size) in &bundle.files {
        writeln!(out, "  {file} ({size} bytes)")?;
    }
    let set = compile(&bundle);
    let Some(engine) = set.engine() else {
        out.flush()?;
        for d in set.diagnostics() {
            for line in d.render().lines() {
                crate::note!("{}", crate::display::escape(line));
            }
        }
        crate::note!("the bundle's policies do not compile; no test was run");
        return Ok(1);
    };
    let cases = testing::cases(engine);
    let (mut passed, mut failed) = (0, 0);
    for case in &cases {
        let report = testing::run(engine, case);
        match &report.outcome {
            testing::Outcome::Pass => passed += 1,
            testing::Outcome::Fail { value } => {
                failed += 1;
                writeln!(
                    out,
                    "FAIL {}:{}: {} ({})",
                    case.file,
                    case.line,
                    case.path,
                    crate::display::escape(&value.to_string())
                )?;
            }
            testing::Outcome::Error(d) => {
                failed += 1;
                writeln!(
                    out,
                    "FAIL {}:{}: {} (error)",
                    case.file, case.line, case.path
                )?;
                for line in d.render().lines() {
                    writeln!(out, "    {}", crate::display::escape(line))?;
                }
            }
        }
    }
    writeln!(out, "tests:    {passed} passed, {failed} failed")?;
    Ok(if failed > 0 { 1 } else { 0 })
}

/// The bundle's name, its settings and the keys, from config.toml or the flags.
fn setup(args: &VerifyArgs) -> anyhow::Result<(String, BundleConfig, Keys)> {
    if let Some(name) = &args.bundle {
        let paths = Paths::resolve()?;
        let config = Config::load(&paths.config_file())?;
        let cfg = config.bundles.get(name).cloned().ok_or_else(|| {
            anyhow::anyhow!(
                "no [bundles.{name}] in {}; name a configured bundle or pass --key",
                paths.config_file().display()
            )
        })?;
        let keys = Keys::load(&config.keys)?;
        return Ok((name.clone(), cfg, keys));
    }
    let mut cfg: BundleConfig = serde_json::from_value(serde_json::json!({"url": ""}))?;
    let mut keys = Keys::default();
    if let (Some(key), Some(alg), Some(keyid)) = (&args.key, &args.algorithm, &args.keyid) {
        let algorithm =
            bundle::parse_algorithm(alg).map_err(|e| anyhow::anyhow!("--algorithm {e}"))?;
        let pem = std::fs::read_to_string(key)
            .map_err(|e| anyhow::anyhow!("--key {}: cannot read: {e}", key.display()))?;
        keys.insert_pem(keyid, algorithm, &pem)
            .map_err(|e| anyhow::anyhow!("--key {}: {e}", key.display()))?;
        cfg.signing = Some(Signing {
            keyid: keyid.clone(),
            scope: args.scope.clone(),
        });
    }
    Ok(("file".into(), cfg, keys))
}

/// Compiles the bundle's modules (tests included) with its data, as one policy set.
fn compile(bundle: &bundle::Bundle) -> PolicySet {
    let mut files: Vec<SourceFile> = bundle
        .modules
        .iter()
        .map(|m| SourceFile {
            path: PathBuf::from(&m.name),
            kind: Kind::Rego,
            text: m.text.clone(),
        })
        .collect();
    // The data is already placed where OPA puts it; merged at the root of `data` it lands there.
    files.push(SourceFile {
        path: PathBuf::from("data.json"),
        kind: Kind::Data,
        text: bundle.data.to_string(),
    });
    PolicySet::from_scan(
        Sources {
            files,
            problems: Vec::new(),
        },
        TEST_TIMEOUT,
    )
}
