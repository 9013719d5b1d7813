//! Holding an escalated call until a person resolves it.
//!
//! The wrapper records the escalation as pending in the shared store, then [`wait`]s: it learns of
//! a resolution written by `behavry approve` (in any process), and resolves the call itself on
//! timeout or cancellation. Every resolution goes through one conditional update in the store, so
//! the first one wins and the others see it.
//!
//! One [`Waiter`] per wrapper watches the store for all the calls it holds: a single task that
//! every [`POLL`] asks SQLite whether anything changed (`PRAGMA data_version`) and only then reads
//! the resolutions of every held call in one query, waking each through a oneshot. Why polling: the
//! store is already the one place every wrapper and approver share, it survives any of them
//! crashing, and a 50 ms look keeps keypress-to-forward well under 250 ms without sockets or file
//! watchers to clean up. The waiter also caps how many calls a wrapper holds at once
//! ([`Waiter::try_hold`]), so a flood of escalations is denied at once instead of burying the one
//! call that matters in the approver's queue.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};

use crate::audit::store::{Resolution, Resolved};
use crate::audit::AuditHandle;

/// How often held calls look for their resolution.
pub const POLL: Duration = Duration::from_millis(50);

/// How many calls one wrapper holds for approval at once, unless configured.
pub const DEFAULT_MAX_HELD: usize = 8;

/// Who resolved a call when no person did.
pub const BY_TIMEOUT: &str = "behavry (approval timeout)";
pub const BY_CLIENT: &str = "behavry (the client cancelled the request)";

const WAITER_STOPPED: &str = "the approval waiter has stopped";

/// The store operations a held call needs; the audit handle (or a [`Waiter`] over it) in
/// production, a fake in tests.
pub trait Resolver: Sync {
    fn resolution(&self, id: i64) -> impl Future<Output = Result<Option<Resolved>, String>> + Send;
    fn resolve(
        &self,
        id: i64,
        resolution: Resolution,
        by: &'static str,
    ) -> impl Future<Output = Result<bool, String>> + Send;

    /// Resolves once escalation `id` is resolved. By default the call polls its own row every
    /// [`POLL`]; a [`Waiter`] watches all of a wrapper's held calls with one task instead.
    fn settled(&self, id: i64) -> impl Future<Output = Result<Resolved, String>> + Send {
        async move {
            let mut poll = interval_at(Instant::now() + POLL, POLL);
            poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                poll.tick().await;
                if let Some(resolved) = self.resolution(id).await? {
                    return Ok(resolved);
                }
            }
        }
    }

    /// The resolved ones among `ids`. By default one look per id; the store answers in one query.
    fn resolutions(
        &self,
        ids: Vec<i64>,
    ) -> impl Future<Output = Result<Vec<(i64, Resolved)>, String>> + Send {
        async move {
            let mut found = Vec::new();
            for id in ids {
                if let Some(resolved) = self.resolution(id).await? {
                    found.push((id, resolved));
                }
            }
            Ok(found)
        }
    }

    /// A number that changes when another process writes; `None` when unknown (then every look
    /// reads the resolutions).
    fn data_version(&self) -> impl Future<Output = Result<Option<i64>, String>> + Send {
        async { Ok(None) }
    }
}

impl Resolver for AuditHandle {
    fn resolution(&self, id: i64) -> impl Future<Output = Result<Option<Resolved>, String>> + Send {
        AuditHandle::resolution(self, id)
    }

    fn resolve(
        &self,
        id: i64,
        resolution: Resolution,
        by: &'static str,
    ) -> impl Future<Output = Result<bool, String>> + Send {
        AuditHandle::resolve(self, id, resolution, by)
    }

    fn resolutions(
        &self,
        ids: Vec<i64>,
    ) -> impl Future<Output = Result<Vec<(i64, Resolved)>, String>> + Send {
        AuditHandle::resolutions(self, ids)
    }

    fn data_version(&self) -> impl Future<Output = Result<Option<i64>, String>> + Send {
        let version = AuditHandle::data_version(self);
        async move { version.await.map(Some) }
    }
}

/// A held call waiting to hear how its escalation was resolved.
type Watch = (i64, oneshot::Sender<Result<Resolved, String>>);

/// One per wrapper: watches the store for every call the wrapper holds, and caps how many it holds.
/// Cheap to clone; the watching task stops when the last clone is dropped.
pub struct Waiter<R = AuditHandle> {
    store: R,
    watch: mpsc::UnboundedSender<Watch>,
    held: Arc<AtomicUsize>,
    max_held: usize,
}

impl<R: Clone> Clone for Waiter<R> {
    fn clone(&self) -> Self {
        Waiter {
            store: self.store.clone(),
            watch: self.watch.clone(),
            held: self.held.clone(),
            max_held: self.max_held,
        }
    }
}

/// The wrapper already holds as many calls as it may: deny this one at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{max} calls from this server are already waiting for approval, so this one was denied without \
     asking; ask the user to resolve them in `behavry approve` first (the limit is `max_held` in \
     the [wrap] section of behavry's config.toml)"
)]
pub struct AtCap {
    pub max: usize,
}

/// A place among the calls a wrapper holds; given back when dropped, on every exit path.
#[derive(Debug)]
pub struct HoldPermit {
    held: Arc<AtomicUsize>,
}

impl Drop for HoldPermit {
    fn drop(&mut self) {
        self.held.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<R: Resolver + Clone + Send + 'static> Waiter<R> {
    /// Starts the watching task (on the current tokio runtime). `max_held`: how many calls may be
    /// held at once (at least one).
    pub fn start(store: R, max_held: usize) -> Waiter<R> {
        let (watch, rx) = mpsc::unbounded_channel();
        tokio::spawn(watch_store(store.clone(), rx));
        Waiter {
            store,
            watch,
            held: Arc::new(AtomicUsize::new(0)),
            max_held: max_held.max(1),
        }
    }
}

impl<R> Waiter<R> {
    /// Takes a place for one more held call, or says why not.
    pub fn try_hold(&self) -> Result<HoldPermit, AtCap> {
        let max = self.max_held;
        self.held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .map(|_| HoldPermit {
                held: self.held.clone(),
            })
            .map_err(|_| AtCap { max })
    }

    /// How many calls are held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

impl<R: Resolver + Send> Resolver for Waiter<R> {
    fn resolution(&self, id: i64) -> impl Future<Output = Result<Option<Resolved>, String>> + Send {
        self.store.resolution(id)
    }

    fn resolve(
        &self,
        id: i64,
        resolution: Resolution,
        by: &'static str,
    ) -> impl Future<Output = Result<bool, String>> + Send {
        self.store.resolve(id, resolution, by)
    }

    fn settled(&self, id: i64) -> impl Future<Output = Result<Resolved, String>> + Send {
        let (tx, rx) = oneshot::channel();
        let sent = self.watch.send((id, tx));
        async move {
            if sent.is_err() {
                return Err(WAITER_STOPPED.to_owned());
            }
            rx.await.unwrap_or_else(|_| Err(WAITER_STOPPED.to_owned()))
        }
    }
}

/// The waiter's task: while any call is held, looks every [`POLL`] whether the store changed, and
/// if it did (or a call was added since), reads all held calls' resolutions in one query.
async fn watch_store<R: Resolver>(store: R, mut rx: mpsc::UnboundedReceiver<Watch>) {
    let mut watched: HashMap<i64, Vec<oneshot::Sender<Result<Resolved, String>>>> = HashMap::new();
    let mut seen_version = None;
    loop {
        let mut added = false;
        if watched.is_empty() {
            // Nothing held: sleep until a call is, or every waiter is gone.
            match rx.recv().await {
                Some((id, tx)) => watched.entry(id).or_default().push(tx),
                None => return,
            }
            added = true;
            tokio::time::sleep(POLL).await;
        } else {
            tokio::time::sleep(POLL).await;
        }
        loop {
            match rx.try_recv() {
                Ok((id, tx)) => {
                    watched.entry(id).or_default().push(tx);
                    added = true;
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                // The waiter is gone, but calls it registered may still wait: keep serving them.
                Err(mpsc::error::TryRecvError::Disconnected) if !watched.is_empty() => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        // Calls that stopped waiting (timed out, cancelled) need no more looks.
        watched.retain(|_, txs| {
            txs.retain(|tx| !tx.is_closed());
            !txs.is_empty()
        });
        if watched.is_empty() {
            continue;
        }
        let version = match store.data_version().await {
            Ok(version) => version,
            Err(e) => {
                fail_all(&mut watched, &e);
                continue;
            }
        };
        // A resolution committed before a call was added may predate the last version seen.
        if version.is_some() && version == seen_version && !added {
            continue;
        }
        seen_version = version;
        match store.resolutions(watched.keys().copied().collect()).await {
            Ok(found) => {
                for (id, resolved) in found {
                    for tx in watched.remove(&id).unwrap_or_default() {
                        let _ = tx.send(Ok(resolved.clone()));
                    }
                }
            }
            Err(e) => fail_all(&mut watched, &e),
        }
    }
}

/// The store failed: every held call hears it (and is denied, failing closed).
fn fail_all(watched: &mut HashMap<i64, Vec<oneshot::Sender<Result<Resolved, String>>>>, e: &str) {
    for (_, txs) in watched.drain() {
        for tx in txs {
            let _ = tx.send(Err(e.to_owned()));
        }
    }
}

/// How a held call ended, from the wrapper's point of view.
#[derive(Debug, Clone, PartialEq)]
pub enum Released {
    /// Forward it. `session`: also allow later identical escalations in this session.
    Approved {
        session: bool,
        by: String,
    },
    /// Answer with a denial; `reason` is what the approver typed, if anything.
    Denied {
        reason: Option<String>,
        by: String,
    },
    TimedOut,
    /// The client cancelled it: send nothing, forward nothing.
    Cancelled,
    /// The store failed or was resolved in a way a live wrapper never expects; deny.
    Failed(String),
}

fn released(resolved: Resolved) -> Released {
    match resolved.resolution {
        Resolution::Approved => Released::Approved {
            session: false,
            by: resolved.by,
        },
        Resolution::ApprovedSession => Released::Approved {
            session: true,
            by: resolved.by,
        },
        Resolution::Denied => Released::Denied {
            reason: resolved.reason,
            by: resolved.by,
        },
        Resolution::Timeout => Released::TimedOut,
        Resolution::Cancelled => Released::Cancelled,
        Resolution::Abandoned => Released::Failed(format!(
            "the call was resolved as abandoned by {}",
            resolved.by
        )),
    }
}

/// How long a call is held, and how often the client hears that it still is.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub timeout: Duration,
    pub keepalive: Duration,
}

/// Waits for escalation `id` to be resolved. `cancel` fires when the client cancels the request;
/// `keepalive(left)` is called every `timing.keepalive` with the time left.
pub async fn wait<R: Resolver>(
    store: &R,
    id: i64,
    timing: Timing,
    mut cancel: oneshot::Receiver<()>,
    mut keepalive: impl FnMut(Duration),
) -> Released {
    let Timing {
        timeout,
        keepalive: every,
    } = timing;
    let start = Instant::now();
    let deadline = start + timeout;
    let every = every.max(POLL);
    let mut alive = interval_at(start + every, every);
    alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let settled = store.settled(id);
    tokio::pin!(settled);
    loop {
        tokio::select! {
            biased;
            _ = &mut cancel => {
                // Even if an approval won the race in the store, the client no longer wants the
                // call: it is never forwarded after a cancellation.
                if let Ok(false) = store.resolve(id, Resolution::Cancelled, BY_CLIENT).await {
                    crate::note!("escalation {id} was cancelled by the client after it was resolved; not forwarding it");
                }
                return Released::Cancelled;
            }
            () = sleep_until(deadline) => {
                return match store.resolve(id, Resolution::Timeout, BY_TIMEOUT).await {
                    Ok(true) => Released::TimedOut,
                    // Resolved by someone else just before the deadline: honour that.
                    Ok(false) => match store.resolution(id).await {
                        Ok(Some(resolved)) => released(resolved),
                        Ok(None) => Released::TimedOut,
                        Err(e) => Released::Failed(e),
                    },
                    Err(e) => Released::Failed(e),
                };
            }
            resolved = &mut settled => return match resolved {
                Ok(resolved) => released(resolved),
                Err(e) => Released::Failed(e),
            },
            _ = alive.tick() => keepalive(deadline.saturating_duration_since(Instant::now())),
        }
    }
}

/// `4m30s`, `45s`: how long is left, for people.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 60, secs % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A store whose escalation 1 is resolved by whoever calls `set` first.
    #[derive(Clone, Default)]
    struct Fake(Arc<Mutex<Option<Resolved>>>);

    impl Fake {
        fn set(&self, resolution: Resolution, reason: Option<&str>) -> bool {
            let mut slot = self.0.lock().unwrap();
            if slot.is_some() {
                return false;
            }
            *slot = Some(Resolved {
                resolution,
                reason: reason.map(str::to_owned),
                by: "someone".into(),
            });
            true
        }
    }

    impl Resolver for Fake {
        fn resolution(
            &self,
            _id: i64,
        ) -> impl Future<Output = Result<Option<Resolved>, String>> + Send {
            let value = self.0.lock().unwrap().clone();
            async move { Ok(value) }
        }
        fn resolve(
            &self,
            _id: i64,
            resolution: Resolution,
            _by: &'static str,
        ) -> impl Future<Output = Result<bool, String>> + Send {
            let won = self.set(resolution, None);
            async move { Ok(won) }
        }
    }

    fn timing(secs: u64) -> Timing {
        Timing {
            timeout: Duration::from_secs(secs),
            keepalive: Duration::from_secs(15),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn approval_releases_the_call() {
        let store = Fake::default();
        let (_cancel, rx) = oneshot::channel();
        let approver = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            approver.set(Resolution::Approved, None);
        });
        let started = Instant::now();
        let got = wait(&store, 1, timing(300), rx, |_| {}).await;
        assert_eq!(
            got,
            Released::Approved {
                session: false,
                by: "someone".into()
            }
        );
        // Seen at the first poll after the approval.
        assert!(started.elapsed() <= Duration::from_secs(3) + POLL);
    }

    #[tokio::test(start_paused = true)]
    async fn denial_carries_the_reason() {
        let store = Fake::default();
        store.set(Resolution::Denied, Some("not on a Friday"));
        let (_cancel, rx) = oneshot::channel();
        let got = wait(&store, 1, timing(300), rx, |_| {}).await;
        assert_eq!(
            got,
            Released::Denied {
                reason: Some("not on a Friday".into()),
                by: "someone".into()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_deterministically_with_keepalives() {
        let store = Fake::default();
        let (_cancel, rx) = oneshot::channel();
        let ticks = Arc::new(Mutex::new(Vec::new()));
        let seen = ticks.clone();
        let started = Instant::now();
        let got = wait(&store, 1, timing(60), rx, move |left| {
            seen.lock().unwrap().push(human(left))
        })
        .await;
        assert_eq!(got, Released::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(60));
        assert_eq!(*ticks.lock().unwrap(), ["45s", "30s", "15s"]);
        assert_eq!(
            store.0.lock().unwrap().as_ref().map(|r| r.resolution),
            Some(Resolution::Timeout)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_approval_racing_the_timeout_wins_if_first() {
        let store = Fake::default();
        let (_cancel, rx) = oneshot::channel();
        let approver = store.clone();
        tokio::spawn(async move {
            // After the last poll before the deadline, before the deadline itself.
            tokio::time::sleep(Duration::from_millis(9_990)).await;
            approver.set(Resolution::Approved, None);
        });
        let got = wait(&store, 1, timing(10), rx, |_| {}).await;
        assert!(matches!(got, Released::Approved { .. }), "{got:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_wins_and_a_later_approval_is_ignored() {
        let store = Fake::default();
        let (cancel, rx) = oneshot::channel();
        let _ = cancel.send(());
        let got = wait(&store, 1, timing(300), rx, |_| {}).await;
        assert_eq!(got, Released::Cancelled);
        assert!(
            !store.set(Resolution::Approved, None),
            "the store already says cancelled"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_after_an_unseen_approval_still_forwards_nothing() {
        let store = Fake::default();
        store.set(Resolution::Approved, None);
        let (cancel, rx) = oneshot::channel();
        let _ = cancel.send(());
        assert_eq!(
            wait(&store, 1, timing(300), rx, |_| {}).await,
            Released::Cancelled
        );
    }

    /// A store holding many escalations, counting the queries a waiter makes.
    #[derive(Clone, Default)]
    struct Many {
        resolved: Arc<Mutex<HashMap<i64, Resolved>>>,
        /// Bumped by every write, like `PRAGMA data_version` for another process's commits.
        version: Arc<Mutex<i64>>,
        queries: Arc<Mutex<usize>>,
    }

    impl Many {
        fn set(&self, id: i64, resolution: Resolution) -> bool {
            let mut map = self.resolved.lock().unwrap();
            if map.contains_key(&id) {
                return false;
            }
            map.insert(
                id,
                Resolved {
                    resolution,
                    reason: None,
                    by: "someone".into(),
                },
            );
            *self.version.lock().unwrap() += 1;
            true
        }
        fn queries(&self) -> usize {
            *self.queries.lock().unwrap()
        }
    }

    impl Resolver for Many {
        fn resolution(
            &self,
            id: i64,
        ) -> impl Future<Output = Result<Option<Resolved>, String>> + Send {
            let value = self.resolved.lock().unwrap().get(&id).cloned();
            async move { Ok(value) }
        }
        fn resolve(
            &self,
            id: i64,
            resolution: Resolution,
            _by: &'static str,
        ) -> impl Future<Output = Result<bool, String>> + Send {
            let won = self.set(id, resolution);
            async move { Ok(won) }
        }
        fn resolutions(
            &self,
            ids: Vec<i64>,
        ) -> impl Future<Output = Result<Vec<(i64, Resolved)>, String>> + Send {
            *self.queries.lock().unwrap() += 1;
            let map = self.resolved.lock().unwrap();
            let found: Vec<_> = ids
                .into_iter()
                .filter_map(|id| map.get(&id).map(|r| (id, r.clone())))
                .collect();
            async move { Ok(found) }
        }
        fn data_version(&self) -> impl Future<Output = Result<Option<i64>, String>> + Send {
            let v = *self.version.lock().unwrap();
            async move { Ok(Some(v)) }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_waiter_releases_each_of_many_held_calls() {
        let store = Many::default();
        let waiter = Waiter::start(store.clone(), 1000);
        let mut calls = Vec::new();
        for id in 1..=500 {
            let waiter = waiter.clone();
            calls.push(tokio::spawn(async move {
                let (_cancel, rx) = oneshot::channel();
                (id, wait(&waiter, id, timing(300), rx, |_| {}).await)
            }));
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        // Nothing changed after the first look: no more queries however many calls wait.
        assert_eq!(store.queries(), 1);
        store.set(7, Resolution::Approved);
        store.set(8, Resolution::Denied);
        assert!(calls.iter().all(|c| !c.is_finished()));
        let started = Instant::now();
        tokio::time::sleep(POLL).await;
        // Give the released calls' tasks a turn to finish.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let mut done = Vec::new();
        for call in calls {
            if call.is_finished() {
                done.push(call.await.unwrap());
            } else {
                call.abort();
            }
        }
        done.sort_by_key(|(id, _)| *id);
        assert_eq!(done.len(), 2, "{done:?}");
        assert!(matches!(done[0], (7, Released::Approved { .. })));
        assert!(matches!(done[1], (8, Released::Denied { .. })));
        assert!(started.elapsed() <= POLL);
        assert_eq!(store.queries(), 2, "one query for all 500 held calls");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_keeps_the_timeout_and_cancellation_of_each_call() {
        let store = Many::default();
        let waiter = Waiter::start(store.clone(), 8);
        let (_keep, rx) = oneshot::channel();
        assert_eq!(
            wait(&waiter, 1, timing(60), rx, |_| {}).await,
            Released::TimedOut
        );
        let (cancel, rx) = oneshot::channel();
        let _ = cancel.send(());
        assert_eq!(
            wait(&waiter, 2, timing(60), rx, |_| {}).await,
            Released::Cancelled
        );
        assert!(
            !store.set(2, Resolution::Approved),
            "the store says cancelled"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_resolution_before_the_call_is_watched_is_still_seen() {
        let store = Many::default();
        let waiter = Waiter::start(store.clone(), 8);
        store.set(3, Resolution::Approved);
        // Let the waiter record the version that already includes the approval.
        let (_keep, rx) = oneshot::channel();
        let first = tokio::spawn({
            let waiter = waiter.clone();
            async move { wait(&waiter, 4, timing(1), rx, |_| {}).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_keep, rx) = oneshot::channel();
        let got = wait(&waiter, 3, timing(300), rx, |_| {}).await;
        assert!(matches!(got, Released::Approved { .. }), "{got:?}");
        assert_eq!(first.await.unwrap(), Released::TimedOut);
    }

    #[tokio::test]
    async fn the_cap_denies_at_once_and_permits_come_back_on_drop() {
        let waiter = Waiter::start(Many::default(), 2);
        let a = waiter.try_hold().expect("first");
        let _b = waiter.try_hold().expect("second");
        let at_cap = waiter.try_hold().unwrap_err();
        assert_eq!(at_cap, AtCap { max: 2 });
        assert!(at_cap
            .to_string()
            .starts_with("2 calls from this server are already waiting for approval"));
        assert_eq!(waiter.held(), 2);
        drop(a);
        assert_eq!(waiter.held(), 1);
        assert!(waiter.try_hold().is_ok());
        assert_eq!(
            waiter.held(),
            1,
            "the permit was dropped at the end of the statement"
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(270)), "4m30s");
        assert_eq!(human(Duration::from_secs(300)), "5m");
        assert_eq!(human(Duration::from_secs(9)), "9s");
        assert_eq!(human(Duration::from_secs(61)), "1m01s");
    }
}
