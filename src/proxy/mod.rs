//! The stdio relay between an MCP client and the server it launched through `behavry wrap`.
//!
//! One task owns each pipe end: the client reader, the server reader, the writer to the server's
//! stdin and the writer to the client's stdout. Everything sent to a pipe goes through its writer's
//! channel, so frames never interleave. Each governed request is decided in a task of its own, so a
//! slow audit commit (another process holding the lock) never stalls other traffic.
//!
//! This module never prints: stdout belongs to the client writer, diagnostics go to stderr.

pub mod child;
pub mod frame;
pub mod guard;
pub mod message;
mod reload;
pub mod strict;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

use crate::approval::{self, Released};
use crate::audit::store::{Hold, Owner, Resolution};
use crate::audit::{AuditHandle, DecisionRow, Outcome};
use crate::config::Config;
use crate::note;
use crate::policy::canon::{OwnDir, Resolver};
use crate::policy::input::{self, Governed};
use crate::policy::{Decision, Live, PolicySet, Verdict};
use frame::{Frame, FrameReader};
use message::{Kind, INVALID_REQUEST, POLICY_DENIED};

/// Frames queued per direction before a writer pushes back on its senders.
const QUEUE: usize = 1024;

/// Everything `behavry wrap` needs to run.
#[derive(Debug, Clone)]
pub struct WrapOptions {
    pub program: String,
    pub args: Vec<String>,
    /// `resource.server` and the prefix of `action.tool`.
    pub server: String,
    /// Every directory policies are loaded from.
    pub policy_dirs: Vec<PathBuf>,
    pub database: PathBuf,
    pub config: Config,
    /// How long an escalated call is held waiting for a person.
    pub approval_timeout: Duration,
    /// `input.behavry`: behavry's own directories, for policies to protect.
    pub behavry_dirs: input::BehavryDirs,
    /// behavry's own directories (config, policies, data): calls that reach into them are denied
    /// whatever the policies say.
    pub own_dirs: Vec<OwnDir>,
}

/// What to do when the server answers a request the client sent.
enum Pending {
    /// A `tools/list` whose annotations we cache for `action.type` and `action.annotations`.
    ToolsList,
    /// An allowed governed call whose outcome goes into its audit row.
    Governed { row: i64, sent: Instant },
}

struct Relay {
    ctx: input::Context,
    /// The policy set in force; hot reload swaps it (see [`crate::policy::watch`]).
    policy: Live,
    audit: AuditHandle,
    started: Instant,
    max_frame: usize,
    client_name: Mutex<Option<String>>,
    /// Tool name → annotations from the server's latest `tools/list`.
    annotations: Mutex<HashMap<String, Value>>,
    /// Client request id (see [`message::id_key`]) → what its response means to us.
    pending: Mutex<HashMap<String, Pending>>,
    to_client: mpsc::Sender<Vec<u8>>,
    to_server: mpsc::Sender<Vec<u8>>,
    /// Governed requests still being decided; shutdown waits for them so none is dropped.
    deciding: watch::Sender<usize>,
    /// Governed requests being decided or held, by client request id; the sender cancels one
    /// (a `notifications/cancelled` can arrive at any point before it is forwarded).
    held: Mutex<HashMap<String, oneshot::Sender<()>>>,
    /// `<method> <name>` a person approved "for the rest of this session".
    session_approved: Mutex<HashSet<String>>,
    approval_timeout: Duration,
    approval_keepalive: Duration,
    /// This process, as recorded on the escalations it holds.
    owner: Owner,
    /// Client request ids in flight and the negotiated protocol version (see [`guard`]).
    guard: guard::Guard,
    /// Canonicalises the paths governed calls name.
    resolver: Arc<Resolver>,
}

/// Runs the relay until the client hangs up, `shutdown` resolves, or the server exits; returns
/// the exit code behavry should exit with (the server's).
pub async fn run<I, O>(
    opts: WrapOptions,
    client_in: I,
    client_out: O,
    shutdown: impl Future<Output = ()>,
) -> io::Result<i32>
where
    I: AsyncRead + Unpin + Send + 'static,
    O: AsyncWrite + Unpin + Send + 'static,
{
    let eval_timeout = Duration::from_millis(opts.config.wrap.eval_timeout_ms);
    let policy = PolicySet::load(&opts.policy_dirs, eval_timeout);
    let dirs = opts
        .policy_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(e) = policy.error_report() {
        note!("policies failed to compile; every governed call will be denied until they are fixed:\n{e}");
    } else if policy.files.is_empty() {
        note!("no .rego files in {dirs}; every governed call will be denied (default deny)");
    }
    let (audit, audit_thread) = AuditHandle::open(&opts.database, opts.config.audit.durability);
    if let Some(e) = audit.error() {
        note!("audit store unavailable; every governed call will be denied: {e}");
    }
    let session_id = uuid::Uuid::new_v4().to_string();
    let (policy, watcher) = crate::policy::watch::watch(
        opts.policy_dirs.clone(),
        eval_timeout,
        policy,
        reload::reporter(audit.clone(), session_id.clone(), opts.server.clone()),
        |problem| note!("{problem}"),
    );

    let mut server = child::spawn(&opts.program, &opts.args)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start `{}`: {e}", opts.program)))?;
    let (Some(server_in), Some(server_out)) = (server.stdin.take(), server.stdout.take()) else {
        return Err(io::Error::other(
            "the server's stdio pipes were not created",
        ));
    };

    let (to_server, server_rx) = mpsc::channel(QUEUE);
    let (to_client, client_rx) = mpsc::channel(QUEUE);
    let (close_server_in, closing) = watch::channel(false);
    let server_writer = tokio::spawn(pump(server_in, server_rx, Some(closing), "server stdin"));
    let client_writer = tokio::spawn(pump(client_out, client_rx, None, "client stdout"));

    let config = &opts.config;
    let ctx = config.input_context(&opts.server, session_id, opts.behavry_dirs.clone());
    let resolver = Arc::new(Resolver::new(
        ctx.cwd.clone(),
        ctx.home.clone(),
        opts.own_dirs.clone(),
    ));
    let relay = Arc::new(Relay {
        ctx,
        policy,
        audit,
        started: Instant::now(),
        max_frame: config.wrap.max_frame_bytes,
        client_name: Mutex::new(None),
        annotations: Mutex::new(HashMap::new()),
        pending: Mutex::new(HashMap::new()),
        to_client,
        to_server,
        deciding: watch::channel(0).0,
        held: Mutex::new(HashMap::new()),
        session_approved: Mutex::new(HashSet::new()),
        approval_timeout: opts.approval_timeout,
        approval_keepalive: Duration::from_secs(config.wrap.approval_keepalive_secs),
        owner: Owner::current(),
        guard: guard::Guard::default(),
        resolver,
    });
    let audit = relay.audit.clone();
    let mut deciding = relay.deciding.subscribe();

    let max = config.wrap.max_frame_bytes;
    let server_reader = tokio::spawn(server_loop(
        relay.clone(),
        FrameReader::new(BufReader::new(server_out), max),
    ));
    let mut client_reader = tokio::spawn(client_loop(
        relay.clone(),
        FrameReader::new(BufReader::new(client_in), max),
    ));
    drop(relay);

    let grace = Duration::from_millis(config.wrap.shutdown_grace_ms);
    tokio::pin!(shutdown);
    let mut client_done = false;
    let status = tokio::select! {
        status = server.wait() => status?,
        _ = &mut client_reader => {
            client_done = true;
            let _ = tokio::time::timeout(grace, deciding.wait_for(|n| *n == 0)).await;
            let _ = close_server_in.send(true);
            child::stop(&mut server, grace).await?
        }
        () = &mut shutdown => {
            let _ = tokio::time::timeout(grace, deciding.wait_for(|n| *n == 0)).await;
            let _ = close_server_in.send(true);
            child::stop(&mut server, grace).await?
        }
    };

    // Calls still held can no longer be forwarded: resolve them first, so no approver acts on
    // them (and so this is written even if the client kills us in the next second).
    match audit.abandon_held(Owner::current()).await {
        Ok(0) | Err(_) => {}
        Ok(n) => note!("{n} call(s) waiting for approval were abandoned as behavry exited"),
    }
    // The server is gone: relay what it wrote before exiting, then let the writers drain.
    // Bounded waits: a grandchild may still hold the server's stdout open, and held calls keep
    // the client writer's channel open until they notice they were abandoned.
    let _ = tokio::time::timeout(Duration::from_secs(1), server_reader).await;
    if !client_done {
        client_reader.abort();
        let _ = client_reader.await;
    }
    let _ = close_server_in.send(true);
    let _ = tokio::time::timeout(Duration::from_millis(300), server_writer).await;
    let _ = tokio::time::timeout(Duration::from_millis(300), client_writer).await;
    // Stop reloading before the audit thread stops, so no reload event is lost.
    let _ = tokio::task::spawn_blocking(move || {
        drop(watcher);
        audit_thread.finish();
    })
    .await;
    Ok(child::exit_code(status))
}

/// Writes every frame from `rx` to `out`; stops when the senders are gone, or when `closing` turns
/// true and the frames already queued are written (then dropping `out` closes the pipe).
async fn pump<W: AsyncWrite + Unpin>(
    mut out: W,
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut closing: Option<watch::Receiver<bool>>,
    what: &str,
) {
    loop {
        let frame = match &mut closing {
            Some(closing) => tokio::select! {
                biased;
                frame = rx.recv() => frame,
                _ = closing.wait_for(|c| *c) => rx.try_recv().ok(),
            },
            None => rx.recv().await,
        };
        let Some(frame) = frame else { return };
        if let Err(e) = frame::write_frame(&mut out, &frame).await {
            note!("cannot write to {what}: {e}");
            return;
        }
    }
}

async fn client_loop<R: tokio::io::AsyncBufRead + Unpin>(
    relay: Arc<Relay>,
    mut reader: FrameReader<R>,
) {
    loop {
        match reader.read_frame().await {
            Ok(None) => return,
            Ok(Some(Frame::Line(line))) => relay.on_client_line(line).await,
            Ok(Some(Frame::Oversized { bytes, .. })) => {
                let text = format!(
                    "message of {bytes} bytes exceeds behavry's limit of {} bytes; it was not forwarded",
                    relay.max_frame
                );
                relay
                    .reply(message::error_reply(None, INVALID_REQUEST, &text))
                    .await;
            }
            Err(e) => {
                note!("client input: {e}");
                return;
            }
        }
    }
}

async fn server_loop<R: tokio::io::AsyncBufRead + Unpin>(
    relay: Arc<Relay>,
    mut reader: FrameReader<R>,
) {
    loop {
        match reader.read_frame().await {
            Ok(None) => return,
            Ok(Some(Frame::Line(line))) => relay.on_server_line(line).await,
            Ok(Some(Frame::Oversized { bytes, head, tail })) => {
                note!(
                    "the server wrote a {bytes}-byte line, over the {}-byte limit; dropped (raise [wrap] max_frame_bytes)",
                    relay.max_frame
                );
                relay.answer_oversized(bytes, &head, &tail).await;
            }
            Err(e) => {
                note!("server output: {e}");
                return;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short locks cannot leave the maps half-updated in a
    // way that matters more than stopping the relay would.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Relay {
    async fn reply(&self, frame: Vec<u8>) {
        self.guard.replied(&frame);
        let _ = self.to_client.send(frame).await;
    }

    async fn forward(&self, frame: Vec<u8>) -> bool {
        self.to_server.send(frame).await.is_ok()
    }

    /// A server answer too long to relay must still answer its request: with an error, so the
    /// client does not wait forever and the id is free again.
    async fn answer_oversized(&self, bytes: usize, head: &[u8], tail: &[u8]) {
        let Some(id) = message::oversized_id(head, tail).filter(|id| self.guard.in_flight(id))
        else {
            return;
        };
        let key = message::id_key(&id);
        if let Some(Pending::Governed { row, sent }) = lock(&self.pending).remove(&key) {
            self.audit
                .outcome(row, Outcome::Error, sent.elapsed().as_secs_f64() * 1000.0);
        }
        let text = format!(
            "the server's answer was {bytes} bytes, over behavry's limit of {} bytes; raise [wrap] max_frame_bytes in behavry's config.toml",
            self.max_frame
        );
        self.reply(message::error_reply(
            Some(&id),
            message::INTERNAL_ERROR,
            &text,
        ))
        .await;
    }

    async fn on_client_line(self: &Arc<Self>, line: Vec<u8>) {
        // The one parse: policy evaluates its value, the server receives the bytes it was read
        // from (lone surrogates repaired), which strict parsing showed read the same everywhere.
        let message = match strict::read(line) {
            Ok(m) => m,
            Err(rejection) => return self.refuse(rejection).await,
        };
        let strict::Message { value, bytes } = message;
        let Value::Array(items) = value else {
            if let Err(rejection) = strict::check(&value) {
                return self.refuse(rejection).await;
            }
            if let Some(value) = self.admit(value).await {
                self.client_message(strict::Message { value, bytes }).await;
            }
            return;
        };
        if let Err(rejection) = self.guard.batch_allowed() {
            return self.refuse(rejection).await;
        }
        if items.is_empty() {
            return self
                .reply(message::error_reply(None, INVALID_REQUEST, "empty batch"))
                .await;
        }
        let count = items.len();
        let mut admitted = Vec::with_capacity(count);
        for item in items {
            if let Err(rejection) = strict::check(&item) {
                self.refuse(rejection).await;
                continue;
            }
            if let Some(item) = self.admit(item).await {
                admitted.push(item);
            }
        }
        // A batch with nothing governed in it passes as one batch (the client's bytes when every
        // element was admitted); otherwise each element is handled on its own, so no governed
        // element is ever forwarded undecided. Elements travel re-serialised: cutting the
        // client's text into elements would need a second parse for no gain in meaning.
        if !admitted.is_empty()
            && admitted.iter().all(|m| {
                matches!(
                    message::classify(m),
                    Kind::Request { .. } | Kind::Notification { .. } | Kind::Response { .. }
                ) && !is_governed(m)
            })
        {
            admitted.iter().for_each(|m| self.track(m));
            let frame = if admitted.len() == count {
                bytes
            } else {
                Value::Array(admitted).to_string().into_bytes()
            };
            self.forward(frame).await;
            return;
        }
        drop(bytes);
        for value in admitted {
            let bytes = value.to_string().into_bytes();
            self.client_message(strict::Message { value, bytes }).await;
        }
    }

    /// Answers a refused client message: with its id when the refusal could read one and no
    /// request in flight uses it (then the answer would resolve that request instead).
    async fn refuse(&self, rejection: strict::Rejection) {
        let id = rejection.id.as_ref().filter(|id| !self.guard.in_flight(id));
        self.reply(rejection.reply_to(id)).await;
    }

    /// Handles one admitted message. What is forwarded is `message.bytes`, which the strict
    /// parse showed read as `message.value`, the value behavry evaluated.
    async fn client_message(self: &Arc<Self>, message: strict::Message) {
        let strict::Message { value, bytes } = message;
        let (id, method) = match message::classify(&value) {
            Kind::Request { id, method } => (id.clone(), method.to_owned()),
            Kind::Notification { method }
                if method == "notifications/cancelled" && self.cancel_held(&value) =>
            {
                // The server never saw the held request, so it gets no cancellation either.
                return;
            }
            Kind::Notification { method } if Governed::from_request(method, None).is_some() => {
                // Without an id it cannot be answered, so it cannot be denied either; a server that
                // dispatches on `method` alone would run it undecided. Never forward it.
                note!("dropped a {method} without an id: governed requests need one to be decided");
                return;
            }
            Kind::Notification { .. } | Kind::Response { .. } => {
                self.forward(bytes).await;
                return;
            }
            Kind::Batch(_) => {
                return self
                    .reply(message::error_reply(
                        None,
                        INVALID_REQUEST,
                        "a batch may not contain a batch",
                    ))
                    .await;
            }
            Kind::Invalid { id, reason } => {
                let frame = message::error_reply(id, INVALID_REQUEST, reason);
                return self.reply(frame).await;
            }
        };
        match Governed::from_request(&method, value.get("params")) {
            Some(governed) => {
                let relay = self.clone();
                let (cancel, cancelled) = oneshot::channel();
                lock(&self.held).insert(message::id_key(&id), cancel);
                self.deciding.send_modify(|n| *n += 1);
                tokio::spawn(async move {
                    relay
                        .govern(id, method, governed, value, bytes, cancelled)
                        .await;
                    relay.deciding.send_modify(|n| *n -= 1);
                });
            }
            None => {
                self.track(&value);
                self.forward(bytes).await;
            }
        }
    }

    /// Cancels a held request named by a `notifications/cancelled`; false if none is held.
    fn cancel_held(&self, notification: &Value) -> bool {
        let Some(request) = notification.pointer("/params/requestId") else {
            return false;
        };
        match lock(&self.held).remove(&message::id_key(request)) {
            Some(cancel) => {
                let _ = cancel.send(());
                true
            }
            None => false,
        }
    }

    /// Notes what later responses will need: the client's name, pending `tools/list` calls.
    fn track(&self, msg: &Value) {
        let Kind::Request { id, method } = message::classify(msg) else {
            return;
        };
        match method {
            "initialize" => {
                let name = msg
                    .pointer("/params/clientInfo/name")
                    .and_then(Value::as_str);
                *lock(&self.client_name) = name.map(str::to_owned);
            }
            "tools/list" => {
                lock(&self.pending).insert(message::id_key(id), Pending::ToolsList);
            }
            _ => {}
        }
    }

    /// Decides a governed request, records the decision, then forwards it or answers it.
    async fn govern(
        self: &Arc<Self>,
        id: Value,
        method: String,
        governed: Result<Governed, String>,
        request: Value,
        body: Vec<u8>,
        mut cancelled: oneshot::Receiver<()>,
    ) {
        // One snapshot per decision: it decides, and its hash goes into the row.
        let policy = self.policy.current();
        let client_name = lock(&self.client_name).clone();
        let channel = client_name.clone().unwrap_or_else(|| "unknown".into());
        let (verdict, tool, arguments, action_type, resource_path) = match &governed {
            Ok(g) => {
                let annotations = match g {
                    Governed::ToolCall { name, .. } => lock(&self.annotations).get(name).cloned(),
                    _ => None,
                };
                let paths = self.resolve_paths(g).await;
                let facts = input::Facts {
                    client_name: client_name.as_deref(),
                    annotations: annotations.as_ref(),
                    session_seconds: self.started.elapsed().as_secs(),
                    paths: &paths,
                };
                let built = input::build(&self.ctx, g, &facts);
                // Ambiguous paths and behavry's own files are refused before any policy runs.
                let verdict = match &built.refused {
                    Some(why) => Verdict::fail_closed(why.clone()),
                    None => explain(policy.decide(&built.input)),
                };
                let agent = built
                    .input
                    .pointer("/agent/name")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_owned();
                (
                    verdict,
                    g.tool().to_owned(),
                    (g.arguments(), agent),
                    built.action_type.as_str(),
                    built.resource_path,
                )
            }
            Err(reason) => {
                let tool = request
                    .pointer("/params/name")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_owned();
                let args = request
                    .pointer("/params/arguments")
                    .cloned()
                    .unwrap_or(Value::Null);
                (
                    Verdict::fail_closed(format!("malformed request: {reason}")),
                    tool,
                    (args, channel.clone()),
                    "unknown",
                    None,
                )
            }
        };
        let (arguments, agent) = arguments;
        let qualified = format!("{}/{}", self.ctx.server, tool);
        let escalated = verdict.decision == Decision::Escalate;
        let session_key = format!("{method} {tool}");
        let session_approved = escalated && lock(&self.session_approved).contains(&session_key);
        // `body` is what is forwarded: bytes that read as `request`, the value evaluated; an
        // approval is bound to the hash of exactly these bytes.
        let row = DecisionRow {
            session_id: self.ctx.session_id.clone(),
            server: self.ctx.server.clone(),
            tool: tool.clone(),
            method: method.clone(),
            action_type: action_type.to_owned(),
            resource_path,
            decision: verdict.decision.as_str().to_owned(),
            reasons: verdict.reasons.clone(),
            arguments: crate::audit::store::redact(&arguments),
            agent,
            requester: self.ctx.requester_id.clone(),
            channel,
            policy_hash: policy.hash.clone(),
            request_id: message::id_key(&id),
            resolution: session_approved.then_some(Resolution::ApprovedSession),
        };
        let recorded = if escalated && !session_approved {
            let expires = time::OffsetDateTime::now_utc() + self.approval_timeout;
            let hold = Hold {
                owner: self.owner,
                request_hash: sha256_hex(&body),
                expires_at: crate::audit::store::format_ts(expires),
            };
            self.audit.record_escalation(row, hold).await
        } else {
            self.audit.record(row).await
        };
        let row = match recorded {
            Ok(row) => row,
            Err(e) => {
                note!("could not record the decision for {qualified}, so it is denied: {e}");
                let reason = format!(
                    "the audit store could not record this call, so it was not forwarded ({e})"
                );
                if !self.was_cancelled(&id, &mut cancelled) {
                    self.deny(&id, &method, &qualified, &[reason]).await;
                }
                return;
            }
        };
        if verdict.decision == Decision::Escalate && !session_approved {
            let token = request.pointer("/params/_meta/progressToken").cloned();
            let names = (method.as_str(), session_key.as_str(), qualified.as_str());
            return self.hold(id, row, body, names, token, cancelled).await;
        }
        // The client may have cancelled while the call was being decided: then it gets neither
        // forwarded nor answered.
        if self.was_cancelled(&id, &mut cancelled) {
            return;
        }
        match verdict.decision {
            Decision::Deny => self.deny(&id, &method, &qualified, &verdict.reasons).await,
            _ => self.release(&id, row, body, &qualified).await,
        }
    }

    /// Stops listening for the cancellation of request `id`; whether it was cancelled.
    fn was_cancelled(&self, id: &Value, cancelled: &mut oneshot::Receiver<()>) -> bool {
        lock(&self.held).remove(&message::id_key(id));
        cancelled.try_recv().is_ok()
    }

    /// Forwards an allowed (or approved) request, remembering it so its outcome is recorded.
    async fn release(&self, id: &Value, row: i64, body: Vec<u8>, qualified: &str) {
        let key = message::id_key(id);
        lock(&self.pending).insert(
            key.clone(),
            Pending::Governed {
                row,
                sent: Instant::now(),
            },
        );
        if !self.forward(body).await {
            lock(&self.pending).remove(&key);
            let text = format!("behavry could not forward {qualified}: the server has exited");
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
    async fn deny(&self, id: &Value, method: &str, qualified: &str, reasons: &[String]) {
        let text = format!("behavry denied {qualified}: {}", reasons.join("; "));
        let frame = if method == "tools/call" {
            message::tool_error_reply(id, &text)
        } else {
            message::error_reply(Some(id), POLICY_DENIED, &text)
        };
        self.reply(frame).await;
    }

    /// Holds an escalated request until `behavry approve` resolves it, it times out, or the client
    /// cancels it. Other traffic keeps flowing: this runs in the request's own task.
    async fn hold(
        &self,
        id: Value,
        row: i64,
        body: Vec<u8>,
        names: (&str, &str, &str),
        token: Option<Value>,
        cancelled: oneshot::Receiver<()>,
    ) {
        let (method, session_key, qualified) = names;
        // A held call is waiting for a person, not being decided: shutdown need not wait for it
        // (it is resolved `abandoned` on the way out).
        self.deciding.send_modify(|n| *n -= 1);
        let timeout = self.approval_timeout;
        note!(
            "{qualified} is waiting for approval: run `behavry approve` in another terminal (times out in {})",
            approval::human(timeout)
        );
        let to_client = self.to_client.clone();
        let mut progress = 0u64;
        let keepalive = move |left: Duration| {
            let Some(token) = &token else { return };
            progress += 1;
            let message = format!(
                "awaiting approval: run `behavry approve` ({} left)",
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
        let released = approval::wait(&self.audit, row, timing, cancelled, keepalive).await;
        lock(&self.held).remove(&message::id_key(&id));
        self.deciding.send_modify(|n| *n += 1);
        let reason = match released {
            Released::Approved { session, by } => {
                if session {
                    lock(&self.session_approved).insert(session_key.to_owned());
                }
                note!("{qualified} was approved by {by}");
                return self.release(&id, row, body, qualified).await;
            }
            Released::Cancelled => return,
            Released::Denied { reason, by } => match reason {
                Some(reason) => format!("a person denied this call ({by}): {reason}"),
                None => format!("a person denied this call ({by})"),
            },
            Released::TimedOut => format!(
                "this call needs a person's approval and was not approved within {}; next time, ask the \
                 user to run `behavry approve` in another terminal and approve it while you wait",
                approval::human(timeout)
            ),
            Released::Failed(e) => format!("the approval could not be completed, so the call was not forwarded ({e})"),
        };
        self.deny(&id, method, qualified, &[reason]).await;
    }

    async fn on_server_line(&self, line: Vec<u8>) {
        let shown = || String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
        // Only the parts the relay needs are read: a huge result is skipped, and JSON that is
        // valid but beyond serde's number range is still relayed.
        let skeleton = match message::read_server_line(&line) {
            message::ServerLine::Message(skeleton) => skeleton,
            message::ServerLine::NotJson => {
                note!(
                    "the server wrote a line that is not JSON to stdout (dropped): {}",
                    shown()
                );
                return;
            }
            // JSON that is not JSON-RPC at all (structured log lines) would break the client's
            // reader as surely as plain text; a JSON-RPC object with an unusual shape is the
            // client's to judge.
            message::ServerLine::NotJsonRpc => {
                note!(
                    "the server wrote JSON that is not JSON-RPC to stdout (dropped): {}",
                    shown()
                );
                return;
            }
            message::ServerLine::Unreadable(e) => {
                note!(
                    "relayed a server message behavry could not read ({e}); its outcome is not recorded: {}",
                    shown()
                );
                let _ = self.to_client.send(line).await;
                return;
            }
        };
        self.guard.server_message(&skeleton);
        self.record_server_requests(&skeleton);
        match message::classify(&skeleton) {
            Kind::Response { .. } => self.settle(&skeleton, &line),
            Kind::Batch(items) => items.iter().for_each(|m| self.settle(m, &line)),
            _ => {}
        }
        let _ = self.to_client.send(line).await;
    }

    /// Response bookkeeping: cache annotations from `tools/list`, record outcomes of allowed calls.
    /// `response` is the skeleton of one response in `line` (see [`message::read_server_line`]).
    fn settle(&self, response: &Value, line: &[u8]) {
        let Kind::Response { id } = message::classify(response) else {
            return;
        };
        let Some(pending) = lock(&self.pending).remove(&message::id_key(id)) else {
            return;
        };
        match pending {
            Pending::ToolsList => {
                // The tool list is read whole: the one answer whose result behavry uses.
                let full = match serde_json::from_slice::<Value>(line) {
                    Ok(full) => full,
                    Err(e) => {
                        note!("could not read the server's tools/list answer ({e}); its annotations are not used");
                        return;
                    }
                };
                let answer = match &full {
                    Value::Array(items) => items.iter().find(|m| m.get("id") == Some(id)),
                    one => Some(one),
                };
                let tools = answer
                    .and_then(|a| a.pointer("/result/tools"))
                    .and_then(Value::as_array);
                let mut cache = lock(&self.annotations);
                for tool in tools.into_iter().flatten() {
                    if let (Some(name), Some(ann)) = (
                        tool.get("name").and_then(Value::as_str),
                        tool.get("annotations"),
                    ) {
                        cache.insert(name.to_owned(), ann.clone());
                    }
                }
            }
            Pending::Governed { row, sent } => {
                let outcome = if response.get("error").is_some() {
                    Outcome::Error
                } else if response.pointer("/result/isError") == Some(&Value::Bool(true)) {
                    Outcome::IsError
                } else {
                    Outcome::Ok
                };
                self.audit
                    .outcome(row, outcome, sent.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
}

/// Whether `message` names a governed method, with an id or (wrongly) without one.
fn is_governed(message: &Value) -> bool {
    match message::classify(message) {
        Kind::Request { method, .. } | Kind::Notification { method } => {
            Governed::from_request(method, None).is_some()
        }
        _ => false,
    }
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

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
