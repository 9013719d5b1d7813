//! The thread that owns a wrapper's database connection. SQLite calls block (and may wait on other
//! processes' locks), so they run here, never on the async workers; the proxy talks to this thread
//! through [`AuditHandle`]. Commands run one at a time, in the order they were sent.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use super::store::{
    DecisionRow, Durability, Hold, Outcome, Owner, Resolution, Resolved, Store, StoreError,
};

type Job = Box<dyn FnOnce(&mut Store) + Send>;

enum Command {
    Run(Job),
    /// Everything queued before this has run; stop.
    Finish,
}

/// A cheap, cloneable handle to the audit thread. If the store could not be opened, every
/// request fails with the reason, so governed calls are denied (fail closed).
#[derive(Clone)]
pub struct AuditHandle {
    inner: Result<mpsc::Sender<Command>, String>,
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

impl AuditHandle {
    /// Opens the store at `path` on a new thread. A store that cannot be opened still yields a
    /// handle, one that refuses every request with the error.
    pub fn open(path: &Path, durability: Durability) -> (AuditHandle, AuditThread) {
        let store = match Store::open_with(path, durability) {
            Ok(store) => store,
            Err(e) => return (AuditHandle::unavailable(e.to_string()), AuditThread(None)),
        };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("behavry-audit".into())
            .spawn(move || serve(store, rx));
        match thread {
            Ok(handle) => (
                AuditHandle {
                    inner: Ok(tx.clone()),
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
        AuditHandle { inner: Err(reason) }
    }

    /// The reason the store is unusable, if it is.
    pub fn error(&self) -> Option<&str> {
        self.inner.as_ref().err().map(String::as_str)
    }

    /// Runs `job` on the audit thread and waits for its result.
    async fn call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, String> {
        let sender = self.inner.as_ref().map_err(Clone::clone)?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |store| {
            let _ = tx.send(job(store).map_err(|e| e.to_string()));
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

    /// Appends a record that is not about one decision; nothing waits for it.
    pub fn event(&self, kind: super::chain::Kind, body: serde_json::Value) {
        if let Ok(sender) = &self.inner {
            let job: Job = Box::new(move |store| {
                if let Err(e) = store.record_event(kind, &body) {
                    crate::note!("could not record a {} event: {e}", kind.as_str());
                }
            });
            let _ = sender.send(Command::Run(job));
        }
    }

    /// Queues the outcome of a forwarded call; nothing waits for it.
    pub fn outcome(&self, id: i64, outcome: Outcome, duration_ms: f64) {
        if let Ok(sender) = &self.inner {
            let job: Job = Box::new(move |store| {
                if let Err(e) = store.record_outcome(id, outcome, duration_ms) {
                    crate::note!("could not record the outcome of audit row {id}: {e}");
                }
            });
            let _ = sender.send(Command::Run(job));
        }
    }
}

/// How long the audit thread must be idle before it folds the WAL back into the database.
const IDLE_CHECKPOINT: Duration = Duration::from_millis(100);

fn serve(mut store: Store, rx: mpsc::Receiver<Command>) {
    // Checkpoints copy the WAL into the database and may fsync; SQLite runs them inside whichever
    // commit crosses the threshold, stalling that call. Run them while idle instead.
    store.defer_checkpoints();
    let mut dirty = false;
    loop {
        match rx.recv_timeout(IDLE_CHECKPOINT) {
            Ok(Command::Run(job)) => {
                job(&mut store);
                dirty = true;
            }
            Ok(Command::Finish) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) if dirty => {
                store.checkpoint();
                dirty = false;
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}
