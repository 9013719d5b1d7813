//! A wrapper's database connection and the thread that writes in the background.
//!
//! SQLite calls can block for seconds when another process holds the write lock, so they must
//! never stall the async workers. But a hop to a thread and back costs two wake-ups per call, more
//! than the commit itself. So a call the proxy waits for (a decision row) is first tried right
//! where it is, and only when that cannot finish at once (the connection is busy with background
//! work, another process holds the lock, the store is not open, or every commit is fsynced) is it
//! queued to the audit thread, which waits as long as it takes. Outcomes of forwarded calls are
//! not written on their own: they ride along in the next decision's transaction, or the thread
//! writes them when it has been idle for a moment, and always before it stops.
//!
//! Decisions are committed in groups: a call queues its row, and whoever holds the connection
//! (a deciding call, or the audit thread) commits every queued row in one transaction before it
//! lets go, then answers each. Every call still waits for its own row to be committed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use serde_json::Value;

use super::store::{
    now_rfc3339, DecisionRow, Durability, Hold, Outcome, OutcomeRow, Owner, RefusedFrame,
    Resolution, Resolved, SessionRecord, Store, StoreError,
};

/// Runs on the audit thread with the store, or with the reason it is unavailable.
type Job = Box<dyn FnOnce(Result<&mut Store, &str>) + Send>;

enum Command {
    Run(Job),
    /// Everything queued before this has run; stop.
    Finish,
}

/// A cheap, cloneable handle to the audit thread. While the store cannot be opened, every
/// request fails with the reason, so governed calls are denied (fail closed); the thread tries to
/// open it again before each request, so a wrapper that lost a race at start heals on its own.
#[derive(Clone)]
pub struct AuditHandle {
    inner: Result<mpsc::Sender<Command>, String>,
    /// The connection, shared with the audit thread (see the module docs).
    shared: Option<Arc<Shared>>,
    /// Why the store could not be opened at start, if it could not.
    at_start: Option<String>,
}

/// What the handles and the audit thread share.
struct Shared {
    opener: Mutex<Opener>,
    /// Outcomes waiting to be written with the next transaction. Never held across I/O.
    outcomes: Mutex<Vec<OutcomeRow>>,
    /// Decisions waiting for their commit (see the module docs). Never held across I/O.
    decisions: Mutex<Vec<Queued>>,
    /// Something was committed since the last idle checkpoint.
    dirty: AtomicBool,
}

/// A decision waiting for its commit, and who waits for it.
struct Queued {
    row: DecisionRow,
    hold: Option<Hold>,
    done: oneshot::Sender<Result<i64, String>>,
}

impl Shared {
    fn take_decisions(&self) -> Vec<Queued> {
        std::mem::take(
            &mut *self
                .decisions
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    fn decisions_waiting(&self) -> bool {
        !self
            .decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Commits every queued decision in one transaction with `opener` held, then answers each.
    /// `wait`: wait for other processes' locks (the audit thread); otherwise a contended batch
    /// is put back and `false` returned, and the caller hands it to the thread.
    fn commit_decisions(&self, opener: &mut Opener, wait: bool) -> bool {
        let batch = self.take_decisions();
        if batch.is_empty() {
            return true;
        }
        let store = match opener.get() {
            Ok(store) => store,
            Err(e) => {
                let e = e.to_owned();
                batch
                    .into_iter()
                    .for_each(|q| drop(q.done.send(Err(e.clone()))));
                return true;
            }
        };
        let outcomes = self.take_outcomes();
        let rows: Vec<(&DecisionRow, Option<&Hold>)> =
            batch.iter().map(|q| (&q.row, q.hold.as_ref())).collect();
        store.wait_for_locks(wait);
        let result = store.record_decisions(&rows, &outcomes);
        store.wait_for_locks(true);
        drop(rows);
        match result {
            Ok(ids) => {
                self.dirty.store(true, Ordering::Relaxed);
                for (q, id) in batch.into_iter().zip(ids) {
                    let _ = q.done.send(Ok(id));
                }
                true
            }
            Err(e) => {
                self.restore_outcomes(outcomes);
                if !wait && e.is_contention() {
                    let mut queue = self
                        .decisions
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    let newer = std::mem::take(&mut *queue);
                    *queue = batch;
                    queue.extend(newer);
                    return false;
                }
                let e = e.to_string();
                batch
                    .into_iter()
                    .for_each(|q| drop(q.done.send(Err(e.clone()))));
                true
            }
        }
    }

    fn opener(&self) -> std::sync::MutexGuard<'_, Opener> {
        // A panic inside a store call leaves the connection as SQLite left it: usable.
        self.opener.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_outcomes(&self) -> Vec<OutcomeRow> {
        std::mem::take(&mut *self.outcomes.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts back outcomes a failed transaction did not write (ahead of newer ones).
    fn restore_outcomes(&self, mut outcomes: Vec<OutcomeRow>) {
        if outcomes.is_empty() {
            return;
        }
        let mut pending = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        outcomes.append(&mut pending);
        *pending = outcomes;
    }

    /// Writes the waiting outcomes in a transaction of their own (idle, or stopping).
    fn flush_outcomes(&self, opener: &mut Opener) {
        let outcomes = self.take_outcomes();
        if outcomes.is_empty() {
            return;
        }
        match opener.get() {
            Ok(store) => {
                if let Err(e) = store.record_outcomes(&outcomes) {
                    crate::note!("could not record {} call outcome(s): {e}", outcomes.len());
                }
            }
            Err(e) => crate::note!("could not record {} call outcome(s): {e}", outcomes.len()),
        }
    }
}

/// Finished on shutdown so every queued row reaches the database before the process exits.
pub struct AuditThread(Option<(mpsc::Sender<Command>, JoinHandle<()>)>);

impl AuditThread {
    /// Runs everything queued so far, then stops the thread. Handles still held elsewhere
    /// see "the audit thread has stopped" afterwards (and deny).
    pub fn finish(self) {
        if let Some((sender, handle)) = self.0 {
            let _ = sender.send(Command::Finish);
            let _ = handle.join();
        }
    }
}

const STOPPED: &str = "the audit thread has stopped";

/// The store, or why it could not be opened (tried again on the next request).
struct Opener {
    path: PathBuf,
    durability: Durability,
    store: Result<Store, String>,
}

impl Opener {
    fn get(&mut self) -> Result<&mut Store, &str> {
        if self.store.is_err() {
            if let Ok(store) = Store::open_with(&self.path, self.durability) {
                crate::note!(
                    "audit store {} is available again; governed calls are decided as usual",
                    self.path.display()
                );
                self.store = Ok(store);
            }
        }
        match &mut self.store {
            Ok(store) => Ok(store),
            Err(e) => Err(e),
        }
    }
}

impl AuditHandle {
    /// Opens the store at `path` on a new thread. A store that cannot be opened still yields a
    /// handle: requests fail with the error (and the thread retries) until it opens.
    pub fn open(path: &Path, durability: Durability) -> (AuditHandle, AuditThread) {
        let store = Store::open_with(path, durability).map_err(|e| e.to_string());
        let at_start = store.as_ref().err().cloned();
        let opener = Opener {
            path: path.to_path_buf(),
            durability,
            store,
        };
        let shared = Arc::new(Shared {
            opener: Mutex::new(opener),
            outcomes: Mutex::new(Vec::new()),
            decisions: Mutex::new(Vec::new()),
            dirty: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel();
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("behavry-audit".into())
            .spawn(move || serve(&for_thread, rx));
        match thread {
            Ok(handle) => (
                AuditHandle {
                    inner: Ok(tx.clone()),
                    shared: Some(shared),
                    at_start,
                },
                AuditThread(Some((tx, handle))),
            ),
            Err(e) => (
                AuditHandle::unavailable(format!("cannot start the audit thread: {e}")),
                AuditThread(None),
            ),
        }
    }

    pub fn unavailable(reason: String) -> AuditHandle {
        AuditHandle {
            at_start: Some(reason.clone()),
            inner: Err(reason),
            shared: None,
        }
    }

    /// Why the store was unusable at start, if it was. Requests may succeed later: the store is
    /// opened again before each one while it is unavailable.
    pub fn error(&self) -> Option<&str> {
        self.at_start.as_deref()
    }

    /// Queues `job` on the audit thread without waiting.
    fn send(&self, job: Job) {
        if let Ok(sender) = &self.inner {
            let _ = sender.send(Command::Run(job));
        }
    }

    /// Runs `job` right here if that can finish at once (see the module docs), else on the audit
    /// thread; waits for its result.
    async fn call<T: Send + 'static>(
        &self,
        mut job: impl FnMut(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, String> {
        let here = self.try_here(&mut job);
        // Decisions queued while this held the connection are this holder's to commit.
        if let (Some(shared), Ok(thread)) = (&self.shared, &self.inner) {
            if shared.decisions_waiting() {
                lead(shared, thread);
            }
        }
        match here {
            Some(done) => done,
            None => self.on_thread(job).await,
        }
    }

    /// Runs `job` on the calling thread when the connection is free, the store is open, commits
    /// are not fsynced and no other process holds the write lock: `None` if it could not (and
    /// nothing was written).
    fn try_here<T>(
        &self,
        job: &mut impl FnMut(&mut Store) -> Result<T, StoreError>,
    ) -> Option<Result<T, String>> {
        let shared = self.shared.as_ref()?;
        let mut opener = shared.opener.try_lock().ok()?;
        let store = opener.store.as_mut().ok()?;
        if store.durability() == Durability::Full {
            return None;
        }
        store.wait_for_locks(false);
        let result = job(store);
        store.wait_for_locks(true);
        shared.dirty.store(true, Ordering::Relaxed);
        match result {
            Err(e) if e.is_contention() => None,
            other => Some(other.map_err(|e| e.to_string())),
        }
    }

    /// Runs `job` on the audit thread (which waits for other processes' locks) and waits for it.
    async fn on_thread<T: Send + 'static>(
        &self,
        mut job: impl FnMut(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, String> {
        let sender = self.inner.as_ref().map_err(Clone::clone)?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |store| {
            let result = match store {
                Ok(store) => job(store).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_owned()),
            };
            let _ = tx.send(result);
        });
        sender
            .send(Command::Run(job))
            .map_err(|_| STOPPED.to_string())?;
        rx.await.map_err(|_| STOPPED.to_string())?
    }

    /// Records a decision; resolves once the row is committed.
    pub async fn record(&self, row: DecisionRow) -> Result<i64, String> {
        self.decision(row, None).await
    }

    /// Records an escalated decision and its pending approval; resolves once both are committed.
    pub async fn record_escalation(&self, row: DecisionRow, hold: Hold) -> Result<i64, String> {
        self.decision(row, Some(hold)).await
    }

    /// Commits a decision row (with every other row queued meanwhile and the outcomes waiting to
    /// be written) and returns its id once it is committed.
    async fn decision(&self, row: DecisionRow, hold: Option<Hold>) -> Result<i64, String> {
        let (Some(shared), Ok(sender)) = (&self.shared, &self.inner) else {
            return Err(self.inner.as_ref().err().cloned().unwrap_or_default());
        };
        let (done, committed) = oneshot::channel();
        shared
            .decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Queued { row, hold, done });
        lead(shared, sender);
        committed.await.map_err(|_| STOPPED.to_string())?
    }

    /// How the escalation `id` was resolved, if it was.
    pub async fn resolution(&self, id: i64) -> Result<Option<Resolved>, String> {
        self.call(move |store| store.resolution(id)).await
    }

    /// The resolved ones among escalations `ids`.
    pub async fn resolutions(&self, ids: Vec<i64>) -> Result<Vec<(i64, Resolved)>, String> {
        self.call(move |store| store.resolutions(&ids)).await
    }

    /// Changes whenever another process commits to the store (see [`Store::data_version`]).
    pub async fn data_version(&self) -> Result<i64, String> {
        self.call(|store| store.data_version()).await
    }

    /// Resolves the escalation `id` if it is still pending; whether this call resolved it.
    pub async fn resolve(
        &self,
        id: i64,
        resolution: Resolution,
        by: &'static str,
    ) -> Result<bool, String> {
        self.call(move |store| store.resolve(id, None, resolution, None, by))
            .await
    }

    /// Resolves the escalation `id` on behalf of a person (`by`), with their reason; whether this
    /// call resolved it (the first resolution wins).
    pub async fn resolve_by(
        &self,
        id: i64,
        resolution: Resolution,
        reason: Option<String>,
        by: String,
    ) -> Result<bool, String> {
        self.call(move |store| store.resolve(id, None, resolution, reason.as_deref(), &by))
            .await
    }

    /// Resolves `abandoned` every escalation this process still holds.
    pub async fn abandon_held(&self, owner: Owner) -> Result<usize, String> {
        self.call(move |store| store.abandon_held(owner)).await
    }

    /// Queues `job`; nothing waits for it. A failure is reported on stderr as "could not record
    /// {what}".
    fn queue(
        &self,
        what: impl FnOnce() -> String + Send + 'static,
        job: impl FnOnce(&mut Store) -> Result<(), StoreError> + Send + 'static,
    ) {
        self.send(Box::new(move |store| {
            let result = match store {
                Ok(store) => job(store).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_owned()),
            };
            if let Err(e) = result {
                crate::note!("could not record {}: {e}", what());
            }
        }));
    }

    /// Appends a record that is not about one decision; nothing waits for it.
    pub fn event(&self, kind: super::chain::Kind, body: serde_json::Value) {
        self.queue(
            move || format!("a {} event", kind.as_str()),
            move |store| store.record_event(kind, &body).map(drop),
        );
    }

    /// Records that the client cancelled forwarded call `id` before it was answered (outcome
    /// `cancelled`); nothing waits for it. A held call cancelled by the client is resolved
    /// `cancelled` by the approval code instead, and shows the same outcome.
    pub fn cancelled(&self, id: i64, duration_ms: f64) {
        self.outcome(id, Outcome::Cancelled, duration_ms);
    }

    /// Records a client frame refused before evaluation; nothing waits for it. `what` names the
    /// refusal (`parse_error`, `duplicate_key`, `bad_id`, …), `reason` is what the client was
    /// told, `id` the request id if it could be read, `line` the line as received (the journal
    /// keeps its SHA-256, length and first bytes).
    pub fn refused_frame(
        &self,
        session_id: &str,
        server: &str,
        what: &str,
        reason: &str,
        id: Option<&Value>,
        line: &[u8],
    ) {
        let body = RefusedFrame {
            session_id,
            server,
            what,
            reason,
            id,
            line,
        }
        .body();
        self.event(super::chain::Kind::RefusedFrame, body);
    }

    /// Records a session's client (`clientInfo`), protocol version and capabilities, once per
    /// session; nothing waits for it.
    pub fn session(&self, session: SessionRecord) {
        self.queue(
            || "the session's client".to_owned(),
            move |store| store.record_session(&session).map(drop),
        );
    }

    /// Records a request the server sent the client (`sampling/createMessage`, `roots/list`, …);
    /// `params` are redacted by the store. Nothing waits for it.
    pub fn server_request(
        &self,
        session_id: &str,
        server: &str,
        method: &str,
        id: &Value,
        params: &Value,
    ) {
        let (session_id, server, method) =
            (session_id.to_owned(), server.to_owned(), method.to_owned());
        let (id, params) = (id.clone(), params.clone());
        let what = format!("the server's {method} request");
        self.queue(
            move || what,
            move |store| {
                store
                    .record_server_request(&session_id, &server, &method, &id, &params)
                    .map(drop)
            },
        );
    }

    /// Records a policy reload applied (`failed: None`) or rejected (`failed: Some(errors)`);
    /// `policy_hash` is the set in force afterwards, `detail` the rest (`files`, or
    /// `rejected_hash`). Nothing waits for it.
    pub fn policy_reload(
        &self,
        session_id: &str,
        server: &str,
        policy_hash: Option<&str>,
        detail: Value,
        failed: bool,
    ) {
        let kind = if failed {
            super::chain::Kind::PolicyReloadFailed
        } else {
            super::chain::Kind::PolicyReload
        };
        let mut body = match detail {
            Value::Object(map) => Value::Object(map),
            other => serde_json::json!({ "detail": other }),
        };
        body["session_id"] = session_id.into();
        body["server"] = server.into();
        body["policy_hash"] = policy_hash.into();
        self.event(kind, body);
    }

    /// Records a team bundle put in force (`failed: false`) or refused; `policy_hash` is the set
    /// in force afterwards, `detail` the bundle, revision, etag, signer and errors.
    pub fn bundle_activation(
        &self,
        session_id: &str,
        server: &str,
        policy_hash: &str,
        detail: Value,
        failed: bool,
    ) {
        let kind = if failed {
            super::chain::Kind::BundleActivationFailed
        } else {
            super::chain::Kind::BundleActivated
        };
        let mut body = match detail {
            Value::Object(map) => Value::Object(map),
            other => serde_json::json!({ "detail": other }),
        };
        body["session_id"] = session_id.into();
        body["server"] = server.into();
        body["policy_hash"] = policy_hash.into();
        self.event(kind, body);
    }

    /// Notes the outcome of a forwarded call; nothing waits for it. It is written with the next
    /// decision, or by the audit thread once idle (see the module docs).
    pub fn outcome(&self, id: i64, outcome: Outcome, duration_ms: f64) {
        if let Some(shared) = &self.shared {
            let row = OutcomeRow {
                id,
                outcome,
                duration_ms,
                ts: now_rfc3339(),
            };
            shared
                .outcomes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(row);
        }
    }
}

/// Commits the queued decisions here if the connection is free and the commit can finish at once;
/// otherwise whoever holds the connection commits them before letting go, or the audit thread
/// does (it waits for other processes' locks, and for every fsync with `durability = "full"`).
fn lead(shared: &Arc<Shared>, thread: &mpsc::Sender<Command>) {
    loop {
        let Ok(mut opener) = shared.opener.try_lock() else {
            // The holder commits what is queued before it lets go.
            return;
        };
        let here = matches!(&opener.store, Ok(store) if store.durability() == Durability::Normal);
        if !here || !shared.commit_decisions(&mut opener, false) {
            drop(opener);
            // An empty job: after every job, the thread commits what is queued (waiting as long
            // as it takes).
            let _ = thread.send(Command::Run(Box::new(|_| {})));
            return;
        }
        drop(opener);
        // Rows queued while this commit ran: their callers found the connection busy.
        if !shared.decisions_waiting() {
            return;
        }
    }
}

/// How long the audit thread must be idle before it folds the WAL back into the database.
const IDLE_CHECKPOINT: Duration = Duration::from_millis(100);

/// Commits decisions that were queued while the thread held the connection and so found it busy:
/// each holder commits what is waiting after it lets go (see [`lead`]).
fn commit_waiting(shared: &Shared) {
    while shared.decisions_waiting() {
        let mut opener = shared.opener();
        shared.commit_decisions(&mut opener, true);
    }
}

fn serve(shared: &Shared, rx: mpsc::Receiver<Command>) {
    // Checkpoints copy the WAL into the database and may fsync; SQLite runs them inside whichever
    // commit crosses the threshold, stalling that call. Run them while idle instead.
    if let Ok(store) = &shared.opener().store {
        store.defer_checkpoints();
    }
    loop {
        match rx.recv_timeout(IDLE_CHECKPOINT) {
            Ok(Command::Run(job)) => {
                let mut opener = shared.opener();
                let reopened = opener.store.is_err();
                let store = opener.get();
                if let (Ok(store), true) = (&store, reopened) {
                    store.defer_checkpoints();
                }
                job(store);
                shared.dirty.store(true, Ordering::Relaxed);
                // Decisions queued while this job held the connection.
                shared.commit_decisions(&mut opener, true);
                drop(opener);
                commit_waiting(shared);
            }
            Ok(Command::Finish) | Err(RecvTimeoutError::Disconnected) => {
                let mut opener = shared.opener();
                shared.commit_decisions(&mut opener, true);
                shared.flush_outcomes(&mut opener);
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                let mut opener = shared.opener();
                shared.commit_decisions(&mut opener, true);
                shared.flush_outcomes(&mut opener);
                if shared.dirty.swap(false, Ordering::Relaxed) {
                    if let Ok(store) = &opener.store {
                        store.checkpoint();
                    }
                }
                drop(opener);
                commit_waiting(shared);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::store::tests::row;
    use crate::audit::store::LogFilter;

    fn rows(path: &Path) -> Vec<crate::audit::LogEntry> {
        Store::open(path)
            .and_then(|s| s.query(&LogFilter::default()))
            .expect("query")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn decisions_commit_here_or_wait_on_the_thread_and_carry_outcomes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("behavry.db");
        let (audit, thread) = AuditHandle::open(&path, Durability::Normal);
        let first = audit
            .record(row("allow", "read_file"))
            .await
            .expect("first");
        // An outcome alone writes nothing yet: it waits for the next transaction.
        audit.outcome(first, Outcome::Ok, 1.25);
        // Another process holds the write lock: the decision cannot commit here, so it waits on
        // the audit thread, and still commits (with the outcome) once the lock is released.
        let other = rusqlite::Connection::open(&path).expect("other connection");
        other.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let second = {
            let audit = audit.clone();
            tokio::spawn(async move { audit.record(row("deny", "write_file")).await })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!second.is_finished(), "a decision never skips the lock");
        other.execute_batch("COMMIT").expect("unlock");
        let second = second.await.expect("task").expect("second");
        assert!(second > first);
        let logged = rows(&path);
        assert_eq!(logged.len(), 2);
        assert_eq!(logged[0].outcome.as_deref(), Some("ok"));
        assert_eq!(logged[0].duration_ms, Some(1.25));
        // An outcome with no decision after it is written when the thread is idle, or at the end.
        audit.outcome(second, Outcome::IsError, 2.0);
        thread.finish();
        assert_eq!(rows(&path)[1].outcome.as_deref(), Some("is_error"));
        let mut store = Store::open(&path).expect("reopen");
        let verified = store.verify();
        assert!(matches!(verified, Ok(Ok(_))), "{verified:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_calls_deciding_at_once_each_wait_for_their_own_commit() {
        for durability in [Durability::Normal, Durability::Full] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = Arc::new(dir.path().join("behavry.db"));
            let (audit, thread) = AuditHandle::open(&path, durability);
            let calls: Vec<_> = (0..32)
                .map(|i| {
                    let (audit, path) = (audit.clone(), path.clone());
                    tokio::spawn(async move {
                        let id = audit.record(row("allow", &format!("t{i}"))).await;
                        let id = id.expect("recorded");
                        // Committed before the call hears its id: another connection sees it.
                        let committed = rows(&path).iter().any(|r| r.id == id);
                        (id, committed)
                    })
                })
                .collect();
            let mut ids = Vec::new();
            for call in calls {
                let (id, committed) = call.await.expect("task");
                assert!(
                    committed,
                    "row {id} was answered before its commit ({durability:?})"
                );
                ids.push(id);
            }
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), 32);
            thread.finish();
            let verified = Store::open(&path).expect("reopen").verify();
            assert!(matches!(verified, Ok(Ok(_))), "{verified:?}");
        }
    }
}
