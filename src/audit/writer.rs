//! The thread that owns a wrapper's database connection. SQLite calls block (and may wait on other
//! processes' locks), so they run here, never on the async workers; the proxy talks to this thread
//! through [`AuditHandle`].

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::store::{DecisionRow, Outcome, ServerRequestRow, Store};

enum Command {
    Decision(Box<DecisionRow>, oneshot::Sender<Result<i64, String>>),
    Outcome {
        id: i64,
        outcome: Outcome,
        duration_ms: f64,
    },
    /// A request the server sent the client; nothing waits for it.
    ServerRequest(Box<ServerRequestRow>),
    /// Everything queued before this has been written; stop.
    Finish,
}

/// A cheap, cloneable handle to the audit thread. If the store could not be opened, every
/// `record` fails with the reason, so governed calls are denied (fail closed).
#[derive(Clone)]
pub struct AuditHandle {
    inner: Result<mpsc::Sender<Command>, String>,
}

/// Finished on shutdown so every queued row reaches the database before the process exits.
pub struct AuditThread(Option<(mpsc::Sender<Command>, JoinHandle<()>)>);

impl AuditThread {
    /// Writes everything queued so far, then stops the thread. Handles still held elsewhere
    /// see "the audit thread has stopped" afterwards (and deny).
    pub fn finish(self) {
        if let Some((sender, handle)) = self.0 {
            let _ = sender.send(Command::Finish);
            let _ = handle.join();
        }
    }
}

impl AuditHandle {
    /// Opens the store at `path` on a new thread. A store that cannot be opened still yields a
    /// handle, one that refuses every record with the error.
    pub fn open(path: &Path) -> (AuditHandle, AuditThread) {
        let store = match Store::open(path) {
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

    /// Records a decision; resolves once the row is committed.
    pub async fn record(&self, row: DecisionRow) -> Result<i64, String> {
        let sender = self.inner.as_ref().map_err(Clone::clone)?;
        let (tx, rx) = oneshot::channel();
        sender
            .send(Command::Decision(Box::new(row), tx))
            .map_err(|_| "the audit thread has stopped".to_string())?;
        rx.await
            .map_err(|_| "the audit thread has stopped".to_string())?
    }

    /// Queues the outcome of a forwarded call; nothing waits for it.
    pub fn outcome(&self, id: i64, outcome: Outcome, duration_ms: f64) {
        if let Ok(sender) = &self.inner {
            let _ = sender.send(Command::Outcome {
                id,
                outcome,
                duration_ms,
            });
        }
    }
}

impl AuditHandle {
    /// Queues a server-to-client request for the audit log; nothing waits for it, but it is
    /// written before [`AuditThread::finish`] returns.
    pub fn server_request(&self, row: ServerRequestRow) {
        if let Ok(sender) = &self.inner {
            let _ = sender.send(Command::ServerRequest(Box::new(row)));
        }
    }
}

fn serve(mut store: Store, rx: mpsc::Receiver<Command>) {
    for command in rx {
        match command {
            Command::Decision(row, reply) => {
                let _ = reply.send(store.record_decision(&row).map_err(|e| e.to_string()));
            }
            Command::Outcome {
                id,
                outcome,
                duration_ms,
            } => {
                if let Err(e) = store.record_outcome(id, outcome, duration_ms) {
                    crate::note!("could not record the outcome of audit row {id}: {e}");
                }
            }
            Command::ServerRequest(row) => {
                if let Err(e) = store.record_server_request(&row) {
                    crate::note!("could not record the server's {} request: {e}", row.method);
                }
            }
            Command::Finish => return,
        }
    }
}
