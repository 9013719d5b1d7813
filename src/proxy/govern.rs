//! The decision for one governed request (`tools/call`, `resources/read`, `prompts/get`).
//!
//! Two halves, kept apart so the first can be table-tested:
//! - [`decide`] (pure): the request, the facts about it and a policy set in, the verdict and the
//!   audit row out. Ambiguous paths and behavry's own files are refused before any policy runs;
//!   a deny always carries a reason the agent can act on.
//! - [`Relay::govern`] (I/O): gathers the facts (paths on disk, the tool's annotations and input
//!   schema), commits the row, and only then holds, denies or forwards the call. Paths are
//!   resolved inline: a few `statx` calls cost less than a hop to the blocking pool and back.
//!
//! This module never writes to a pipe except through the relay's writers, and never forwards a
//! call whose row is not committed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{oneshot, watch};

use super::elicit::{self, Answer, Channel};
use super::message::{self, POLICY_DENIED};
use super::{lock, Pending, Relay};
use crate::approval::{self, Released};
use crate::audit::store::{Hold, Resolution};
use crate::audit::DecisionRow;
use crate::display::escape;
use crate::note;
use crate::policy::input::{self, Context, Facts, Governed};
use crate::policy::{Decision, PolicySet, Verdict};

/// A governed request as the client sent it (already through the strict parse and admission).
#[derive(Debug, Clone)]
pub struct Call {
    pub id: Value,
    pub method: String,
    /// The governed request, or why its params are malformed (then it is denied).
    pub governed: Result<Governed, String>,
    /// The whole message, as evaluated.
    pub message: Value,
    /// What is forwarded if the call is allowed: the client's bytes, which the strict parse
    /// showed read as `message` in every JSON reader; an approval is bound to their hash.
    pub body: Vec<u8>,
}

impl Call {
    /// The tool (or `resources/read`) the row names; for a malformed call, what it claimed.
    fn tool(&self) -> String {
        match &self.governed {
            Ok(g) => g.tool().to_owned(),
            Err(_) => self
                .message
                .pointer("/params/name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned(),
        }
    }

    /// Approvals "for this session" cover later calls of the same method and name.
    fn session_key(&self) -> String {
        format!("{} {}", self.method, self.tool())
    }
}

/// What the relay knows about the call beyond the request itself.
#[derive(Debug, Clone, Default)]
pub struct Known<'a> {
    /// The policy-input facts: client name, annotations, session age, resolved paths.
    pub input: Facts<'a>,
    /// A person approved this method and name for the rest of the session.
    pub session_approved: bool,
    /// Monitor mode: the call is forwarded whatever the policy decides (see [`decide`]).
    pub monitor: bool,
}

/// The outcome of [`decide`]: what happens to the call, and the row that records it.
#[derive(Debug, Clone)]
pub struct Decided {
    pub verdict: Verdict,
    pub row: DecisionRow,
}

impl Decided {
    /// Held for a person: escalated, enforced, and not already approved for the session.
    pub fn held(&self) -> bool {
        self.row.enforced
            && self.verdict.decision == Decision::Escalate
            && self.row.resolution.is_none()
    }
}

/// Decides one governed call. Pure: everything that varies comes in through `known`.
///
/// In monitor mode the row records the policy's decision with `enforced: false` and the call is
/// forwarded; what is refused before any policy runs (a malformed request, an ambiguous path,
/// behavry's own files) stays refused, since no policy edit could change it.
pub fn decide(ctx: &Context, call: &Call, known: &Known, policy: &PolicySet) -> Decided {
    let channel = known.input.client_name.unwrap_or("unknown").to_owned();
    let mut input = None;
    let mut enforced = !known.monitor;
    let (verdict, arguments, agent, action_type, paths) = match &call.governed {
        Ok(g) => {
            let built = input::build(ctx, g, &known.input);
            let verdict = match &built.refused {
                Some(why) => {
                    enforced = true;
                    Verdict::fail_closed(why.clone())
                }
                None => explain(policy.decide(&built.input)),
            };
            let agent = built
                .input
                .pointer("/agent/name")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned();
            // Replay re-evaluates what a policy decided; a refusal no policy could change is not.
            if built.refused.is_none() {
                input = Some(built.input);
            }
            (
                verdict,
                g.arguments(),
                agent,
                built.action_type.as_str(),
                built.paths,
            )
        }
        Err(reason) => {
            enforced = true;
            (
                Verdict::fail_closed(format!("malformed request: {reason}")),
                call.message
                    .pointer("/params/arguments")
                    .cloned()
                    .unwrap_or(Value::Null),
                channel.clone(),
                "unknown",
                Vec::new(),
            )
        }
    };
    let approved = enforced && verdict.decision == Decision::Escalate && known.session_approved;
    let row = DecisionRow {
        session_id: ctx.session_id.clone(),
        server: ctx.server.clone(),
        tool: call.tool(),
        method: call.method.clone(),
        action_type: action_type.to_owned(),
        resource_path: paths.first().cloned(),
        paths,
        decision: verdict.decision.as_str().to_owned(),
        reasons: verdict.reasons.clone(),
        // The store redacts secrets where the row lands.
        arguments,
        agent,
        requester: ctx.requester_id.clone(),
        channel,
        policy_hash: policy.hash.clone(),
        request_id: message::id_key(&call.id),
        resolution: approved.then_some(Resolution::ApprovedSession),
        enforced,
        input,
        bundles: policy.bundles.clone(),
    };
    Decided { verdict, row }
}

/// Turns an escalation that cannot be held into a deny that says why (`why` joins the policy's
/// reasons, so the person reading the log sees both).
fn refuse_hold(mut decided: Decided, why: String) -> Decided {
    decided.verdict.decision = Decision::Deny;
    decided.verdict.reasons.push(why);
    decided.row.decision = Decision::Deny.as_str().to_owned();
    decided.row.reasons = decided.verdict.reasons.clone();
    decided.row.resolution = None;
    decided
}

/// Gives every deny a reason the agent can act on, when the rules gave none.
fn explain(mut verdict: Verdict) -> Verdict {
    if verdict.decision == Decision::Deny && verdict.reasons.is_empty() {
        verdict.reasons.push(if verdict.deny {
            "a deny rule matched".into()
        } else {
            "no policy rule allows this call (default deny)".into()
        });
    }
    verdict
}

/// Counts a governed call as being decided for as long as it lives: shutdown waits until none
/// is (so no call is dropped undecided). Dropped on every exit path, so the count cannot drift.
pub(super) struct Deciding(watch::Sender<usize>);

impl Deciding {
    pub(super) fn start(count: &watch::Sender<usize>) -> Deciding {
        count.send_modify(|n| *n += 1);
        Deciding(count.clone())
    }
}

impl Drop for Deciding {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// How the relay names a call in notes and replies.
struct Names {
    method: String,
    /// `<server>/<tool>`.
    qualified: String,
}

impl Names {
    /// `qualified` made safe for a person's terminal (the client chose the tool name); only notes
    /// need it, so it is built when one is written.
    fn shown(&self) -> std::borrow::Cow<'_, str> {
        escape(&self.qualified)
    }
}

impl Relay {
    /// Decides a governed request, records the decision, then forwards it or answers it.
    /// `deciding` is released while the call waits for a person (shutdown need not wait for that).
    pub(super) async fn govern(
        self: &Arc<Self>,
        call: Call,
        mut cancelled: oneshot::Receiver<()>,
        deciding: Deciding,
    ) {
        // One snapshot per decision: it decides, and its hash goes into the row.
        let policy = self.policy.current();
        let client_name = lock(&self.client_name).clone();
        let (tool, unlisted) = match &call.governed {
            Ok(Governed::ToolCall { name, .. }) => match self.tool_definition(name).await {
                Ok(tool) => (tool, None),
                Err(why) => (None, Some(why)),
            },
            _ => (None, None),
        };
        let pinned = match &call.governed {
            Ok(Governed::ToolCall { name, .. }) => self.pins.facts(name, self.tools.wait).await,
            _ => None,
        };
        let annotations = tool.as_ref().and_then(|t| t.get("annotations"));
        let schema = tool.as_ref().and_then(|t| t.get("inputSchema"));
        let paths = match &call.governed {
            Ok(g) => self.resolver.resolve_call(&input::path_args(g, schema)),
            Err(_) => Vec::new(),
        };
        let session_key = call.session_key();
        let known = Known {
            input: Facts {
                client_name: client_name.as_deref(),
                annotations,
                session_seconds: self.started.elapsed().as_secs(),
                paths: &paths,
                tool: pinned.as_ref(),
            },
            session_approved: lock(&self.session_approved).contains(&session_key),
            monitor: self.monitor,
        };
        let mut decided = self.evaluating(|| decide(&self.ctx, &call, &known, &policy));
        if let Some(why) = unlisted {
            decided.row.reasons.push(why);
        }
        let qualified = format!("{}/{}", self.ctx.server, decided.row.tool);
        let names = Names {
            method: call.method.clone(),
            qualified,
        };
        let body = call.body;
        // A wrapper holds a bounded number of calls: beyond it, the call is denied at once.
        let permit = match decided.held().then(|| self.waiter.try_hold()) {
            Some(Ok(permit)) => Some(permit),
            Some(Err(at_cap)) => {
                decided = refuse_hold(decided, at_cap.to_string());
                None
            }
            None => None,
        };
        let held = decided.held();
        // What the person is shown if the call is put to them in the client.
        let shown = held.then(|| Shown {
            paths: decided.row.paths.clone(),
            reasons: decided.verdict.reasons.clone(),
            arguments: crate::audit::store::redact(&decided.row.arguments),
        });
        let enforced = decided.row.enforced;
        let recorded = if held {
            let expires = time::OffsetDateTime::now_utc() + self.approval_timeout;
            let hold = Hold {
                owner: self.owner,
                request_hash: sha256_hex(&body),
                expires_at: crate::audit::store::format_ts(expires),
            };
            self.audit.record_escalation(decided.row, hold).await
        } else {
            self.audit.record(decided.row).await
        };
        let id = &call.id;
        let row = match recorded {
            Ok(row) => row,
            Err(e) => {
                note!(
                    "could not record the decision for {}, so it is denied: {e}",
                    names.shown()
                );
                let reason = format!(
                    "the audit store could not record this call, so it was not forwarded ({e})"
                );
                if !self.was_cancelled(id, &mut cancelled) {
                    self.deny(id, &names, &[reason]).await;
                }
                return;
            }
        };
        if held {
            let token = call.message.pointer("/params/_meta/progressToken").cloned();
            drop(deciding);
            let shown = shown.unwrap_or_default();
            let waited = self
                .hold(row, token.clone(), &names, &shown, cancelled)
                .await;
            drop(permit);
            lock(&self.held).remove(&message::id_key(id));
            // Forwarding or answering it is part of deciding again: shutdown waits for it.
            let _deciding = Deciding::start(&self.deciding);
            let progress = waited.progress;
            return match waited.released {
                Released::Approved { session, by } => {
                    if session {
                        lock(&self.session_approved).insert(session_key);
                    }
                    note!("{} was approved by {}", names.shown(), escape(&by));
                    // The client saw `progress` keepalives on its token; the server's own progress
                    // on it continues from there, so the client sees it only ever increase.
                    let renumber = token.filter(|_| progress > 0).map(|token| {
                        let key = message::id_key(&token);
                        lock(&self.progress).insert(key.clone(), progress as f64);
                        key
                    });
                    self.release(id, row, body, &names, renumber).await
                }
                Released::Cancelled => {}
                Released::Denied { .. } if waited.in_client.is_some() => {
                    let client = waited.in_client.unwrap_or_default();
                    let reason = format!("a person denied this call in {client}");
                    self.deny(id, &names, &[reason]).await
                }
                other => {
                    // On a timeout the agent also hears why the call needed a person.
                    let mut reasons = match other {
                        Released::TimedOut => shown.reasons.clone(),
                        _ => Vec::new(),
                    };
                    reasons.push(refusal(other, self.approval_timeout));
                    self.deny(id, &names, &reasons).await
                }
            };
        }
        // The client may have cancelled while the call was being decided: then it gets neither
        // forwarded nor answered.
        if self.was_cancelled(id, &mut cancelled) {
            return;
        }
        if !enforced && decided.verdict.decision != Decision::Allow {
            let why = match decided.verdict.reasons.join("; ") {
                r if r.is_empty() => String::new(),
                r => format!(" ({})", crate::display::escape(&r)),
            };
            let would = if decided.verdict.decision == Decision::Deny {
                "denied"
            } else {
                "held for approval"
            };
            note!(
                "monitor mode: {} would be {would}{why}; forwarded",
                crate::display::escape(&names.qualified)
            );
        }
        match decided.verdict.decision {
            Decision::Deny if enforced => {
                note!(
                    "{} was denied: {}",
                    names.shown(),
                    escape(&decided.verdict.reasons.join("; "))
                );
                self.deny(id, &names, &decided.verdict.reasons).await
            }
            _ => self.release(id, row, body, &names, None).await,
        }
    }

    /// Runs a policy decision. One decision at a time runs right on its worker (the common case:
    /// no hop); while one does, the others run through `block_in_place`, which hands their worker's
    /// other tasks to another thread first. So a slow policy can occupy at most one worker, and
    /// pings, answers and fast calls keep moving.
    fn evaluating<T>(&self, decide: impl FnOnce() -> T) -> T {
        let inline = self
            .evaluating
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if inline {
            // Released on every exit path, a panic in the policy engine included.
            struct Release<'a>(&'a std::sync::atomic::AtomicBool);
            impl Drop for Release<'_> {
                fn drop(&mut self) {
                    self.0.store(false, Ordering::Release);
                }
            }
            let _release = Release(&self.evaluating);
            return decide();
        }
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(decide),
            _ => decide(),
        }
    }

    /// Stops listening for the cancellation of request `id`; whether it was cancelled.
    fn was_cancelled(&self, id: &Value, cancelled: &mut oneshot::Receiver<()>) -> bool {
        lock(&self.held).remove(&message::id_key(id));
        cancelled.try_recv().is_ok()
    }

    /// Forwards an allowed (or approved) request, remembering it so its outcome is recorded.
    /// `renumbered`: the progress token whose server progress is renumbered until it is answered.
    async fn release(
        &self,
        id: &Value,
        row: i64,
        body: Vec<u8>,
        names: &Names,
        renumbered: Option<String>,
    ) {
        let key = message::id_key(id);
        lock(&self.pending).insert(
            key.clone(),
            Pending::Governed {
                row,
                sent: Instant::now(),
                renumbered,
            },
        );
        if !self.forward(body).await {
            lock(&self.pending).remove(&key);
            let text = format!(
                "behavry could not forward {}: the server has exited",
                names.qualified
            );
            self.reply(message::error_reply(
                Some(id),
                message::INTERNAL_ERROR,
                &text,
            ))
            .await;
        }
    }

    /// Answers a request behavry will not forward: an `isError` tool result the model can read,
    /// or a JSON-RPC error for methods whose results have no such flag.
    async fn deny(&self, id: &Value, names: &Names, reasons: &[String]) {
        let text = format!("behavry denied {}: {}", names.qualified, reasons.join("; "));
        let frame = if names.method == "tools/call" {
            message::tool_error_reply(id, &text)
        } else {
            message::error_reply(Some(id), POLICY_DENIED, &text)
        };
        self.reply(frame).await;
    }

    /// Holds escalated call `row` until a person resolves it (in `behavry approve`, or in the
    /// client's form when it can show one), it times out, or the client cancels it; the client
    /// hears progress meanwhile when it asked for it (`token`). Other traffic keeps flowing: this
    /// runs in the request's own task.
    async fn hold(
        &self,
        row: i64,
        token: Option<Value>,
        names: &Names,
        shown: &Shown,
        cancelled: oneshot::Receiver<()>,
    ) -> Waited {
        let timeout = self.approval_timeout;
        let in_client = self.elicits();
        let where_ = if in_client && self.approval == Channel::Elicitation {
            format!("answer the form in {}", self.client_title())
        } else if in_client {
            format!(
                "answer the form in {}, or run `behavry approve` in another terminal",
                self.client_title()
            )
        } else {
            "run `behavry approve` in another terminal".to_owned()
        };
        note!(
            "{} is waiting for approval: {} (times out in {})",
            names.shown(),
            escape(&where_),
            approval::human(timeout)
        );
        let to_client = self.to_client.clone();
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let keepalive = move |left: Duration| {
            let Some(token) = &token else { return };
            let progress = counter.fetch_add(1, Ordering::Relaxed) + 1;
            let message = format!(
                "awaiting approval: {where_} ({} left)",
                approval::human(left)
            );
            let note = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/progress",
                "params": {"progressToken": token, "progress": progress, "message": message}});
            // A full queue means the client is not reading; skipping one keepalive is harmless.
            let _ = to_client.try_send(note.to_string().into_bytes());
        };
        let timing = approval::Timing {
            timeout,
            keepalive: self.approval_keepalive,
        };
        let tui = approval::wait(&self.waiter, row, timing, cancelled, keepalive);
        let (released, form_decided) = if in_client {
            self.race_form(row, names, shown, tui).await
        } else {
            (tui.await, false)
        };
        Waited {
            released,
            progress: sent.load(Ordering::Relaxed),
            in_client: form_decided.then(|| self.client_title()),
        }
    }

    /// Puts a held call to the person in the client while `tui` waits for `behavry approve`:
    /// the first to resolve the call in the store wins, and the form is withdrawn if it lost.
    /// Returns how the call ended and whether the form decided it.
    async fn race_form(
        &self,
        row: i64,
        names: &Names,
        shown: &Shown,
        tui: impl std::future::Future<Output = Released>,
    ) -> (Released, bool) {
        let asked = self
            .ask(&elicit::Summary {
                qualified: &names.qualified,
                paths: &shown.paths,
                reasons: &shown.reasons,
                arguments: &shown.arguments,
            })
            .await;
        tokio::pin!(tui);
        let mut form = Some(asked.answer);
        let by = format!("a person in {} (elicitation)", self.client_title());
        let ended = loop {
            tokio::select! {
                released = &mut tui => break (released, false),
                reply = async {
                    match form.as_mut() {
                        Some(answer) => answer.await,
                        None => std::future::pending().await,
                    }
                }, if form.is_some() => {
                    form = None;
                    let Ok(reply) = reply else { continue };
                    let (resolution, reason) = match elicit::answer(&reply) {
                        Answer::Approve { session: false } => (Resolution::Approved, None),
                        Answer::Approve { session: true } => (Resolution::ApprovedSession, None),
                        Answer::Deny => (
                            Resolution::Denied,
                            Some(format!("denied in {}", self.client_title())),
                        ),
                        Answer::Undecided(why) => {
                            note!(
                                "{}: {}; still waiting for `behavry approve`",
                                names.shown(),
                                escape(&why)
                            );
                            continue;
                        }
                    };
                    match self.audit.resolve_by(row, resolution, reason, by.clone()).await {
                        Ok(true) => break (released_by(resolution, &by), true),
                        // Resolved elsewhere first: the wait in `tui` reads how.
                        Ok(false) => continue,
                        Err(e) => break (Released::Failed(e), false),
                    }
                }
            }
        };
        self.withdraw(&asked.id).await;
        ended
    }
}

/// What a person is shown about a held call.
#[derive(Debug, Clone, Default)]
struct Shown {
    paths: Vec<String>,
    reasons: Vec<String>,
    /// Redacted, as in the audit row.
    arguments: Value,
}

/// How a held call ended.
struct Waited {
    released: Released,
    /// Progress notifications sent on the client's token meanwhile.
    progress: u64,
    /// The client's name when its form decided the call.
    in_client: Option<String>,
}

/// What the wrapper does after the form resolved a call as `resolution`.
fn released_by(resolution: Resolution, by: &str) -> Released {
    match resolution {
        Resolution::Approved | Resolution::ApprovedSession => Released::Approved {
            session: resolution == Resolution::ApprovedSession,
            by: by.to_owned(),
        },
        _ => Released::Denied {
            reason: None,
            by: by.to_owned(),
        },
    }
}

/// The reason an agent is given when its held call was not approved.
fn refusal(released: Released, timeout: Duration) -> String {
    match released {
        Released::Denied { reason: Some(reason), by } => {
            format!("a person denied this call ({by}): {reason}")
        }
        Released::Denied { reason: None, by } => format!("a person denied this call ({by})"),
        Released::TimedOut => format!(
            "this call needs a person's approval and was not approved within {}; next time, ask the \
             user to run `behavry approve` in another terminal and approve it while you wait",
            approval::human(timeout)
        ),
        Released::Failed(e) => {
            format!("the approval could not be completed, so the call was not forwarded ({e})")
        }
        Released::Approved { .. } | Released::Cancelled => {
            "the call was not forwarded".to_owned()
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::canon::PathArg;
    use crate::policy::input::BehavryDirs;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    const SEED: &str = include_str!("../../policies/examples/seed.rego");

    fn ctx() -> Context {
        Context {
            server: "fs".into(),
            agent_id: None,
            agent_name: None,
            role: "developer".into(),
            risk_tier: "low".into(),
            requester_id: "alice".into(),
            session_id: "s-1".into(),
            project_dir: None,
            cwd: PathBuf::from("/work"),
            home: Some(PathBuf::from("/home/alice")),
            action_types: BTreeMap::new(),
            behavry: BehavryDirs::default(),
        }
    }

    fn seed() -> PolicySet {
        PolicySet::from_sources(
            &[("seed.rego".into(), SEED.into())],
            Duration::from_millis(500),
        )
    }

    fn call(tool: &str, arguments: Value) -> Call {
        let message = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}});
        Call {
            id: json!(7),
            method: "tools/call".into(),
            governed: Governed::from_request("tools/call", message.get("params"))
                .expect("governed"),
            body: message.to_string().into_bytes(),
            message,
        }
    }

    fn path(canonical: &str) -> PathArg {
        PathArg {
            raw: canonical.into(),
            canonical: vec![canonical.into()],
            ..PathArg::default()
        }
    }

    /// One row of the decision table: the call, what is known, and what must come out.
    struct Case<'a> {
        tool: &'a str,
        paths: &'a [PathArg],
        session_approved: bool,
        decision: Decision,
        held: bool,
        resolution: Option<Resolution>,
        /// A reason must contain this ("" for none required).
        reason: &'a str,
    }

    impl<'a> Case<'a> {
        #[allow(clippy::too_many_arguments)]
        fn new(
            tool: &'a str,
            paths: &'a [PathArg],
            session_approved: bool,
            decision: Decision,
            held: bool,
            resolution: Option<Resolution>,
            reason: &'a str,
        ) -> Case<'a> {
            Case {
                tool,
                paths,
                session_approved,
                decision,
                held,
                resolution,
                reason,
            }
        }
    }

    #[test]
    fn decisions_and_rows() {
        let policy = seed();
        let prod = [path("/prod/app.yaml")];
        let tmp = [path("/tmp/x")];
        let mut own = path("/home/alice/.config/behavry/policies/x.rego");
        own.refused = Some("it is inside behavry's policy directory".into());
        let own = [own];
        use Decision::{Allow, Deny, Escalate};
        let session = Some(Resolution::ApprovedSession);
        let table = [
            Case::new("read_file", &tmp, false, Allow, false, None, ""),
            Case::new(
                "write_file",
                &prod,
                false,
                Deny,
                false,
                None,
                "a deny rule matched",
            ),
            Case::new("write_file", &tmp, false, Deny, false, None, "default deny"),
            Case::new("delete_file", &tmp, false, Escalate, true, None, ""),
            Case::new("delete_file", &tmp, true, Escalate, false, session, ""),
            // A session approval never turns a deny into anything else.
            Case::new("write_file", &prod, true, Deny, false, None, "deny rule"),
            // behavry's own files are refused before any policy runs, even a read.
            Case::new(
                "read_file",
                &own,
                false,
                Deny,
                false,
                None,
                "policy directory",
            ),
        ];
        for case in table {
            let Case {
                tool,
                paths,
                session_approved,
                decision,
                held,
                resolution,
                reason,
            } = case;
            let known = Known {
                input: Facts {
                    client_name: Some("claude-code"),
                    paths,
                    ..Facts::default()
                },
                session_approved,
                monitor: false,
            };
            let what = format!("{tool} {:?} session={session_approved}", paths[0].raw);
            let d = decide(&ctx(), &call(tool, json!({})), &known, &policy);
            assert_eq!(d.verdict.decision, decision, "{what}");
            assert_eq!(d.held(), held, "{what}");
            assert_eq!(d.row.resolution, resolution, "{what}");
            assert_eq!(d.row.decision, decision.as_str(), "{what}");
            assert_eq!(d.row.reasons, d.verdict.reasons, "{what}");
            assert!(
                reason.is_empty() || d.verdict.reasons.iter().any(|r| r.contains(reason)),
                "{what}: {:?}",
                d.verdict.reasons
            );
            assert_eq!(d.row.tool, tool);
            assert_eq!(d.row.channel, "claude-code");
            assert_eq!(d.row.request_id, "7");
            assert_eq!(d.row.policy_hash, policy.hash);
            assert_eq!(
                d.row.resource_path.as_deref(),
                paths[0].canonical.first().map(String::as_str)
            );
        }
    }

    #[test]
    fn monitor_mode_records_the_decision_and_forwards_the_call() {
        let policy = seed();
        let prod = [path("/prod/app.yaml")];
        let tmp = [path("/tmp/x")];
        let mut own = path("/home/alice/.config/behavry/policies/x.rego");
        own.refused = Some("it is inside behavry's policy directory".into());
        let own = [own];
        // (tool, paths, session approved, decision, enforced)
        let table: [(&str, &[PathArg], bool, Decision, bool); 5] = [
            ("read_file", &tmp, false, Decision::Allow, false),
            ("write_file", &prod, false, Decision::Deny, false),
            ("delete_file", &tmp, false, Decision::Escalate, false),
            // A session approval is not applied: nothing was held.
            ("delete_file", &tmp, true, Decision::Escalate, false),
            // Refused before any policy runs: no policy edit could change it, so it stays refused.
            ("read_file", &own, false, Decision::Deny, true),
        ];
        for (tool, paths, session_approved, decision, enforced) in table {
            let known = Known {
                input: Facts {
                    paths,
                    ..Facts::default()
                },
                session_approved,
                monitor: true,
            };
            let d = decide(&ctx(), &call(tool, json!({})), &known, &policy);
            let what = format!("{tool} {}", paths[0].raw);
            assert_eq!(d.verdict.decision, decision, "{what}");
            assert_eq!(d.row.decision, decision.as_str(), "{what}");
            assert_eq!(d.row.enforced, enforced, "{what}");
            assert!(!d.held(), "{what}");
            assert_eq!(d.row.resolution, None, "{what}");
        }
    }

    #[test]
    fn the_row_carries_the_input_the_policy_saw() {
        let known = Known::default();
        let d = decide(
            &ctx(),
            &call("read_file", json!({"path": "/tmp/x"})),
            &known,
            &seed(),
        );
        let input = d.row.input.expect("input stored");
        assert_eq!(input["action"]["tool"], "fs/read_file");
        assert_eq!(input["action"]["arguments"]["path"], "/tmp/x");
        assert!(d.row.enforced);
    }

    #[test]
    fn malformed_calls_are_denied_and_recorded_with_what_they_claimed() {
        let message = json!({"jsonrpc": "2.0", "id": "a", "method": "tools/call",
            "params": {"name": "write_file", "arguments": [1]}});
        let call = Call {
            id: json!("a"),
            method: "tools/call".into(),
            governed: Governed::from_request("tools/call", message.get("params"))
                .expect("governed"),
            body: message.to_string().into_bytes(),
            message,
        };
        assert!(call.governed.is_err());
        let d = decide(&ctx(), &call, &Known::default(), &seed());
        assert_eq!(d.verdict.decision, Decision::Deny);
        assert!(
            d.verdict.reasons[0].starts_with("malformed request"),
            "{:?}",
            d.verdict.reasons
        );
        assert_eq!(d.row.tool, "write_file");
        assert_eq!(d.row.arguments, json!([1]));
        assert_eq!(d.row.action_type, "unknown");
        assert_eq!(d.row.channel, "unknown");
        assert_eq!(d.row.request_id, "\"a\"");
    }

    #[test]
    fn a_policy_that_fails_to_compile_denies_everything() {
        let broken = PolicySet::from_sources(
            &[("x.rego".into(), "package behavry.authz\nallow if {".into())],
            Duration::from_millis(500),
        );
        let known = Known::default();
        let d = decide(&ctx(), &call("read_file", json!({})), &known, &broken);
        assert_eq!(d.verdict.decision, Decision::Deny);
        assert!(
            d.verdict.reasons[0].contains("failed to compile"),
            "{:?}",
            d.verdict.reasons
        );
    }

    #[test]
    fn an_escalation_that_cannot_be_held_is_a_deny_with_both_reasons() {
        let known = Known::default();
        let d = decide(&ctx(), &call("delete_file", json!({})), &known, &seed());
        assert!(d.held());
        let d = refuse_hold(d, "8 calls are already waiting".into());
        assert!(!d.held());
        assert_eq!(d.verdict.decision, Decision::Deny);
        assert_eq!(d.row.decision, "deny");
        assert_eq!(d.row.reasons, d.verdict.reasons);
        assert_eq!(
            d.row.reasons.last().map(String::as_str),
            Some("8 calls are already waiting")
        );
    }

    #[test]
    fn refusals_name_what_happened() {
        let t = Duration::from_secs(60);
        let denied = Released::Denied {
            reason: Some("not now".into()),
            by: "bob".into(),
        };
        assert_eq!(
            refusal(denied, t),
            "a person denied this call (bob): not now"
        );
        assert!(refusal(Released::TimedOut, t).contains("not approved within 1m"));
        assert!(refusal(Released::Failed("disk full".into()), t).contains("disk full"));
    }
}
