//! Hot reload. Owns the policy set in force ([`Live`]) and the thread that replaces it: it watches
//! every policy directory (recursively; editors save by writing a temporary file and renaming it
//! over the old one), waits for the burst of events to settle, reads and compiles a whole new set,
//! and swaps it in only if it compiled. A set that does not compile never replaces a good one:
//! the last good set stays in force (fail closed, never open).
//!
//! Decisions read the set through [`Live::current`], one `Arc` per decision, so a decision never
//! mixes two sets and a swap never waits for decisions in flight.
//!
//! This module never prints and never touches the audit store: it tells its caller what happened
//! through the `report` callback.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::watch;

use super::engine::PolicySet;
use super::source::{self, Scan};
use crate::pull::activate::Bundles;
use crate::pull::verify::{Verified, Verifier};
use crate::pull::{Puller, Update};

/// Quiet time after the last file event before reloading: long enough for an editor's
/// write-temp-then-rename burst, short enough to stay well inside the save → enforced target.
const SETTLE: Duration = Duration::from_millis(50);
/// A directory that never stops changing is still reloaded this often.
const MAX_SETTLE: Duration = Duration::from_millis(500);
/// Rescan this often even without events: covers lost events (inotify queue overflow, watch
/// limits, network file systems) and directories created after start.
const POLL: Duration = Duration::from_secs(2);

/// The policy set in force. Cloning is cheap; every clone sees every swap.
#[derive(Clone)]
pub struct Live(watch::Receiver<Arc<PolicySet>>);

impl Live {
    /// A set that never changes (no watcher), for tools and tests.
    pub fn fixed(set: PolicySet) -> Live {
        Live(watch::channel(Arc::new(set)).1)
    }

    /// The set in force now. Hold the `Arc` for the whole decision: decide with it and record its
    /// hash, so the row names the set that decided.
    pub fn current(&self) -> Arc<PolicySet> {
        self.0.borrow().clone()
    }
}

/// What a reload did, for the caller to report.
pub enum Reload<'a> {
    /// The new set compiled and is being put in force (reported just before the swap).
    Applied { set: &'a PolicySet },
    /// The new set did not compile. `kept` is the good set still in force; `None` when there was
    /// none (the set in force already failed, so the new failure replaced it and every governed
    /// call stays denied, now with the current errors).
    Rejected {
        failed: &'a PolicySet,
        kept: Option<&'a PolicySet>,
    },
    /// A team bundle's new revision compiled with the local files and is being put in force.
    BundleActivated {
        set: &'a PolicySet,
        bundle: &'a Verified,
    },
    /// A team bundle's new archive was refused (download checks, signature, layout, compile);
    /// `kept` stays in force.
    BundleRefused {
        name: &'a str,
        revision: Option<&'a str>,
        sha256: Option<&'a str>,
        etag: Option<&'a str>,
        errors: Vec<String>,
        kept: &'a PolicySet,
    },
    /// A team bundle could not be downloaded (`None`: it can again). What is in force stays.
    BundleUnreachable {
        name: &'a str,
        error: Option<&'a str>,
    },
}

/// The team's bundles for [`watch_team`]: what is active, where the store is, and the keys.
pub struct Team {
    pub bundles: Bundles,
    pub database: PathBuf,
    pub verifier: Verifier,
}

/// The running watcher; dropping it stops the thread (after any reload in progress).
pub struct Watcher {
    stop: Option<mpsc::Sender<Message>>,
    thread: Option<JoinHandle<()>>,
    scans: Arc<AtomicU64>,
    /// Pulls the team's bundles, when there are any (stopped first on drop).
    puller: Option<Puller>,
}

impl Watcher {
    /// How many times the directories were read so far (a cheap check that an idle watcher
    /// stays idle).
    pub fn scans(&self) -> u64 {
        self.scans.load(Ordering::Relaxed)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.puller.take();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(Message::Stop);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

enum Message {
    Fs(notify::Result<notify::Event>),
    Bundle(Box<Update>),
    Stop,
}

/// Puts `initial` in force and starts watching `dirs`. `report` runs on the watcher's thread
/// after every reload that changed something; `problem` for trouble with the watching itself
/// (the poll still picks changes up, only later).
pub fn watch(
    dirs: Vec<PathBuf>,
    eval_timeout: Duration,
    initial: PolicySet,
    report: impl FnMut(Reload<'_>) + Send + 'static,
    problem: impl FnMut(String) + Send + 'static,
) -> (Live, Watcher) {
    watch_team(dirs, eval_timeout, initial, None, report, problem)
}

/// [`watch`], with the team's bundles: `initial` must be the set `team` composes (see
/// [`Bundles::compose`]); each new bundle revision the puller finds is composed with the local
/// files, compiled and swapped in, or refused with the last good set kept.
pub fn watch_team(
    dirs: Vec<PathBuf>,
    eval_timeout: Duration,
    initial: PolicySet,
    team: Option<Team>,
    report: impl FnMut(Reload<'_>) + Send + 'static,
    problem: impl FnMut(String) + Send + 'static,
) -> (Live, Watcher) {
    let (sender, receiver) = watch::channel(Arc::new(initial));
    let (tx, rx) = mpsc::channel();
    let events = tx.clone();
    let scans = Arc::new(AtomicU64::new(0));
    let puller = team.as_ref().map(|team| {
        let known = team
            .bundles
            .active
            .iter()
            .map(|(name, v)| (name.clone(), v.sha256().to_owned()))
            .collect();
        let updates = std::sync::Mutex::new(tx.clone());
        crate::pull::start(
            team.bundles.configs.clone(),
            team.verifier.clone(),
            team.database.clone(),
            known,
            move |update| {
                if let Ok(tx) = updates.lock() {
                    let _ = tx.send(Message::Bundle(Box::new(update)));
                }
            },
        )
    });
    let reloader = Reloader {
        team: team.map(|t| t.bundles),
        dirs,
        eval_timeout,
        scans: scans.clone(),
        sender,
        report: Box::new(report),
        problem: Box::new(problem),
    };
    let thread = std::thread::Builder::new()
        .name("behavry-policy-watch".into())
        .spawn(move || reloader.run(rx, events));
    // Without the thread the initial set simply stays in force.
    let thread = thread.ok();
    (
        Live(receiver),
        Watcher {
            stop: Some(tx),
            thread,
            scans,
            puller,
        },
    )
}

struct Reloader {
    /// The team's bundles: the last good revision of each.
    team: Option<Bundles>,
    dirs: Vec<PathBuf>,
    eval_timeout: Duration,
    scans: Arc<AtomicU64>,
    sender: watch::Sender<Arc<PolicySet>>,
    report: Box<dyn FnMut(Reload<'_>) + Send>,
    problem: Box<dyn FnMut(String) + Send>,
}

impl Reloader {
    fn run(mut self, rx: mpsc::Receiver<Message>, events: mpsc::Sender<Message>) {
        let watcher = notify::recommended_watcher(move |event| {
            let _ = events.send(Message::Fs(event));
        });
        let mut watches = match watcher {
            Ok(watcher) => Some(Watches {
                watcher,
                active: HashMap::new(),
                failed: Vec::new(),
            }),
            Err(e) => {
                (self.problem)(format!(
                    "cannot watch the policy directories ({e}); changes are picked up by polling every {} s",
                    POLL.as_secs()
                ));
                None
            }
        };
        // What the initial set was built from. With bundles, the caller composed it moments
        // ago from the same files.
        let mut last = match &self.team {
            None => self.sender.borrow().fingerprint().to_owned(),
            Some(_) => self.fingerprint(&source::scan(&self.dirs, Scan::ENFORCE)),
        };
        loop {
            if let Some(w) = &mut watches {
                w.ensure(&self.dirs, &mut self.problem);
            }
            // Also right after start: a change between the first load and the first watch counts.
            self.reload_if_changed(&mut last);
            let next_poll = Instant::now() + POLL;
            // Wait for a change. Reads are not changes — and every rescan reads every file, so
            // rescanning on them would never stop.
            loop {
                let left = next_poll.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(Message::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    Ok(Message::Bundle(update)) => self.bundle(*update, &mut last),
                    Ok(Message::Fs(event)) if relevant(&event) => {
                        let mut updates = Vec::new();
                        if settle(&rx, &mut updates) {
                            return;
                        }
                        for update in updates {
                            self.bundle(update, &mut last);
                        }
                        break;
                    }
                    Ok(Message::Fs(_)) => {}
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                }
            }
        }
    }

    /// The fingerprint of what a reload would compile: the local files, and the bundles.
    fn fingerprint(&self, sources: &source::Sources) -> String {
        match &self.team {
            None => sources.fingerprint(),
            Some(team) => format!("{} {}", sources.fingerprint(), team.fingerprint()),
        }
    }

    fn compose(&self, sources: source::Sources) -> PolicySet {
        match &self.team {
            None => PolicySet::from_scan(sources, self.eval_timeout),
            Some(team) => team.compose(sources, self.eval_timeout),
        }
    }

    /// A bundle update from the puller: a new revision is composed with the local files and put
    /// in force if it compiles; anything else keeps the set in force and is reported.
    fn bundle(&mut self, update: Update, last: &mut String) {
        let Some(team) = self.team.as_mut() else {
            return;
        };
        let current = self.sender.borrow().clone();
        match update {
            Update::Ready(verified) => {
                let name = verified.name().to_owned();
                let mut candidate = team.clone();
                candidate.errors.remove(&name);
                candidate.active.insert(name.clone(), verified.clone());
                let sources = source::scan(&self.dirs, Scan::ENFORCE);
                let fingerprint = format!("{} {}", sources.fingerprint(), candidate.fingerprint());
                let new = candidate.compose(sources, self.eval_timeout);
                if new.error().is_none() {
                    *team = candidate;
                    *last = fingerprint;
                    (self.report)(Reload::BundleActivated {
                        set: &new,
                        bundle: &verified,
                    });
                    self.sender.send_replace(Arc::new(new));
                } else {
                    (self.report)(Reload::BundleRefused {
                        name: &name,
                        revision: Some(verified.revision()),
                        sha256: Some(verified.sha256()),
                        etag: verified.etag.as_deref(),
                        errors: new.diagnostics().iter().map(ToString::to_string).collect(),
                        kept: &current,
                    });
                }
            }
            Update::Refused {
                name,
                sha256,
                etag,
                error,
            } => (self.report)(Reload::BundleRefused {
                name: &name,
                revision: None,
                sha256: sha256.as_deref(),
                etag: etag.as_deref(),
                errors: vec![error],
                kept: &current,
            }),
            Update::Unreachable { name, error } => {
                (self.report)(Reload::BundleUnreachable {
                    name: &name,
                    error: error.as_deref(),
                });
                // A required bundle not downloaded yet: its deny reason names the latest error.
                if !team.active.contains_key(&name) {
                    match error {
                        Some(e) => team.errors.insert(name, e),
                        None => team.errors.remove(&name),
                    };
                    self.reload_if_changed(last);
                }
            }
        }
    }

    fn reload_if_changed(&mut self, last: &mut String) {
        let sources = source::scan(&self.dirs, Scan::ENFORCE);
        self.scans.fetch_add(1, Ordering::Relaxed);
        let fingerprint = self.fingerprint(&sources);
        if fingerprint == *last {
            return;
        }
        let new = self.compose(sources);
        *last = fingerprint;
        let current = self.sender.borrow().clone();
        // Reported before the swap, so the reload is on record before any decision it makes.
        if new.error().is_none() {
            (self.report)(Reload::Applied { set: &new });
            self.sender.send_replace(Arc::new(new));
        } else if current.error().is_none() {
            (self.report)(Reload::Rejected {
                failed: &new,
                kept: Some(&current),
            });
        } else {
            (self.report)(Reload::Rejected {
                failed: &new,
                kept: None,
            });
            self.sender.send_replace(Arc::new(new));
        }
    }
}

/// Waits until no relevant event arrived for [`SETTLE`] (or [`MAX_SETTLE`] passed); returns true
/// when told to stop meanwhile. Bundle updates that arrive meanwhile are kept in `updates`.
fn settle(rx: &mpsc::Receiver<Message>, updates: &mut Vec<Update>) -> bool {
    let start = Instant::now();
    let mut start_quiet = start;
    loop {
        let left = MAX_SETTLE.saturating_sub(start.elapsed());
        let quiet_left = SETTLE.saturating_sub(start_quiet.elapsed());
        if left.is_zero() || quiet_left.is_zero() {
            return false;
        }
        match rx.recv_timeout(quiet_left.min(left)) {
            Ok(Message::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return true,
            // Only changes restart the quiet period.
            Ok(Message::Fs(event)) if relevant(&event) => start_quiet = Instant::now(),
            Ok(Message::Fs(_)) => {}
            // Bundle updates wait for the files to settle, then go first.
            Ok(Message::Bundle(update)) => updates.push(*update),
            Err(mpsc::RecvTimeoutError::Timeout) => return false,
        }
    }
}

/// Whether an event may mean the set changed. Opening and reading are not changes — and our own
/// rescans open every file, so counting them would reload forever. Watcher errors (a lost-events
/// overflow) count: rescan to be sure.
fn relevant(event: &notify::Result<notify::Event>) -> bool {
    match event {
        Ok(event) => match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            _ => true,
        },
        Err(_) => true,
    }
}

/// The inotify (or platform) watches, kept in line with the directories as they come and go.
struct Watches {
    watcher: notify::RecommendedWatcher,
    /// Watched path → how, and the identity of the directory watched (a directory deleted and
    /// created again is a new directory and needs a new watch).
    active: HashMap<PathBuf, (RecursiveMode, Option<(u64, u64)>)>,
    /// Paths already reported as unwatchable, so a persistent failure is said once.
    failed: Vec<PathBuf>,
}

impl Watches {
    /// Watches each policy directory recursively; one that does not exist yet is waited for by
    /// watching its nearest existing ancestor (without recursion), whose events bring us back here.
    fn ensure(&mut self, dirs: &[PathBuf], problem: &mut dyn FnMut(String)) {
        let mut wanted: HashMap<PathBuf, (RecursiveMode, Option<(u64, u64)>)> = HashMap::new();
        for dir in dirs {
            let (path, mode) = if dir.is_dir() {
                (dir.clone(), RecursiveMode::Recursive)
            } else {
                match nearest_existing_ancestor(dir) {
                    Some(ancestor) => (ancestor, RecursiveMode::NonRecursive),
                    None => continue,
                }
            };
            // A recursive watch on a path beats a plain one asked for by another directory.
            let entry = wanted
                .entry(path.clone())
                .or_insert((mode, identity(&path)));
            if mode == RecursiveMode::Recursive {
                entry.0 = mode;
            }
        }
        let stale: Vec<PathBuf> = self
            .active
            .iter()
            .filter(|(path, how)| wanted.get(*path) != Some(*how))
            .map(|(path, _)| path.clone())
            .collect();
        for path in stale {
            // The watch may already be gone with its directory.
            let _ = self.watcher.unwatch(&path);
            self.active.remove(&path);
        }
        for (path, how) in wanted {
            if self.active.contains_key(&path) {
                continue;
            }
            match self.watcher.watch(&path, how.0) {
                Ok(()) => {
                    self.failed.retain(|p| p != &path);
                    self.active.insert(path, how);
                }
                Err(e) if !self.failed.contains(&path) => {
                    problem(format!(
                        "cannot watch {} for policy changes ({e}); changes there are picked up by polling every {} s",
                        path.display(),
                        POLL.as_secs()
                    ));
                    self.failed.push(path);
                }
                Err(_) => {}
            }
        }
    }
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn nearest_existing_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .skip(1)
        .find(|p| p.is_dir())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Mutex;

    const ALLOW: &str = "package behavry.authz\nimport rego.v1\nallow := true\n";
    const DENY: &str = "package behavry.authz\nimport rego.v1\ndeny := true\n";
    const BROKEN: &str = "package behavry.authz\nallow if {\n";
    const WAIT: Duration = Duration::from_secs(20);

    /// Replaces `path` the way editors do: write a temporary file, rename it over the old one.
    fn save(path: &Path, text: &str) {
        let tmp = path.with_extension("tmp~");
        std::fs::write(&tmp, text).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn wait_for(live: &Live, want: &str) {
        let start = Instant::now();
        while start.elapsed() < WAIT {
            if live.current().decide(&json!({})).decision.as_str() == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the policy never started to {want}");
    }

    fn events() -> (
        Arc<Mutex<Vec<String>>>,
        impl FnMut(Reload<'_>) + Send + 'static,
    ) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let report = move |r: Reload<'_>| {
            let line = match r {
                Reload::Applied { set } => format!("applied {}", &set.hash[..8]),
                Reload::Rejected { failed, kept } => format!(
                    "rejected {} kept {}",
                    failed.error().unwrap_or(""),
                    kept.map_or("none", |k| &k.hash[..8])
                ),
                other => format!("bundle {}", matches!(other, Reload::BundleActivated { .. })),
            };
            sink.lock().unwrap().push(line);
        };
        (log, report)
    }

    #[test]
    fn swaps_valid_sets_and_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        let file = policies.join("p.rego");
        save(&file, ALLOW);
        let dirs = vec![policies.clone()];
        let initial = PolicySet::load(&dirs, Duration::from_secs(1));
        let allow_hash = initial.hash.clone();
        let (log, report) = events();
        let (live, watcher) = watch(dirs, Duration::from_secs(1), initial, report, |_| {});
        assert_eq!(live.current().hash, allow_hash);

        save(&file, DENY);
        wait_for(&live, "deny");
        assert!(live.current().error().is_none());

        save(&file, BROKEN);
        let start = Instant::now();
        while !log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("rejected"))
        {
            assert!(start.elapsed() < WAIT, "no rejection reported");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(live.current().error().is_none(), "the good set stays");
        assert_eq!(live.current().decide(&json!({})).decision.as_str(), "deny");

        save(&file, ALLOW);
        wait_for(&live, "allow");
        assert_eq!(live.current().hash, allow_hash);
        drop(watcher);
        let log = log.lock().unwrap();
        assert!(log[0].starts_with("applied"), "{log:?}");
        assert!(
            log[1].contains("p.rego:3:1") && log[1].ends_with(&format!("kept {}", &log[0][8..16])),
            "{log:?}"
        );
        assert_eq!(log[2], format!("applied {}", &allow_hash[..8]));
    }

    #[test]
    fn a_broken_start_is_replaced_and_missing_dirs_are_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("later/policies");
        let dirs = vec![policies.clone()];
        let initial =
            PolicySet::from_sources(&[("x.rego".into(), BROKEN.into())], Duration::from_secs(1));
        let (log, report) = events();
        // (The first scan may already have replaced the broken set with the empty one.)
        let (live, _watcher) = watch(dirs, Duration::from_secs(1), initial, report, |_| {});
        std::fs::create_dir_all(&policies).unwrap();
        save(&policies.join("p.rego"), ALLOW);
        wait_for(&live, "allow");
        assert!(log.lock().unwrap().iter().all(|l| l.starts_with("applied")));
    }

    #[test]
    fn a_failure_with_no_good_set_to_keep_replaces_the_old_failure() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.rego");
        save(&file, BROKEN);
        let dirs = vec![dir.path().to_path_buf()];
        let initial = PolicySet::load(&dirs, Duration::from_secs(1));
        assert!(initial.error().is_some());
        let (log, report) = events();
        let (live, _watcher) = watch(dirs, Duration::from_secs(1), initial, report, |_| {});
        save(&file, "package behavry.authz\nimport rego.v1\nallow if x\n");
        let start = Instant::now();
        while !live.current().error().unwrap_or("").contains("p.rego:3:10") {
            assert!(start.elapsed() < WAIT, "the newer errors never showed");
            std::thread::sleep(Duration::from_millis(10));
        }
        let reason = live.current().decide(&json!({})).reasons[0].clone();
        assert!(reason.contains("undefined variable `x`"), "{reason}");
        assert!(log.lock().unwrap()[0].ends_with("kept none"));
    }

    #[test]
    fn an_idle_watcher_stays_idle_even_when_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.rego");
        save(&file, ALLOW);
        let dirs = vec![dir.path().to_path_buf()];
        let initial = PolicySet::load(&dirs, Duration::from_secs(1));
        let (_, report) = events();
        let (_live, watcher) = watch(dirs, Duration::from_secs(1), initial, report, |_| {});
        let start = Instant::now();
        while watcher.scans() == 0 {
            assert!(start.elapsed() < WAIT);
            std::thread::sleep(Duration::from_millis(5));
        }
        for _ in 0..20 {
            std::fs::read_to_string(&file).unwrap();
        }
        // Well under the poll interval: only the first scan may have happened. (Every scan reads
        // the files; if reads caused scans, this would count hundreds.)
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(watcher.scans(), 1);
    }

    #[test]
    fn reads_are_not_changes() {
        let read = notify::Event::new(EventKind::Access(AccessKind::Open(
            notify::event::AccessMode::Any,
        )));
        assert!(!relevant(&Ok(read)));
        let written = notify::Event::new(EventKind::Access(AccessKind::Close(AccessMode::Write)));
        assert!(relevant(&Ok(written)));
        let renamed = notify::Event::new(EventKind::Modify(notify::event::ModifyKind::Name(
            notify::event::RenameMode::To,
        )));
        assert!(relevant(&Ok(renamed)));
    }
}
