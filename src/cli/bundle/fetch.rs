//! `behavry bundle fetch [NAME]`: poll the team's host now instead of at the next scheduled poll.
//! It takes the lease as a wrapper's poll does (over a running holder's schedule, so one process
//! downloads at a time), downloads in full (no stored ETag: the store could hold an archive put
//! there by hand), verifies, stores, releases the lease and says what changed. The wrappers pick the stored archive up within a second.

use std::io::Write;

use crate::audit::Store;
use crate::config::{Config, Paths};
use crate::pull::source::Source;
use crate::pull::verify::Verifier;
use crate::pull::{fetch_and_store, lease_secs, unix_now, FetchError};
use crate::team::BundleConfig;

/// Download the team bundles now (all, or NAME), verify and store them for the wrappers
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry bundle fetch\n  \
    behavry bundle fetch org\n\n\
    Running wrappers activate what was stored within a second. Exits 1 when a download or its \
    verification failed; the last good archive stays in force and `behavry bundle status` shows \
    the error.")]
pub(super) struct FetchArgs {
    /// The bundle to fetch ([bundles.NAME] in config.toml); every configured one by default
    name: Option<String>,
}

/// How long the lease is held for one download (a wrapper takes it back once released).
const LEASE_SECS: i64 = crate::audit::bundles::MANUAL_LEASE_SECS;

pub(super) fn run(args: FetchArgs) -> anyhow::Result<i32> {
    let paths = Paths::resolve()?;
    let config = Config::load(&paths.config_file())?;
    let bundles: Vec<(&String, &BundleConfig)> = match &args.name {
        Some(name) => {
            let cfg = config.bundles.get_key_value(name).ok_or_else(|| {
                let known: Vec<&str> = config.bundles.keys().map(String::as_str).collect();
                anyhow::anyhow!(
                    "no [bundles.{name}] in {} (configured: {})",
                    paths.config_file().display(),
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )
            })?;
            vec![cfg]
        }
        None => config.bundles.iter().collect(),
    };
    if bundles.is_empty() {
        anyhow::bail!(
            "no team bundle is configured; add [bundles.NAME] url = \"…\" to {} (see docs/teams.md)",
            paths.config_file().display()
        );
    }
    let mut store = Store::open(&paths.database())?;
    let verifier = Verifier::new(&config.keys);
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for (name, cfg) in bundles {
        match fetch_one(&mut store, &verifier, name, cfg) {
            Ok(line) => writeln!(out, "{name}: {line}")?,
            Err(e) => {
                failed = true;
                out.flush()?;
                crate::note!("{name}: {}", crate::display::escape(&e));
            }
        }
    }
    Ok(i32::from(failed))
}

/// One bundle: lease, download, verify, store, release. The line says what changed.
fn fetch_one(
    store: &mut Store,
    verifier: &Verifier,
    name: &str,
    cfg: &BundleConfig,
) -> Result<String, String> {
    let source = Source::parse(&cfg.url).map_err(|e| e.to_string())?;
    let before = store.bundle(name).map_err(|e| e.to_string())?;
    let before = before.filter(|r| r.url == cfg.url && r.archive.is_some());
    let from = store
        // As long as a poller's, at least: a lease runs no further ahead than its holder's
        // would, or it is taken for one written into the store by hand.
        .take_over_bundle_lease(name, &cfg.url, unix_now(), LEASE_SECS.max(lease_secs(cfg)))
        .map_err(|e| format!("cannot take the bundle lease: {e}"))?;
    if let Some(pid) = from {
        crate::note!("{name}: took the polling lease over from pid {pid} for this download");
    }
    let result = fetch_and_store(store, verifier, name, cfg, &source, false, None);
    let recorded = match &result {
        Ok(_) => store.bundle_unchanged(name),
        Err(e) => store.bundle_failed(name, &cfg.url, e.message()),
    };
    let released = store.release_bundle_lease(name);
    let outcome = result.map_err(|e| match e {
        FetchError::Refused { sha256, error, .. } => {
            format!("refused the archive downloaded (sha256 {sha256}): {error}; the last good one stays")
        }
        FetchError::Failed(error) => error,
    })?;
    recorded.map_err(|e| e.to_string())?;
    released.map_err(|e| e.to_string())?;
    let after = store
        .bundle(name)
        .map_err(|e| e.to_string())?
        .filter(|r| r.archive.is_some());
    let revision = |r: &Option<crate::audit::bundles::StoredBundle>| {
        r.as_ref()
            .and_then(|r| r.revision.clone())
            .unwrap_or_else(|| "none".to_owned())
    };
    let describe = |r: &Option<crate::audit::bundles::StoredBundle>| {
        let r = r.as_ref();
        format!(
            "sha256 {}, signer {}",
            r.and_then(|r| r.sha256.as_deref()).unwrap_or("none"),
            r.and_then(|r| r.signer.as_deref())
                .unwrap_or("none (unsigned)")
        )
    };
    if !outcome.stored {
        return Ok(format!(
            "unchanged: revision {} ({})",
            revision(&after),
            describe(&after)
        ));
    }
    Ok(format!(
        "revision {} -> {} ({})",
        revision(&before),
        revision(&after),
        describe(&after)
    ))
}
