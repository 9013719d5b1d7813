//! `behavry bundle status`: per configured bundle, what the store holds (revision, digest, ETag,
//! signer, when fetched and checked, the last error), which process polls the host (the lease),
//! and whether the stored archive is the one the wrappers enforce.

use std::io::Write;

use serde::Serialize;

use crate::audit::bundles::StoredBundle;
use crate::audit::Store;
use crate::config::{Config, Paths};
use crate::pull::source::Source;
use crate::pull::verify::Verifier;
use crate::team::BundleConfig;

/// Show each configured team bundle: revision, digest, signer, last fetch and error, lease
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry bundle status\n  \
    behavry bundle status --json\n\n\
    `active` means the stored archive comes from the configured url and passes this machine's \
    checks (limits, layout, signature): every wrapper enforces it, and a wrapper that starts uses \
    it at once. The lease holder is the one process on this machine that polls the host.")]
pub(super) struct StatusArgs {
    /// One JSON object per bundle, one per line
    #[arg(long)]
    json: bool,
}

/// One bundle's status, as printed with `--json`.
#[derive(Debug, Serialize)]
struct Status {
    name: String,
    url: String,
    required: bool,
    revision: Option<String>,
    sha256: Option<String>,
    etag: Option<String>,
    signer: Option<String>,
    fetched_at: Option<String>,
    checked_at: Option<String>,
    last_error: Option<String>,
    /// The running process that holds the lease on polling the host.
    lease_holder: Option<i64>,
    active: bool,
    /// Why the stored archive is not active, when there is one.
    inactive_reason: Option<String>,
}

pub(super) fn run(args: StatusArgs) -> anyhow::Result<i32> {
    let paths = Paths::resolve()?;
    let config = Config::load(&paths.config_file())?;
    if config.bundles.is_empty() {
        anyhow::bail!(
            "no team bundle is configured; add [bundles.NAME] url = \"…\" to {} (see docs/teams.md)",
            paths.config_file().display()
        );
    }
    let db = paths.database();
    // Without a database nothing was fetched yet: every bundle shows as never fetched.
    let store = if db.exists() {
        Some(Store::open(&db)?)
    } else {
        None
    };
    let verifier = Verifier::new(&config.keys);
    let now = crate::pull::unix_now();
    let mut out = std::io::stdout().lock();
    for (name, cfg) in &config.bundles {
        let row = match &store {
            Some(store) => store.bundle(name)?,
            None => None,
        };
        let status = status(name, cfg, row, &verifier, now);
        if args.json {
            serde_json::to_writer(&mut out, &status)?;
            writeln!(out)?;
        } else {
            print(&mut out, &status)?;
        }
    }
    Ok(0)
}

fn status(
    name: &str,
    cfg: &BundleConfig,
    row: Option<StoredBundle>,
    verifier: &Verifier,
    now: i64,
) -> Status {
    // A row left from another url is not this bundle: it is reset at the next poll.
    let row = row.filter(|r| r.url == cfg.url).unwrap_or_default();
    let lease_holder = row
        .lease_pid
        .filter(|_| row.lease_expires_at.is_some_and(|e| e > now))
        .filter(|pid| {
            u32::try_from(*pid)
                .is_ok_and(|pid| crate::audit::store::Owner { pid, start: 0 }.is_alive())
        });
    let (active, inactive_reason) = match (&row.archive, Source::parse(&cfg.url)) {
        (_, Err(e)) => (false, Some(e.to_string())),
        (None, Ok(_)) => (false, Some("nothing downloaded yet".to_owned())),
        (Some(archive), Ok(_)) => match verifier.verify(name, archive, cfg) {
            Ok(_) => (true, None),
            Err(e) => (false, Some(e)),
        },
    };
    Status {
        name: name.to_owned(),
        url: cfg.url.clone(),
        required: cfg.required,
        revision: row.revision,
        sha256: row.sha256,
        etag: row.etag,
        signer: row.signer,
        fetched_at: row.fetched_at,
        checked_at: row.checked_at,
        last_error: row.last_error,
        lease_holder,
        active,
        inactive_reason,
    }
}

fn print(out: &mut impl Write, s: &Status) -> std::io::Result<()> {
    let or = |v: &Option<String>, none: &str| {
        v.as_deref()
            .map_or(none.to_owned(), |v| crate::display::escape(v).into_owned())
    };
    writeln!(
        out,
        "{}{}",
        s.name,
        if s.required { " (required)" } else { "" }
    )?;
    writeln!(out, "  url:          {}", crate::display::escape(&s.url))?;
    writeln!(out, "  revision:     {}", or(&s.revision, "none"))?;
    writeln!(out, "  sha256:       {}", or(&s.sha256, "none"))?;
    writeln!(out, "  etag:         {}", or(&s.etag, "none"))?;
    writeln!(out, "  signer:       {}", or(&s.signer, "none (unsigned)"))?;
    writeln!(out, "  fetched at:   {}", or(&s.fetched_at, "never"))?;
    writeln!(out, "  last checked: {}", or(&s.checked_at, "never"))?;
    writeln!(out, "  last error:   {}", or(&s.last_error, "none"))?;
    match s.lease_holder {
        Some(pid) => writeln!(out, "  lease holder: pid {pid}")?,
        None => writeln!(
            out,
            "  lease holder: none (the next wrapper to poll takes it)"
        )?,
    }
    match &s.inactive_reason {
        None => writeln!(out, "  active:       yes")?,
        Some(why) => writeln!(out, "  active:       no ({})", crate::display::escape(why))?,
    }
    Ok(())
}
