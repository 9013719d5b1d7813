//! The thread that owns a wrapper's database connection. SQLite calls block (and may wait on other
//! processes' locks), so they run here, never on the async workers; the proxy talks to this thread
//! through [`AuditHandle`]. Commands run one at a time, in the order they were sent.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use serde_json::Value;

use super::store::{
    DecisionRow, Durability, Hold, Outcome, Owner, RefusedFrame, Resolution, Resolved,
    SessionRecord, Store, StoreError,
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
    /// Why the store could not be opened at start, if it could not.
    at_start: Option<String>,
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
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("behavry-audit".into())
            .spawn(move || serve(opener, rx));
        match thread {
            Ok(handle) => (
                AuditHandle {
                    inner: Ok(tx.clone()),
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

    /// Runs `job` on the audit thread and waits for its result.
    async fn call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
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
        self.call(move |store| store.record_decision(&row)).await
    }

    /// Records an escalated decision and its pending approval; resolves once both are committed.
    pub async fn record_escalation(&self, row: DecisionRow, hold: Hold) -> Result<i64, String> {
        self.call(move |store| store.record_escalation(&row, &hold))
            .await
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

    /// Queues the outcome of a forwarded call; nothing waits for it.
    pub fn outcome(&self, id: i64, outcome: Outcome, duration_ms: f64) {
        self.queue(
            move || format!("the outcome of audit row {id}"),
            move |store| store.record_outcome(id, outcome, duration_ms),
        );
    }
}

/// How long the audit thread must be idle before it folds the WAL back into the database.
const IDLE_CHECKPOINT: Duration = Duration::from_millis(100);

fn serve(mut opener: Opener, rx: mpsc::Receiver<Command>) {
    let mut deferred = false;
    let mut dirty = false;
    loop {
        match rx.recv_timeout(IDLE_CHECKPOINT) {
            Ok(Command::Run(job)) => {
                let store = opener.get();
                if let (Ok(store), false) = (&store, deferred) {
                    // Checkpoints copy the WAL into the database and may fsync; SQLite runs them
                    // inside whichever commit crosses the threshold, stalling that call. Run them
                    // while idle instead.
                    store.defer_checkpoints();
                    deferred = true;
                }
                job(store);
                dirty = true;
            }
            Ok(Command::Finish) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) if dirty => {
                if let Ok(store) = &opener.store {
                    store.checkpoint();
                }
                dirty = false;
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}
