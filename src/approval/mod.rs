//! Holding an escalated call until a person resolves it.
//!
//! The wrapper records the escalation as pending in the shared store, then [`wait`]s: it polls the
//! store for a resolution written by `behavry approve` (in any process), and resolves the call
//! itself on timeout or cancellation. Every resolution goes through one conditional update in the
//! store, so the first one wins and the others see it.
//!
//! Why polling: the store is already the one place every wrapper and approver share, it survives
//! any of them crashing, and a 50 ms poll of one indexed row keeps keypress-to-forward well under
//! 250 ms without sockets or file watchers to clean up. Polling runs only while a call is held.

use std::future::Future;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};

use crate::audit::store::{Resolution, Resolved};
use crate::audit::AuditHandle;

/// How often a held call looks for its resolution.
pub const POLL: Duration = Duration::from_millis(50);

/// Who resolved a call when no person did.
pub const BY_TIMEOUT: &str = "behavry (approval timeout)";
pub const BY_CLIENT: &str = "behavry (the client cancelled the request)";

/// The store operations a held call needs; the audit handle in production, a fake in tests.
pub trait Resolver {
    fn resolution(&self, id: i64) -> impl Future<Output = Result<Option<Resolved>, String>> + Send;
    fn resolve(
        &self,
        id: i64,
        resolution: Resolution,
        by: &'static str,
    ) -> impl Future<Output = Result<bool, String>> + Send;
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
    let mut poll = interval_at(start + POLL, POLL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let every = every.max(POLL);
    let mut alive = interval_at(start + every, every);
    alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
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
            _ = poll.tick() => match store.resolution(id).await {
                Ok(Some(resolved)) => return released(resolved),
                Ok(None) => {}
                Err(e) => return Released::Failed(e),
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
    use std::sync::{Arc, Mutex};

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

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(270)), "4m30s");
        assert_eq!(human(Duration::from_secs(300)), "5m");
        assert_eq!(human(Duration::from_secs(9)), "9s");
        assert_eq!(human(Duration::from_secs(61)), "1m01s");
    }
}
