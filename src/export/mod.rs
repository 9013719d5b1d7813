//! Decision logs: journal records pushed to the team's collector (`[decision_log]`).
//!
//! The journal is the spool. Each sink keeps a cursor in the store (`audit::export`); one
//! exporter thread per database (whoever holds the lease among the wrappers sharing it) reads the
//! committed records past each cursor in batches (at most [`BATCH_RECORDS`] records and
//! [`BATCH_BYTES`] bytes), maps them ([`event`]), sends them ([`sink`]) and moves the cursor only
//! after a 2xx: delivery is at least once, and every event carries the journal's instance id,
//! its seq and its chain hash so a collector can drop what it already has.
//!
//! The exporter must never slow the proxy: it has its own connection, holds no lock while it
//! talks to a collector, and nothing on the per-call path knows it exists.

pub mod event;
pub mod sink;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::audit::chain::Kind;
use crate::audit::export::{gap_body, Cursor};
use crate::audit::store::{format_ts, Owner};
use crate::audit::{Store, StoreError};
use crate::policy::{Live, PolicySet};
use crate::team::DecisionLogConfig;
use sink::{Delivery, Origin, Sink};

/// The most records one request carries.
pub const BATCH_RECORDS: usize = 512;
/// The most bytes of records one request carries (one larger record still goes alone).
pub const BATCH_BYTES: usize = 1 << 20;

/// The sinks `config` names, in a fixed order.
pub fn sinks(config: &DecisionLogConfig) -> Vec<Sink> {
    let mut sinks = Vec::new();
    if let Some(opa) = &config.opa {
        sinks.push(Sink::Opa(opa.clone()));
    }
    if let Some(otlp) = &config.otlp {
        sinks.push(Sink::Otlp(otlp.clone()));
    }
    sinks
}

/// The running exporter thread. Dropping it asks the thread to stop; it is never waited for, so
/// a collector that does not answer cannot delay a wrapper's exit (the lease of a process that
/// is gone is taken over by the next one).
pub struct Exporter {
    _stop: mpsc::Sender<()>,
}

/// Starts the exporter for `database` when `config` names a sink; `None` otherwise.
pub fn start(database: PathBuf, config: DecisionLogConfig, policy: Live) -> Option<Exporter> {
    if sinks(&config).is_empty() {
        return None;
    }
    let (stop, stopped) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("behavry-export".into())
        .spawn(move || run(&database, &config, &policy, &stopped));
    match spawned {
        Ok(_) => Some(Exporter { _stop: stop }),
        Err(e) => {
            crate::note!(
                "decision logs are not exported by this wrapper: cannot start its thread: {e}"
            );
            None
        }
    }
}

/// Per sink: when it may be tried again, after failures.
#[derive(Default)]
struct Backoff {
    failures: u32,
    not_before: Option<Instant>,
}

fn run(database: &Path, config: &DecisionLogConfig, policy: &Live, stop: &mpsc::Receiver<()>) {
    let interval = Duration::from_secs(config.interval_secs.max(1));
    let owner = Owner::current();
    let sinks = sinks(config);
    let mut backoff: Vec<Backoff> = sinks.iter().map(|_| Backoff::default()).collect();
    let mut store: Option<(Store, Origin)> = None;
    let mut last_error = String::new();
    loop {
        if store.is_none() {
            match open(database, config) {
                Ok(opened) => store = Some(opened),
                Err(e) => {
                    let e = e.to_string();
                    if e != last_error {
                        crate::note!("decision logs: cannot open the audit database: {e}");
                        last_error = e;
                    }
                }
            }
        }
        let mut wait = interval;
        if let Some((store, origin)) = &mut store {
            if holds_lease(store, owner, interval) {
                let policy = policy.current();
                for (sink, state) in sinks.iter().zip(&mut backoff) {
                    let now = Instant::now();
                    if let Some(not_before) = state.not_before.filter(|t| *t > now) {
                        wait = wait.min(not_before - now);
                        continue;
                    }
                    let mut pass = Pass {
                        store,
                        sink,
                        origin,
                        config,
                        policy: Some(&policy),
                        lease: Some((owner, interval)),
                    };
                    match pass.drain() {
                        Ok(()) => *state = Backoff::default(),
                        Err(Failure::Retry { after, .. }) => {
                            state.failures += 1;
                            let random = uuid::Uuid::new_v4().as_u128() as u64;
                            let after =
                                after.unwrap_or_else(|| sink::backoff(state.failures, random));
                            state.not_before = Some(Instant::now() + after);
                            wait = wait.min(after);
                        }
                        Err(Failure::Store(_) | Failure::LeaseLost) => {}
                    }
                }
            }
        }
        match stop.recv_timeout(wait.max(Duration::from_millis(50))) {
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            _ => break,
        }
    }
    if let Some((mut store, _)) = store {
        let _ = store.release_export_lease(owner);
    }
}

fn open(database: &Path, config: &DecisionLogConfig) -> Result<(Store, Origin), StoreError> {
    let store = Store::open(database)?;
    let origin = Origin {
        instance_id: store.instance_id()?,
        host_name: host_name(),
        labels: config.labels.clone(),
    };
    Ok((store, origin))
}

/// How long a lease lasts past its last renewal: longer than one request can take, so a live
/// holder in the middle of a slow send keeps it.
fn lease_ttl(interval: Duration) -> i64 {
    (interval.as_secs() * 3 + 60) as i64
}

/// Whether `owner` holds the lease, taking or renewing it when needed. Only a read when another
/// live process holds it, or when ours has more than half its time left: a wrapper that does not
/// export adds no writes to the database.
fn holds_lease(store: &mut Store, owner: Owner, interval: Duration) -> bool {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let ttl = lease_ttl(interval);
    match store.export_lease() {
        Ok(Some(lease)) if lease.owner == owner && lease.expires_at - now > ttl / 2 => return true,
        Ok(Some(lease))
            if lease.owner != owner && lease.expires_at >= now && lease.owner.is_alive() =>
        {
            return false
        }
        Err(_) => return false,
        _ => {}
    }
    store
        .take_export_lease(owner, now, now + ttl)
        .unwrap_or(false)
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Why a pass stopped before the sink caught up.
#[derive(Debug)]
pub enum Failure {
    /// The sink did not take a batch; try again (after `after`, if it said).
    Retry {
        error: String,
        after: Option<Duration>,
    },
    Store(StoreError),
    /// Another process holds the lease now.
    LeaseLost,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Retry { error, .. } => f.write_str(error),
            Failure::Store(e) => write!(f, "{e}"),
            Failure::LeaseLost => f.write_str("another process took over exporting"),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::Store(e)
    }
}

/// One sink brought up to date.
struct Pass<'a> {
    store: &'a mut Store,
    sink: &'a Sink,
    origin: &'a Origin,
    config: &'a DecisionLogConfig,
    policy: Option<&'a PolicySet>,
    /// The lease to renew between batches (`None`: `export flush` sending on its own).
    lease: Option<(Owner, Duration)>,
}

impl Pass<'_> {
    /// Sends batches until the sink has every committed record, or one fails.
    fn drain(&mut self) -> Result<(), Failure> {
        self.bound_backlog()?;
        loop {
            let cursor = self.store.export_cursor(self.sink.name())?.last_acked_seq;
            let batch = self
                .store
                .journal_after(cursor, BATCH_RECORDS, BATCH_BYTES)?;
            let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                return Ok(());
            };
            let (first, through) = (first.seq, last.seq);
            if first > cursor + 1 {
                // Pruned (`log --prune --force`) before this sink had them, even before it had
                // anything at all: say so, then go on.
                let body = gap_body(self.sink.name(), cursor + 1, first - 1, "pruned");
                self.store
                    .skip_export(self.sink.name(), Kind::ExportGap, first - 1, &body)?;
                continue;
            }
            let events: Vec<event::Event> = batch
                .iter()
                .filter(|r| r.kind != Kind::Genesis.as_str())
                .map(|r| event::map(r, self.config.arguments, self.policy))
                .collect();
            if events.is_empty() {
                self.store.ack_export(self.sink.name(), through, 0)?;
                continue;
            }
            let request = self
                .sink
                .encode(self.origin, &events)
                .map_err(|e| Failure::Retry {
                    error: format!("cannot encode a batch: {e}"),
                    after: None,
                })?;
            match sink::post(self.sink, &request) {
                Delivery::Accepted => {
                    self.store
                        .ack_export(self.sink.name(), through, events.len() as i64)?;
                }
                Delivery::Retry { error, after } => {
                    self.store.export_failed(self.sink.name(), &error)?;
                    return Err(Failure::Retry { error, after });
                }
                Delivery::Rejected { status, error } => {
                    self.store.export_failed(self.sink.name(), &error)?;
                    crate::note!(
                        "decision logs: {} refused records {first}..{through} ({error}); they are set aside (an export_rejected record says which)",
                        self.sink.url()
                    );
                    // A batch of nothing but the exporter's own records is dropped without a
                    // new record, or a sink that refuses everything would be fed forever.
                    let own = |k: &str| {
                        k == Kind::ExportRejected.as_str() || k == Kind::ExportGap.as_str()
                    };
                    if events.iter().all(|e| own(&e.kind)) {
                        self.store.ack_export(self.sink.name(), through, 0)?;
                    } else {
                        let body = serde_json::json!({
                            "session_id": "", "server": "", "sink": self.sink.name(),
                            "from_seq": first, "through_seq": through, "records": events.len(),
                            "status": status, "error": error,
                        });
                        self.store.skip_export(
                            self.sink.name(),
                            Kind::ExportRejected,
                            through,
                            &body,
                        )?;
                    }
                }
            }
            if let Some((owner, interval)) = self.lease {
                if !holds_lease(self.store, owner, interval) {
                    return Err(Failure::LeaseLost);
                }
            }
        }
    }

    /// Past `max_backlog_rows` unsent records, or records older than `max_backlog_secs`, skips
    /// ahead and journals an `export_gap` naming the records skipped. It keeps the newest half
    /// of the row budget, so the gap record itself does not tip the backlog over again.
    fn bound_backlog(&mut self) -> Result<(), Failure> {
        let name = self.sink.name();
        let cursor = self.store.export_cursor(name)?.last_acked_seq;
        let Some((first, first_ts)) = self.store.first_after(cursor)? else {
            return Ok(());
        };
        let head = self.store.head_seq()?;
        let max_rows = self.config.max_backlog_rows as i64;
        let mut through = None;
        let mut why = "";
        if head - cursor > max_rows {
            through = Some(head - max_rows / 2);
            why = "max_backlog_rows";
        }
        let cutoff =
            time::OffsetDateTime::now_utc() - Duration::from_secs(self.config.max_backlog_secs);
        let cutoff = format_ts(cutoff);
        if first_ts < cutoff {
            if let Some(old) = self.store.last_before(cursor, &cutoff)? {
                if through.is_none_or(|t| old > t) {
                    through = Some(old);
                    why = "max_backlog_secs";
                }
            }
        }
        if let Some(through) = through.filter(|t| *t >= first) {
            crate::note!(
                "decision logs: {} is {} records behind; records {first}..{through} will not be sent to it ({why})",
                self.sink.url(),
                head - cursor
            );
            let body = gap_body(name, first, through, why);
            self.store
                .skip_export(name, Kind::ExportGap, through, &body)?;
        }
        Ok(())
    }
}

/// One sink as `behavry export status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SinkStatus {
    pub sink: String,
    pub url: String,
    #[serde(flatten)]
    pub cursor: Cursor,
    /// Records past the cursor.
    pub backlog: i64,
}

/// Where every configured sink stands.
pub fn status(store: &Store, config: &DecisionLogConfig) -> Result<Vec<SinkStatus>, StoreError> {
    let head = store.head_seq()?;
    sinks(config)
        .iter()
        .map(|sink| {
            let cursor = store.export_cursor(sink.name())?;
            Ok(SinkStatus {
                sink: sink.name().to_owned(),
                url: sink.url(),
                backlog: (head - cursor.last_acked_seq).max(0),
                cursor,
            })
        })
        .collect()
}

/// What `flush` did for one sink: how many records it sent, or why it stopped.
#[derive(Debug)]
pub struct Flushed {
    pub sink: String,
    pub result: Result<i64, String>,
}

/// `behavry export flush`: sends every committed record to every sink now, without waiting out
/// a backoff. Returns each sink's result.
pub fn flush(
    store: &mut Store,
    config: &DecisionLogConfig,
    policy: Option<&PolicySet>,
) -> Result<Vec<Flushed>, StoreError> {
    let origin = Origin {
        instance_id: store.instance_id()?,
        host_name: host_name(),
        labels: config.labels.clone(),
    };
    let mut results = Vec::new();
    for sink in sinks(config) {
        let before = store.export_cursor(sink.name())?.sent;
        let mut pass = Pass {
            store,
            sink: &sink,
            origin: &origin,
            config,
            policy,
            lease: None,
        };
        let result = match pass.drain() {
            Ok(()) => Ok(store.export_cursor(sink.name())?.sent - before),
            Err(e) => Err(e.to_string()),
        };
        results.push(Flushed {
            sink: sink.name().to_owned(),
            result,
        });
    }
    Ok(results)
}
