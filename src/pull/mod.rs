//! Team policy bundles pulled from the team's host, off the hot path and once per machine.
//!
//! Each wrapper runs one [`Puller`] thread. Wrappers sharing a database take a lease per bundle
//! (see `audit::bundles`): only the holder polls the host ([`fetch`], at a random delay in
//! `[min_delay_secs, max_delay_secs]`, backing off after errors, [`backoff`]), verifies what it
//! downloaded ([`verify`]) and stores it. Every wrapper, the holder included, notices a new archive
//! in the store by a digest compare, verifies it again with its own keys, and hands it to the
//! policy watcher, which composes it with the local files ([`activate`]), compiles, probes and
//! swaps, or keeps the last good set and says why. Nothing here touches a decision in flight.

pub mod activate;
pub mod backoff;
pub mod fetch;
pub mod source;
pub mod verify;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::audit::bundles::Fetched as Stored;
use crate::audit::Store;
use crate::team::BundleConfig;
use activate::Bundles;
use fetch::Fetched;
use source::Source;
use verify::{Verified, Verifier};

/// How often every wrapper looks in the store for an archive another one downloaded.
const CHECK: Duration = Duration::from_secs(1);

/// What the puller tells the policy watcher.
#[derive(Debug, Clone)]
pub enum Update {
    /// A new archive passed verification: activate it.
    Ready(Verified),
    /// A new archive was refused (layout, signature, limits): keep the last good one.
    Refused {
        name: String,
        sha256: Option<String>,
        etag: Option<String>,
        error: String,
    },
    /// The host could not be reached or refused (`None`: it answers again).
    Unreachable { name: String, error: Option<String> },
}

impl Bundles {
    /// The bundles of `config`, with every archive already in the store verified and active:
    /// start-up uses a stored bundle at once. `None` without `[bundles]`.
    pub fn load(config: &crate::config::Config, database: &std::path::Path) -> Option<Bundles> {
        if config.bundles.is_empty() {
            return None;
        }
        let mut bundles = Bundles {
            configs: config.bundles.clone(),
            local: config.local,
            active: BTreeMap::new(),
            errors: BTreeMap::new(),
        };
        let verifier = Verifier::new(&config.keys);
        let store = Store::open(database);
        for (name, cfg) in &config.bundles {
            if let Err(e) = Source::parse(&cfg.url) {
                bundles.errors.insert(name.clone(), e.to_string());
                continue;
            }
            let row = match &store {
                Ok(store) => store.bundle(name),
                Err(e) => {
                    bundles.errors.insert(name.clone(), e.to_string());
                    continue;
                }
            };
            match row {
                Ok(Some(row)) if row.url == cfg.url => {
                    if let Some(archive) = &row.archive {
                        match verifier.verify(name, archive, cfg) {
                            Ok(mut v) => {
                                v.etag = row.etag.clone();
                                bundles.active.insert(name.clone(), v);
                            }
                            Err(e) => {
                                bundles.errors.insert(name.clone(), e);
                            }
                        }
                    } else if let Some(e) = row.last_error {
                        bundles.errors.insert(name.clone(), e);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    bundles.errors.insert(name.clone(), e.to_string());
                }
            }
        }
        Some(bundles)
    }
}

impl Bundles {
    /// Says on stderr what decides until the first download, when a bundle is not active yet.
    pub fn start_note(&self) {
        for (name, config) in &self.configs {
            if self.active.contains_key(name) {
                continue;
            }
            let why = self.errors.get(name).map_or(String::new(), |e| {
                format!(" ({})", crate::display::escape(e))
            });
            if config.required {
                crate::note!("team bundle {name} is not downloaded yet{why}; every governed call is denied until it is");
            } else {
                crate::note!("team bundle {name} is not downloaded yet{why}; the local policy files decide until it is");
            }
        }
    }
}

/// The running puller; dropping it stops the thread at its next wake-up (a download in progress
/// is not waited for).
pub struct Puller {
    stop: mpsc::Sender<()>,
}

impl Drop for Puller {
    fn drop(&mut self) {
        let _ = self.stop.send(());
    }
}

/// Polls `configs` (those already active are known by digest, `known`) and tells `send`.
pub fn start(
    configs: BTreeMap<String, BundleConfig>,
    verifier: Verifier,
    database: PathBuf,
    known: BTreeMap<String, String>,
    send: impl Fn(Update) + Send + 'static,
) -> Puller {
    let (stop, stopped) = mpsc::channel();
    let polls = configs
        .into_iter()
        .map(|(name, config)| {
            let seen = known.get(&name).cloned();
            Poll {
                source: Source::parse(&config.url),
                name,
                config,
                next: Instant::now(),
                failures: 0,
                bundle_server: false,
                seen,
                refused: None,
                error: None,
                confirmed: None,
            }
        })
        .collect();
    let _ = std::thread::Builder::new()
        .name("behavry-bundle-pull".into())
        .spawn(move || run(polls, &verifier, database, stopped, send));
    Puller { stop }
}

/// One bundle's polling state.
struct Poll {
    name: String,
    config: BundleConfig,
    source: Result<Source, source::UrlError>,
    next: Instant,
    failures: u32,
    bundle_server: bool,
    /// The digest of the stored archive last handed to the watcher.
    seen: Option<String>,
    /// The digest of the last archive refused, so one bad publish is reported once.
    refused: Option<String>,
    /// The last error reported.
    error: Option<String>,
    /// The digest of the archive this process last found the host serving (see
    /// [`fetch_and_store`]).
    confirmed: Option<String>,
}

fn run(
    mut polls: Vec<Poll>,
    verifier: &Verifier,
    database: PathBuf,
    stopped: mpsc::Receiver<()>,
    send: impl Fn(Update),
) {
    let mut store = None;
    loop {
        if store.is_none() {
            store = Store::open(&database).ok();
        }
        if let Some(store) = store.as_mut() {
            for poll in &mut polls {
                poll.tick(store, verifier, &send);
            }
        }
        let next = polls.iter().map(|p| p.next).min();
        let wait = next
            .map_or(CHECK, |n| n.saturating_duration_since(Instant::now()))
            .min(CHECK);
        match stopped.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => break,
        }
    }
    if let Some(store) = store.as_mut() {
        for poll in &polls {
            let _ = store.release_bundle_lease(&poll.name);
        }
    }
}

/// What one download by the lease holder did.
#[derive(Debug)]
pub struct Outcome {
    /// A new archive was verified and stored (`false`: the host still has the stored one, or
    /// the lease was taken over during the download).
    pub stored: bool,
    /// The server answered with OPA's bundle content type: long polls may follow.
    pub bundle_server: bool,
    /// The digest of the archive the host serves now, when this download established it (and it
    /// is the one stored): the next poll may ask the host "not modified?" about it.
    pub current: Option<String>,
}

/// Why a download stored nothing.
#[derive(Debug)]
pub enum FetchError {
    /// The host sent an archive that failed verification (the stored one stays).
    Refused {
        sha256: String,
        etag: Option<String>,
        error: String,
    },
    /// The host could not be reached, refused, or sent too much.
    Failed(String),
}

impl FetchError {
    pub fn message(&self) -> &str {
        match self {
            FetchError::Refused { error, .. } | FetchError::Failed(error) => error,
        }
    }
}

/// The lease holder's download of bundle `name`: fetch, verify, store. The caller holds the lease
/// and records the outcome (`bundle_unchanged` / `bundle_failed`). `confirmed` is the digest of
/// the archive this process last found the host serving ([`Outcome::current`]): only while the
/// stored archive is that one is the stored ETag sent. The store is a file the user (and so an
/// agent) can edit: an older or broken archive put there beside the current ETag would otherwise
/// be kept by every 304 that follows.
pub fn fetch_and_store(
    store: &mut Store,
    verifier: &Verifier,
    name: &str,
    config: &BundleConfig,
    source: &Source,
    long_poll: bool,
    confirmed: Option<&str>,
) -> Result<Outcome, FetchError> {
    let row = store.bundle(name).ok().flatten();
    // The digest of the bytes stored, not the column beside them (which can be edited apart).
    let stored_sha = row
        .as_ref()
        .and_then(|r| r.archive.as_deref())
        .map(verify::digest);
    let etag = row
        .as_ref()
        .filter(|_| confirmed.is_some() && stored_sha.as_deref() == confirmed)
        .and_then(|r| r.etag.clone());
    match fetch::fetch(config, source, etag.as_deref(), long_poll).map_err(FetchError::Failed)? {
        Fetched::NotModified { bundle_server } => Ok(Outcome {
            stored: false,
            bundle_server,
            current: stored_sha.filter(|_| etag.is_some()),
        }),
        Fetched::New {
            bytes,
            etag,
            bundle_server,
        } => {
            let sha256 = verify::digest(&bytes);
            if stored_sha.as_deref() == Some(sha256.as_str()) {
                return Ok(Outcome {
                    stored: false,
                    bundle_server,
                    current: Some(sha256),
                });
            }
            let v = verifier
                .verify(name, &bytes, config)
                .map_err(|error| FetchError::Refused {
                    sha256: sha256.clone(),
                    etag: etag.clone(),
                    error,
                })?;
            let stored = Stored {
                archive: &bytes,
                etag: etag.as_deref(),
                sha256: &sha256,
                revision: v.revision(),
                signer: v.bundle.signer.as_deref(),
            };
            let stored = store
                .store_bundle(name, &config.url, &stored)
                .map_err(|e| FetchError::Failed(e.to_string()))?;
            Ok(Outcome {
                stored,
                bundle_server,
                current: stored.then_some(sha256),
            })
        }
    }
}

/// How long a poller's lease runs: one poll interval (and a long poll) with room to spare. The
/// holder renews it at every poll, and releases it at exit.
pub fn lease_secs(config: &BundleConfig) -> i64 {
    (config.max_delay_secs + config.long_poll_secs.unwrap_or(0) + 90) as i64
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Poll {
    fn tick(&mut self, store: &mut Store, verifier: &Verifier, send: &impl Fn(Update)) {
        let source = match &self.source {
            Ok(source) => source.clone(),
            Err(e) => {
                self.report_error(Some(e.to_string()), send);
                self.next = Instant::now() + Duration::from_secs(3600);
                return;
            }
        };
        if Instant::now() >= self.next {
            let holder = store
                .take_bundle_lease(
                    &self.name,
                    &self.config.url,
                    unix_now(),
                    lease_secs(&self.config),
                )
                .unwrap_or(false);
            if holder {
                self.poll(store, verifier, &source, send);
            }
            let long_poll = self.bundle_server && self.config.long_poll_secs.is_some();
            self.next = Instant::now()
                + if long_poll && self.failures == 0 {
                    Duration::ZERO
                } else {
                    backoff::next_delay(
                        self.config.min_delay_secs,
                        self.config.max_delay_secs,
                        self.failures,
                        backoff::random(),
                    )
                };
        }
        self.check_store(store, verifier, send);
    }

    /// The holder's poll: download, verify, store.
    fn poll(
        &mut self,
        store: &mut Store,
        verifier: &Verifier,
        source: &Source,
        send: &impl Fn(Update),
    ) {
        let result = match fetch_and_store(
            store,
            verifier,
            &self.name,
            &self.config,
            source,
            self.bundle_server,
            self.confirmed.as_deref(),
        ) {
            Ok(outcome) => {
                self.bundle_server = outcome.bundle_server;
                self.confirmed = outcome.current;
                Ok(())
            }
            Err(FetchError::Refused {
                sha256,
                etag,
                error,
            }) => {
                if self.refused.as_deref() != Some(sha256.as_str()) {
                    self.refused = Some(sha256.clone());
                    send(Update::Refused {
                        name: self.name.clone(),
                        sha256: Some(sha256),
                        etag,
                        error: error.clone(),
                    });
                }
                Err(error)
            }
            Err(FetchError::Failed(error)) => Err(error),
        };
        match result {
            Ok(()) => {
                self.failures = 0;
                let _ = store.bundle_unchanged(&self.name);
                self.report_error(None, send);
            }
            Err(error) => {
                self.failures = self.failures.saturating_add(1);
                self.confirmed = None;
                self.bundle_server = false;
                let _ = store.bundle_failed(&self.name, &self.config.url, &error);
                self.report_error(Some(error), send);
            }
        }
    }

    /// Every wrapper: a new archive in the store is verified and handed on.
    fn check_store(&mut self, store: &mut Store, verifier: &Verifier, send: &impl Fn(Update)) {
        let Ok(sha) = store.bundle_sha256(&self.name, &self.config.url) else {
            return;
        };
        if sha.is_none() || sha == self.seen {
            if sha.is_none() {
                // Nothing downloaded yet: tell why (the holder's last error) for the deny reason.
                if let Ok(Some(row)) = store.bundle(&self.name) {
                    if row.last_error.is_some() {
                        self.report_error(row.last_error, send);
                    }
                }
            }
            return;
        }
        self.seen = sha;
        let Ok(Some(row)) = store.bundle(&self.name) else {
            return;
        };
        let Some(archive) = &row.archive else { return };
        match verifier.verify(&self.name, archive, &self.config) {
            Ok(mut v) => {
                v.etag = row.etag.clone();
                send(Update::Ready(v));
            }
            Err(error) => send(Update::Refused {
                name: self.name.clone(),
                sha256: row.sha256.clone(),
                etag: row.etag.clone(),
                error,
            }),
        }
    }

    fn report_error(&mut self, error: Option<String>, send: &impl Fn(Update)) {
        if self.error != error {
            self.error = error.clone();
            send(Update::Unreachable {
                name: self.name.clone(),
                error,
            });
        }
    }
}
