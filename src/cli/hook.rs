//! `behavry hook`: the command Claude Code runs for each of its tool calls (one event on stdin,
//! the answer on stdout, always exit 0), and `behavry claude hook install|uninstall`, which put
//! it into Claude Code's settings (`behavry claude status` shows them).
//!
//! Claude Code runs the tool when a hook exits 1, prints garbage or times out, so this command
//! never does any of those: a failure anywhere (bad event, unreadable config, policies that do
//! not compile, a store that cannot record, a panic, the internal deadline) prints a deny.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::HookArgs;
use crate::approval::{self, Released, Timing};
use crate::audit::store::{Hold, Outcome, Owner, Resolution, Resolved};
use crate::audit::{LogFilter, Store};
use crate::config::{Config, Paths};
use crate::hook::answer::{self, Answer};
use crate::hook::event::{self, Event, ToolUse};
use crate::hook::{agents, call, settings, McpTools, SERVER};
use crate::note;
use crate::policy::canon::Resolver;
use crate::policy::PolicySet;

/// Events can carry whole files (Write's `content`); beyond this the call is denied.
const MAX_EVENT_BYTES: u64 = 64 * 1024 * 1024;

/// Set by whichever answers first: the decision or the deadline. Only one answer is printed.
static ANSWERED: AtomicBool = AtomicBool::new(false);

/// Milliseconds after start at which the deadline answers; raised while a person decides. Set it
/// with [`set_deadline`].
static DEADLINE_MS: AtomicU64 = AtomicU64::new(0);

/// The thread that answers at the deadline, woken when the deadline moves.
static WATCHDOG: std::sync::OnceLock<std::thread::Thread> = std::sync::OnceLock::new();

fn set_deadline(ms: u64) {
    DEADLINE_MS.store(ms, Ordering::SeqCst);
    if let Some(watchdog) = WATCHDOG.get() {
        watchdog.unpark();
    }
}

pub fn run(_: HookArgs) -> anyhow::Result<i32> {
    Ok(respond())
}

/// `behavry claude hook …`
#[derive(Debug, clap::Subcommand)]
#[command(
    after_help = "Scopes: user = ~/.claude/settings.json (every project); project = \
    .claude/settings.json (shared with the project); local = .claude/settings.local.json (yours, \
    not checked in). The project is $CLAUDE_PROJECT_DIR, else the current directory."
)]
pub enum HookSettings {
    /// Add behavry's hooks (PreToolUse, PostToolUse, PostToolUseFailure) to Claude Code's settings
    Install {
        #[arg(long, value_enum, default_value = "user")]
        scope: settings::Scope,
    },
    /// Remove exactly behavry's hooks from Claude Code's settings
    Uninstall {
        #[arg(long, value_enum, default_value = "user")]
        scope: settings::Scope,
    },
}

pub fn settings(action: HookSettings) -> anyhow::Result<i32> {
    match action {
        HookSettings::Install { scope } => install(scope, true),
        HookSettings::Uninstall { scope } => install(scope, false),
    }
}

/// Answers one event. Every path ends in exit 0.
fn respond() -> i32 {
    let start = Instant::now();
    DEADLINE_MS.store(
        crate::hook::HookConfig::default().deadline_ms,
        Ordering::SeqCst,
    );
    let watchdog = std::thread::spawn(move || deadline(start));
    let _ = WATCHDOG.set(watchdog.thread().clone());
    let answer = std::panic::catch_unwind(|| {
        let mut text = String::new();
        let read = std::io::stdin()
            .take(MAX_EVENT_BYTES)
            .read_to_string(&mut text);
        match read {
            Ok(_) => handle(&text, start),
            Err(e) => Some(answer::fail_closed(&format!("cannot read stdin: {e}"))),
        }
    })
    .unwrap_or_else(|_| Some(answer::fail_closed("behavry hit an internal error (a bug)")));
    if let Some(line) = answer {
        emit(&line);
    }
    ANSWERED.store(true, Ordering::SeqCst);
    0
}

/// Prints the answer unless the deadline answered already.
fn emit(line: &str) {
    if !ANSWERED.swap(true, Ordering::SeqCst) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// Denies the call if no answer is out by the deadline, and ends the process.
fn deadline(start: Instant) {
    loop {
        let due = start + Duration::from_millis(DEADLINE_MS.load(Ordering::SeqCst));
        let now = Instant::now();
        if now < due {
            std::thread::park_timeout(due - now);
            continue;
        }
        if !ANSWERED.swap(true, Ordering::SeqCst) {
            let ms = DEADLINE_MS.load(Ordering::SeqCst);
            let line =
                answer::fail_closed(&format!("no decision within {ms} ms ([hook] deadline_ms)"));
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
            std::process::exit(0);
        }
        return;
    }
}

/// The answer to print for one event (`None`: print nothing).
fn handle(text: &str, start: Instant) -> Option<String> {
    match event::parse(text) {
        Err(e) => Some(answer::fail_closed(&e.to_string())),
        Ok(Event::Other(_)) => None,
        Ok(Event::Pre(call)) => pre(call, start).unwrap_or_else(|e| {
            note!("{e:#}");
            Some(answer::fail_closed(&format!("{e:#}")))
        }),
        Ok(Event::Post {
            call,
            failed,
            duration_ms,
        }) => {
            if let Err(e) = post(&call, failed, duration_ms) {
                note!("could not record how {} ended: {e:#}", call.tool_name);
            }
            None
        }
    }
}

fn pre(call: ToolUse, start: Instant) -> anyhow::Result<Option<String>> {
    let paths = Paths::resolve()?;
    let config = Config::load(&paths.config_file())?;
    let hook = config.hook.clone();
    set_deadline(hook.deadline_ms);
    if event::is_mcp_tool(&call.tool_name) && hook.mcp_tools == McpTools::Defer {
        return Ok(None);
    }
    if call::LEFT_TO_CLAUDE.contains(&call.tool_name.as_str()) {
        return Ok(None);
    }
    if let Some(agent) = agents::hook_agent() {
        // Best effort: the registry only sharpens the approver's self-approval guard.
        let _ = agents::register(&agents::registry(&paths.data_dir), agent);
    }
    let policy_dirs = vec![paths.policy_dir()];
    let eval_timeout = Duration::from_millis(config.wrap.eval_timeout_ms);
    // The team's bundles decide Claude Code's own tools as they decide MCP calls, with the local
    // files as `local` says: the local files alone would be the user's (and the agent's) to edit.
    let policy = match crate::pull::activate::Bundles::load(&config, &paths.database()) {
        None => PolicySet::load(&policy_dirs, eval_timeout),
        Some(team) => team.compose(
            crate::policy::source::scan(&policy_dirs, crate::policy::source::Scan::ENFORCE),
            eval_timeout,
        ),
    };
    let mut ctx = config.input_context(
        SERVER,
        call.session_id.clone(),
        paths.behavry_dirs(&policy_dirs),
    );
    ctx.cwd = PathBuf::from(&call.cwd);
    ctx.action_types = call::action_types(&ctx.action_types);
    let resolver = Resolver::new(
        ctx.cwd.clone(),
        ctx.home.clone(),
        paths.own_dirs(&policy_dirs),
    );
    let resolved = resolver.resolve_call(&call::path_args(&call));
    let mut decided = call::decide(
        &ctx,
        &call,
        &resolved,
        session_seconds(call.transcript_path.as_deref()),
        &policy,
    );
    decided.row.request_id = call.tool_use_id.clone();
    let answer = answer::answer(&decided.verdict, hook.escalate);
    if answer == Answer::NoOpinion {
        // Recorded for what it is: a person (Claude Code's prompt) or its permission rules decide.
        decided.row.decision = "escalate".into();
        decided.row.reasons = vec![
            "no rule allowed or denied this call; Claude Code's own permissions decided it".into(),
        ];
    }
    let mut store = Store::open_with(&paths.database(), config.audit.durability)?;
    let mut answer = answer;
    if matches!(answer, Answer::Hold(_)) && approved_for_session(&store, &call)? {
        // As in the wrapper: "approve for the session" covers later calls of the same tool.
        decided.row.resolution = Some(Resolution::ApprovedSession);
        answer = Answer::Allow(format!("behavry: {}", crate::audit::store::BY_SESSION));
    }
    let Answer::Hold(reason) = answer else {
        if let Err(e) = store.record_decision(&decided.row) {
            return Ok(Some(answer::fail_closed(&format!(
                "the audit store could not record this call ({e})"
            ))));
        }
        return Ok(answer::render(&answer));
    };
    // Held: the deadline now covers the wait for a person too.
    let timeout = hook.approval_timeout();
    let waited_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    set_deadline(
        waited_ms
            .saturating_add(timeout.as_millis() as u64)
            .saturating_add(hook.deadline_ms),
    );
    let expires = time::OffsetDateTime::now_utc() + timeout;
    let hold = Hold {
        owner: Owner::current(),
        request_hash: crate::policy::source::sha256(&call.tool_input.to_string()),
        expires_at: crate::audit::store::format_ts(expires),
    };
    let id = match store.record_escalation(&decided.row, &hold) {
        Ok(id) => id,
        Err(e) => {
            return Ok(Some(answer::fail_closed(&format!(
                "the audit store could not record this call ({e})"
            ))))
        }
    };
    note!(
        "{SERVER}/{} waits for `behavry approve`: {reason}",
        call.tool_name
    );
    let released = wait(store, id, timeout)?;
    let answer = match released {
        Released::Approved { by, .. } => Answer::Allow(format!("behavry: approved by {by}")),
        Released::Denied { reason, by } => Answer::Deny(match reason {
            Some(r) => format!("behavry: denied by {by}: {r}"),
            None => format!("behavry: denied by {by}"),
        }),
        Released::TimedOut => Answer::Deny(format!(
            "behavry: nobody approved this call within {}",
            approval::human(timeout)
        )),
        Released::Cancelled => Answer::Deny("behavry: the call was cancelled".into()),
        Released::Failed(why) => Answer::Deny(format!("behavry: {why}")),
    };
    Ok(answer::render(&answer))
}

/// The store as [`approval::wait`] needs it; one connection, used from one thread.
struct Held(Mutex<Store>);

impl approval::Resolver for Held {
    fn resolution(
        &self,
        id: i64,
    ) -> impl std::future::Future<Output = Result<Option<Resolved>, String>> + Send {
        let result = match self.0.lock() {
            Ok(store) => store.resolution(id).map_err(|e| e.to_string()),
            Err(_) => Err("the store connection is unusable".into()),
        };
        std::future::ready(result)
    }

    fn resolve(
        &self,
        id: i64,
        resolution: Resolution,
        by: &'static str,
    ) -> impl std::future::Future<Output = Result<bool, String>> + Send {
        let result = match self.0.lock() {
            Ok(mut store) => store
                .resolve(id, None, resolution, None, by)
                .map_err(|e| e.to_string()),
            Err(_) => Err("the store connection is unusable".into()),
        };
        std::future::ready(result)
    }
}

fn wait(store: Store, id: i64, timeout: Duration) -> anyhow::Result<Released> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let held = Held(Mutex::new(store));
    // Claude Code does not cancel a hook; it kills it (the call is then resolved abandoned).
    let (_keep, never) = tokio::sync::oneshot::channel();
    let timing = Timing {
        timeout,
        keepalive: timeout,
    };
    Ok(runtime.block_on(approval::wait(&held, id, timing, never, |_| {})))
}

/// Whether a person approved this tool "for the session" in this Claude Code session.
fn approved_for_session(store: &Store, call: &ToolUse) -> anyhow::Result<bool> {
    let filter = LogFilter {
        server: Some(SERVER.into()),
        session: Some(call.session_id.clone()),
        tool: Some(call.tool_name.clone()),
        limit: Some(1000),
        ..LogFilter::default()
    };
    Ok(store
        .query(&filter)?
        .iter()
        .any(|e| e.resolution.as_deref() == Some(Resolution::ApprovedSession.as_str())))
}

/// How long the session has run: the age of its transcript, when Claude Code named one.
fn session_seconds(transcript: Option<&str>) -> u64 {
    transcript
        .and_then(|t| std::fs::metadata(t).ok())
        .and_then(|m| m.created().ok())
        .and_then(|c| c.elapsed().ok())
        .map_or(0, |d| d.as_secs())
}

/// Records how a call ended against its decision (found by `tool_use_id` in its session).
fn post(call: &ToolUse, failed: bool, duration_ms: Option<f64>) -> anyhow::Result<()> {
    if call.tool_use_id.is_empty() {
        return Ok(());
    }
    let paths = Paths::resolve()?;
    let database = paths.database();
    if !database.exists() {
        return Ok(());
    }
    let config = Config::load(&paths.config_file())?;
    let mut store = Store::open_with(&database, config.audit.durability)?;
    // Its decision is usually among the newest rows of the session; calls run in parallel, so
    // not always the newest. Look a little way back, then further.
    let mut entry = None;
    for limit in [16, 1000] {
        let filter = LogFilter {
            server: Some(SERVER.into()),
            session: Some(call.session_id.clone()),
            limit: Some(limit),
            ..LogFilter::default()
        };
        entry = store
            .query(&filter)?
            .into_iter()
            .rev()
            .find(|e| e.request_id == call.tool_use_id);
        if entry.is_some() {
            break;
        }
    }
    let Some(entry) = entry else {
        // Not decided by behavry (an MCP tool left to its wrapper, one of Claude Code's own).
        return Ok(());
    };
    let outcome = if failed {
        Outcome::IsError
    } else {
        Outcome::Ok
    };
    store.record_outcome(entry.id, outcome, duration_ms.unwrap_or(0.0))?;
    Ok(())
}

fn install(scope: settings::Scope, add: bool) -> anyhow::Result<i32> {
    let path = settings_file(scope)?;
    let current = settings::read(&path)?;
    let updated = if add {
        let exe = std::env::current_exe()?;
        let home = std::env::var_os("BEHAVRY_HOME")
            .filter(|h| !h.is_empty())
            .map(|h| std::path::absolute(PathBuf::from(h)))
            .transpose()?;
        settings::install(current.clone(), &settings::command(&exe, home.as_deref()))
    } else {
        settings::uninstall(current.clone())
    }
    .map_err(|why| {
        anyhow::anyhow!(
            "{}: {why}; fix the file, then run this again",
            path.display()
        )
    })?;
    let mut out = std::io::stdout().lock();
    if updated == current {
        writeln!(
            out,
            "{}: already {}",
            path.display(),
            if add {
                "installed"
            } else {
                "without behavry's hooks"
            }
        )?;
        return Ok(0);
    }
    settings::write(&path, &updated)?;
    if add {
        writeln!(
            out,
            "{}: behavry now decides Claude Code's tool calls ({}); restart Claude Code sessions to pick it up",
            path.display(),
            settings::EVENTS.join(", ")
        )?;
    } else {
        writeln!(out, "{}: behavry's hooks removed", path.display())?;
    }
    Ok(0)
}

/// behavry's hooks in each settings file, for `behavry claude status`.
pub fn status(out: &mut impl std::io::Write) -> anyhow::Result<()> {
    for scope in [
        settings::Scope::User,
        settings::Scope::Project,
        settings::Scope::Local,
    ] {
        let path = settings_file(scope)?;
        let shown = match settings::read(&path) {
            Ok(s) if settings::installed(&s).is_empty() => "no behavry hooks".to_owned(),
            Ok(s) => format!("behavry hooks: {}", settings::installed(&s).join(", ")),
            Err(e) => e.to_string(),
        };
        let scope = format!("{scope:?}").to_lowercase();
        writeln!(
            out,
            "{scope:<8} {:<20} {shown} ({})",
            "hooks",
            path.display()
        )?;
    }
    Ok(())
}

/// The settings file of `scope`: the home directory for `user`, the project (CLAUDE_PROJECT_DIR,
/// else the working directory) for the others.
fn settings_file(scope: settings::Scope) -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf()))
        .ok_or_else(|| anyhow::anyhow!("cannot find your home directory; set HOME"))?;
    let project = match std::env::var_os("CLAUDE_PROJECT_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_dir()?,
    };
    Ok(settings::file(scope, &home, Path::new(&project)))
}
