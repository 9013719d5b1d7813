//! The stdio relay between an MCP client and the server it launched through `behavry wrap`.
//!
//! One task owns each pipe end: the client reader, the server reader, the writer to the server's
//! stdin and the writer to the client's stdout. Everything sent to a pipe goes through its writer's
//! channel, so frames never interleave. Each governed request is decided in a task of its own
//! ([`govern`]), so a slow policy or audit commit (another process holding the lock) never stalls
//! other traffic. This module owns the pipes, the per-message checks and shutdown; what happens to
//! a governed call is [`govern`]'s business.
//!
//! This module never prints: stdout belongs to the client writer, diagnostics go to stderr.

pub mod child;
pub mod elicit;
pub mod frame;
pub mod govern;
pub mod guard;
pub mod message;
mod reload;
pub mod strict;
mod tools;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

use crate::approval;
use crate::audit::store::{Owner, SessionRecord};
use crate::audit::{AuditHandle, Outcome};
use crate::config::Config;
use crate::note;
use crate::policy::canon::{OwnDir, Resolver};
use crate::policy::input::{self, Governed};
use crate::policy::{Live, PolicySet};
use frame::{Frame, FrameReader};
use message::{Kind, INVALID_REQUEST};

/// Frames queued per direction before a writer pushes back on its senders.
const QUEUE: usize = 1024;

/// Server-to-client requests that are not worth an audit record: they act on nobody.
const UNRECORDED_SERVER_REQUESTS: &[&str] = &["ping"];

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
    /// Every governed call is denied with this reason, whatever the policies say (the system
    /// config was refused: running on the user's settings alone would drop the team's).
    pub refused: Option<String>,
}

/// What to do when the server answers a request the client sent.
enum Pending {
    /// A client's `tools/list`, whose answer also refreshes the tool catalogue.
    ToolsList,
    /// The client's `initialize` (its params): once answered, the session is up and recorded.
    Initialize(Value),
    /// An allowed governed call whose outcome goes into its audit row.
    Governed {
        row: i64,
        sent: Instant,
        /// The progress token (key) whose server progress is renumbered (see `progress`).
        renumbered: Option<String>,
    },
}

struct Relay {
    ctx: input::Context,
    /// The policy set in force; hot reload swaps it (see [`crate::policy::watch`]).
    policy: Live,
    audit: AuditHandle,
    started: Instant,
    max_frame: usize,
    client_name: Mutex<Option<String>>,
    /// `clientInfo.title` (else its name), for the notes that point the person to its form.
    client_title: Mutex<Option<String>>,
    /// The client declared the `elicitation` capability: held calls can be put to it as a form.
    client_elicits: AtomicBool,
    /// How held calls are put to a person (`[wrap] approval`).
    approval: elicit::Channel,
    /// Forms sent to the client about held calls (see [`elicit`]).
    forms: elicit::Forms,
    /// Watches the store for every held call's resolution, and caps how many are held.
    waiter: approval::Waiter,
    /// A policy decision is running inline on a worker (see `Relay::evaluating`).
    evaluating: AtomicBool,
    /// The server's tools, as behavry lists them itself (see [`tools`]).
    tools: tools::Tools,
    /// Client request id (see [`message::id_key`]) → what its response means to us.
    pending: Mutex<HashMap<String, Pending>>,
    to_client: mpsc::Sender<Vec<u8>>,
    to_server: mpsc::Sender<Vec<u8>>,
    /// Governed requests still being decided; shutdown waits for them so none is dropped.
    deciding: watch::Sender<usize>,
    /// Governed requests being decided or held, by client request id; the sender cancels one
    /// (a `notifications/cancelled` can arrive at any point before it is forwarded).
    held: Mutex<HashMap<String, oneshot::Sender<()>>>,
    /// Progress token (key) of an approved call → how many keepalives the client saw on it: the
    /// server's own progress on that token is shifted up by that much.
    progress: Mutex<HashMap<String, f64>>,
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
    /// Monitor mode: every call is decided and recorded, then forwarded whatever the decision.
    monitor: bool,
    /// The server's tool definitions pinned by hash (see [`crate::pinning`]).
    pins: crate::pinning::Pinned,
    /// Leave tools the policies deny for every call out of `tools/list` answers.
    filter_denied_tools: bool,
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
    // A refused system config loads nothing else: every governed call is denied with its reason.
    let team = match &opts.refused {
        Some(_) => None,
        None => crate::pull::activate::Bundles::load(&opts.config, &opts.database),
    };
    let policy = match (&opts.refused, &team) {
        (Some(why), _) => PolicySet::refused(why.clone()),
        (None, None) => PolicySet::load(&opts.policy_dirs, eval_timeout),
        (None, Some(team)) => {
            team.start_note();
            let local = crate::policy::source::scan(
                &opts.policy_dirs,
                crate::policy::source::Scan::ENFORCE,
            );
            team.compose(local, eval_timeout)
        }
    };
    let dirs = opts
        .policy_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(why) = policy.refusal() {
        note!("every governed call will be denied: {why}");
    } else if let Some(e) = policy.error_report() {
        note!("policies failed to compile; every governed call will be denied until they are fixed:\n{e}");
    } else if policy.files.is_empty() {
        note!("no .rego files in {dirs}; every governed call will be denied (default deny)");
    }
    let (audit, audit_thread) = AuditHandle::open(&opts.database, opts.config.audit.durability);
    if let Some(e) = audit.error() {
        note!("audit store unavailable; every governed call will be denied until it can be opened: {e}");
    }
    let waiter = approval::Waiter::start(audit.clone(), opts.config.wrap.max_held);
    let session_id = uuid::Uuid::new_v4().to_string();
    // A refused set is never watched: no edit of a policy file may lift the refusal.
    let (policy, watcher) = match &opts.refused {
        Some(_) => (crate::policy::watch::Live::fixed(policy), None),
        None => {
            let team = team.map(|bundles| crate::policy::watch::Team {
                bundles,
                database: opts.database.clone(),
                verifier: crate::pull::verify::Verifier::new(&opts.config.keys),
            });
            let (live, watcher) = crate::policy::watch::watch_team(
                opts.policy_dirs.clone(),
                eval_timeout,
                policy,
                team,
                reload::reporter(audit.clone(), session_id.clone(), opts.server.clone()),
                |problem| note!("{problem}"),
            );
            (live, Some(watcher))
        }
    };
    // Decision logs leave from their own thread and connection, reading what the journal
    // already holds: nothing on the per-call path waits for them.
    let _exporter = crate::export::start(
        opts.database.clone(),
        opts.config.decision_log.clone(),
        policy.clone(),
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
    let monitor = config.mode_for(&opts.server) == crate::config::Mode::Monitor;
    if monitor {
        note!(
            "MONITOR MODE for server {:?}: calls are decided and recorded but NOT enforced; every call is forwarded, including those the policies deny (set mode = \"enforce\" in config.toml to protect)",
            opts.server
        );
    }
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
        client_title: Mutex::new(None),
        client_elicits: AtomicBool::new(false),
        approval: config.wrap.approval,
        forms: elicit::Forms::new(),
        waiter,
        evaluating: AtomicBool::new(false),
        tools: tools::Tools::new(Duration::from_millis(config.wrap.tools_list_wait_ms)),
        pending: Mutex::new(HashMap::new()),
        to_client,
        to_server,
        deciding: watch::channel(0).0,
        held: Mutex::new(HashMap::new()),
        progress: Mutex::new(HashMap::new()),
        session_approved: Mutex::new(HashSet::new()),
        approval_timeout: opts.approval_timeout,
        approval_keepalive: Duration::from_secs(config.wrap.approval_keepalive_secs),
        owner: Owner::current(),
        guard: guard::Guard::default(),
        resolver,
        monitor,
        pins: crate::pinning::Pinned::new(
            opts.database.clone(),
            &opts.server,
            std::iter::once(opts.program.clone())
                .chain(opts.args.iter().cloned())
                .collect(),
        ),
        filter_denied_tools: config.filters_denied_tools(&opts.server),
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
        if let Some(Pending::Governed { row, sent, .. }) = lock(&self.pending).remove(&key) {
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
        let message = match strict::read_keeping(line) {
            Ok(m) => m,
            Err((rejection, line)) => return self.refuse(rejection, &line).await,
        };
        let strict::Message { value, bytes } = message;
        let Value::Array(items) = value else {
            if let Err(rejection) = strict::check(&value) {
                return self.refuse(rejection, &bytes).await;
            }
            if let Some(value) = self.admit(value, &bytes).await {
                self.client_message(strict::Message { value, bytes }).await;
            }
            return;
        };
        if let Err(rejection) = self.guard.batch_allowed() {
            return self.refuse(rejection, &bytes).await;
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
                self.refuse(rejection, item.to_string().as_bytes()).await;
                continue;
            }
            let element = item.to_string();
            if let Some(item) = self.admit(item, element.as_bytes()).await {
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
    /// request in flight uses it (then the answer would resolve that request instead). The
    /// attempt is recorded: refused frames are what an auditor most wants to see.
    async fn refuse(&self, rejection: strict::Rejection, line: &[u8]) {
        let what = if rejection.code == message::PARSE_ERROR {
            "parse_error"
        } else {
            "invalid_request"
        };
        self.audit.refused_frame(
            &self.ctx.session_id,
            &self.ctx.server,
            what,
            &rejection.message,
            rejection.id.as_ref(),
            line,
        );
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
                note!(
                    "dropped a {} without an id: governed requests need one to be decided",
                    crate::display::escape(method)
                );
                return;
            }
            Kind::Notification { method } => {
                let initialized = method == "notifications/initialized";
                self.forward(bytes).await;
                // The session is ready: read the server's tools before the first call needs them.
                if initialized {
                    self.list_tools().await;
                }
                return;
            }
            // The client's answer to one of behavry's own forms is behavry's, not the server's.
            Kind::Response { .. } if self.form_answer(&value) => return,
            Kind::Response { .. } => {
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
                let deciding = govern::Deciding::start(&self.deciding);
                let call = govern::Call {
                    id,
                    method,
                    governed,
                    message: value,
                    body: bytes,
                };
                tokio::spawn(async move { relay.govern(call, cancelled, deciding).await });
            }
            None => {
                self.track(&value);
                self.forward(bytes).await;
            }
        }
    }

    /// Cancels a held request named by a `notifications/cancelled`; false if none is held. A
    /// forwarded call it names is recorded `cancelled` (the server is told, and may still answer;
    /// that answer is relayed but records nothing more).
    fn cancel_held(&self, notification: &Value) -> bool {
        let Some(request) = notification.pointer("/params/requestId") else {
            return false;
        };
        let key = message::id_key(request);
        if let Some(Pending::Governed { row, sent, .. }) = lock(&self.pending).remove(&key) {
            self.audit
                .cancelled(row, sent.elapsed().as_secs_f64() * 1000.0);
            return false;
        }
        match lock(&self.held).remove(&key) {
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
                let info = |key: &str| {
                    msg.pointer(&format!("/params/clientInfo/{key}"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                *lock(&self.client_name) = info("name");
                *lock(&self.client_title) = info("title").or_else(|| info("name"));
                let elicits = msg
                    .pointer("/params/capabilities/elicitation")
                    .is_some_and(Value::is_object);
                self.client_elicits.store(elicits, Ordering::Relaxed);
            }
            "tools/list" => {
                lock(&self.pending).insert(message::id_key(id), Pending::ToolsList);
            }
            _ => {}
        }
        if method == "initialize" {
            let params = msg.get("params").cloned().unwrap_or(Value::Null);
            lock(&self.pending).insert(message::id_key(id), Pending::Initialize(params));
        }
    }

    /// Runs one client message through the per-message checks; a refused one is answered here
    /// and `None` is returned.
    async fn admit(&self, msg: Value, line: &[u8]) -> Option<Value> {
        match strict::check(&msg).and_then(|()| self.guard.admit(&msg)) {
            Ok(()) => Some(msg),
            Err(rejection) => {
                self.refuse(rejection, line).await;
                None
            }
        }
    }

    /// Records the requests the server sends the client (`sampling/createMessage`,
    /// `elicitation/create`, `roots/list`, …) as `server_request` records in the audit journal:
    /// they are the server acting on the user. They are relayed regardless; the record is queued,
    /// and written before behavry exits.
    fn record_server_requests(&self, msg: &Value) {
        let record = |m: &Value| {
            if let Kind::Request { id, method } = message::classify(m) {
                if UNRECORDED_SERVER_REQUESTS.contains(&method) {
                    return;
                }
                self.audit.server_request(
                    &self.ctx.session_id,
                    &self.ctx.server,
                    method,
                    id,
                    m.get("params").unwrap_or(&Value::Null),
                );
            }
        };
        match msg {
            Value::Array(items) => items.iter().for_each(record),
            other => record(other),
        }
    }

    async fn on_server_line(&self, line: Vec<u8>) {
        let shown = || String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
        // Only the parts the relay needs are read: a huge result is skipped, and JSON that is
        // valid but beyond serde's number range is still relayed.
        let value = match message::read_server_line(&line) {
            message::ServerLine::Message(skeleton) => skeleton,
            message::ServerLine::NotJson => {
                note!(
                    "the server wrote a line that is not JSON to stdout (dropped): {}",
                    crate::display::escape(&shown())
                );
                return;
            }
            // JSON that is not JSON-RPC at all (structured log lines) would break the client's
            // reader as surely as plain text; a JSON-RPC object with an unusual shape is the
            // client's to judge.
            message::ServerLine::NotJsonRpc => {
                note!(
                    "the server wrote JSON that is not JSON-RPC to stdout (dropped): {}",
                    crate::display::escape(&shown())
                );
                return;
            }
            message::ServerLine::Unreadable(e) => {
                note!(
                    "relayed a server message behavry could not read ({e}); its outcome is not recorded: {}",
                    crate::display::escape(&shown())
                );
                let _ = self.to_client.send(line).await;
                return;
            }
        };
        self.guard.server_message(&value);
        if self.own_answer(&value, &line).await {
            return;
        }
        if let Kind::Notification {
            method: "notifications/tools/list_changed",
        } = message::classify(&value)
        {
            self.list_tools().await;
        }
        self.record_server_requests(&value);
        let filtered = self.hide_denied_tools(&value, &line);
        let started = match message::classify(&value) {
            Kind::Response { .. } => self.settle(&value, &line),
            // Every element is settled (no short-circuit): each may record an outcome.
            Kind::Batch(items) => {
                items
                    .iter()
                    .map(|m| self.settle(m, &line))
                    .filter(|s| *s)
                    .count()
                    > 0
            }
            _ => false,
        };
        let line = filtered.unwrap_or(line);
        let line = self.renumber_progress(&value, &line).unwrap_or(line);
        let _ = self.to_client.send(line).await;
        if started {
            self.warn_if_policies_broken().await;
        }
    }

    /// Tells the client, once its session is up, that policies failed to load: otherwise it shows
    /// the server as connected and healthy while every governed call will be denied.
    async fn warn_if_policies_broken(&self) {
        let policy = self.policy.current();
        let problem = match policy.error() {
            Some(why) if policy.refusal().is_some() => {
                format!("behavry: every tool call will be denied: {why}")
            }
            Some(e) => format!(
                "behavry: the policies failed to compile, so every tool call will be denied until they are fixed: {}",
                e.replace('\n', "; ")
            ),
            None if policy.files.is_empty() => {
                "behavry: no policy files were found, so every tool call will be denied (default deny); \
                 run `behavry init`"
                    .to_owned()
            }
            None => return,
        };
        let note = json!({"jsonrpc": "2.0", "method": "notifications/message",
            "params": {"level": "warning", "logger": "behavry", "data": problem}});
        let _ = self.to_client.send(note.to_string().into_bytes()).await;
    }

    /// The server's `notifications/progress` on the token of a call that was held, shifted past
    /// the keepalives the client already saw on it; `None` for every other message.
    fn renumber_progress(&self, skeleton: &Value, line: &[u8]) -> Option<Vec<u8>> {
        let Kind::Notification {
            method: "notifications/progress",
        } = message::classify(skeleton)
        else {
            return None;
        };
        let token = message::id_key(skeleton.pointer("/params/progressToken")?);
        let offset = *lock(&self.progress).get(&token)?;
        // A small notification: read whole, so only the numbers change.
        let mut msg: Value = serde_json::from_slice(line).ok()?;
        for field in ["progress", "total"] {
            if let Some(n) = msg
                .pointer(&format!("/params/{field}"))
                .and_then(Value::as_f64)
            {
                msg["params"][field] = json!(n + offset);
            }
        }
        Some(msg.to_string().into_bytes())
    }

    /// Response bookkeeping: refresh the tool catalogue from `tools/list`, record outcomes of
    /// allowed calls. Returns whether this answered the client's `initialize`. `response` is the
    /// skeleton of one response in `line` (see [`message::read_server_line`]).
    fn settle(&self, response: &Value, line: &[u8]) -> bool {
        let Kind::Response { id } = message::classify(response) else {
            return false;
        };
        let Some(pending) = lock(&self.pending).remove(&message::id_key(id)) else {
            return false;
        };
        match pending {
            Pending::Initialize(params) => {
                let result = response.get("result");
                self.audit.session(SessionRecord::from_initialize(
                    &self.ctx.session_id,
                    &self.ctx.server,
                    &params,
                    result,
                ));
                return result.is_some();
            }
            Pending::ToolsList => {
                // The tool list is read whole: the one answer whose result behavry uses.
                if let Some(full) = message::full_response(line, id) {
                    if let Some(result) = full.get("result") {
                        self.client_tools_page(result);
                    }
                }
            }
            Pending::Governed {
                row,
                sent,
                renumbered,
            } => {
                if let Some(token) = renumbered {
                    lock(&self.progress).remove(&token);
                }
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
        false
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
