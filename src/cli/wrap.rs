//! `behavry wrap`: builds the proxy's options and runs it with signals as the shutdown trigger.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;

use super::WrapArgs;
use crate::config::{Config, ConfigError, Paths};
use crate::proxy::{self, child, WrapOptions};

pub fn run(args: WrapArgs) -> anyhow::Result<i32> {
    let paths = Paths::resolve()?;
    // A system config that cannot be used must not leave the user's settings alone in force:
    // the wrapper runs, and denies every governed call saying why.
    let (mut config, refused) = match Config::load(&paths.config_file()) {
        Ok(config) => (config, None),
        Err(e @ ConfigError::System { .. }) => {
            let why = format!("{e}; until it is fixed, behavry denies every call");
            (Config::load_user(&paths.config_file())?, Some(why))
        }
        Err(e) => return Err(e.into()),
    };
    let Some((program, rest)) = args.command.split_first() else {
        anyhow::bail!("no server command given; usage: behavry wrap -- <command> [args...]");
    };
    let server = match args.name {
        Some(name) if !name.is_empty() && !name.contains('/') => name,
        Some(name) => anyhow::bail!("--name {name:?} must be non-empty and contain no '/'"),
        None => child::default_server_name(program, rest),
    };
    if args.monitor {
        // Under a system config only its administrator chooses monitor mode, as in the user's
        // config.toml: an agent that can edit the client's server list must not switch the team's
        // policy off with a flag.
        match crate::config::system_config() {
            Ok(Some(system)) => crate::note!(
                "--monitor is ignored: under the system config {} only its administrator sets the mode",
                system.display()
            ),
            _ => {
                config.servers.entry(server.clone()).or_default().mode =
                    Some(crate::config::Mode::Monitor)
            }
        }
    }
    let mut policy_dirs = vec![paths.policy_dir()];
    policy_dirs.extend(args.policies);
    let behavry_dirs = paths.behavry_dirs(&policy_dirs);
    let own_dirs = paths.own_dirs(&policy_dirs);
    let opts = WrapOptions {
        program: program.clone(),
        args: rest.to_vec(),
        server,
        policy_dirs,
        database: paths.database(),
        approval_timeout: Duration::from_secs(
            args.approval_timeout
                .unwrap_or(config.wrap.approval_timeout_secs),
        ),
        config,
        behavry_dirs,
        own_dirs,
        refused,
    };
    // A full disk (or a file-size limit) must fail the audit write, which denies the call; by
    // default SIGXFSZ would kill behavry instead. The server gets the default back at exec.
    // SAFETY: setting a signal to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // The server is spawned inside block_on, i.e. on the main thread, which PR_SET_PDEATHSIG needs.
    // Whether the client hung up or a signal arrived: if neither, the server ended the run itself,
    // which is worth saying (a server that exits at once otherwise leaves a silent exit code).
    let ended_by_client = Arc::new(AtomicBool::new(false));
    let program = opts.program.clone();
    let code = runtime.block_on(async {
        let signalled = ended_by_client.clone();
        let shutdown = signals()?;
        let shutdown = async move {
            shutdown.await;
            signalled.store(true, Ordering::Relaxed);
        };
        let client = EofFlag {
            inner: client_in(),
            eof: ended_by_client.clone(),
        };
        proxy::run(opts, client, client_out(), shutdown).await
    });
    // Reading stdin occupies a blocking thread that only returns when the client writes or hangs
    // up; don't wait for it.
    runtime.shutdown_background();
    let code = code?;
    if !ended_by_client.load(Ordering::Relaxed) {
        crate::note!(
            "the server `{program}` exited on its own (exit code {code}); behavry exits with it"
        );
    }
    Ok(code)
}

/// For `behavry wrap npx …` (no `--`), which clap rejects: the hint to add it.
/// `args` is the whole command line, program name first.
pub fn missing_separator_hint(args: &[std::ffi::OsString]) -> Option<String> {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // `behavry wrap …`: the subcommand is the first argument (behavry has no global options).
    if args.get(1).is_none_or(|a| a != "wrap") || args.iter().any(|a| a == "--") {
        return None;
    }
    let wrap = 1;
    // The options `wrap` knows take a value; the first other word is where the command starts.
    let mut rest = args[wrap + 1..].iter().peekable();
    let mut options = Vec::new();
    while let Some(arg) = rest.next_if(|a| a.starts_with("--")) {
        options.push(arg.clone());
        // `--monitor` is a switch; every other option of `wrap` takes a value.
        if !arg.contains('=') && arg != "--monitor" {
            options.extend(rest.next().cloned());
        }
    }
    let command: Vec<String> = rest.cloned().collect();
    if command.is_empty() {
        return None;
    }
    let mut fixed = vec!["behavry".to_owned(), "wrap".to_owned()];
    fixed.extend(options);
    fixed.push("--".to_owned());
    fixed.extend(command);
    Some(format!(
        "put `--` before the server command, so its own flags stay its own: {}",
        fixed.join(" ")
    ))
}

/// The client's stdin, noting when it reaches end of file (the client hung up).
struct EofFlag<R> {
    inner: R,
    eof: Arc<AtomicBool>,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for EofFlag<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let had_room = buf.remaining() > 0;
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if had_room && matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() == before {
            self.eof.store(true, Ordering::Relaxed);
        }
        poll
    }
}

/// Resolves at the first SIGINT, SIGTERM or SIGHUP.
fn signals() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
    })
}

/// The client's end of stdin. MCP clients connect through pipes, which tokio can poll directly;
/// `tokio::io::stdin()` (for anything else) hands every read to a blocking thread instead.
fn client_in() -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
    use std::os::fd::AsFd;
    let pipe = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| tokio::net::unix::pipe::Receiver::from_file(std::fs::File::from(fd)));
    match pipe {
        Ok(pipe) => Box::new(pipe),
        Err(_) => Box::new(tokio::io::stdin()),
    }
}

/// The client's end of stdout; see [`client_in`].
fn client_out() -> Box<dyn tokio::io::AsyncWrite + Unpin + Send> {
    use std::os::fd::AsFd;
    let pipe = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| tokio::net::unix::pipe::Sender::from_file(std::fs::File::from(fd)));
    match pipe {
        Ok(pipe) => Box::new(pipe),
        Err(_) => Box::new(tokio::io::stdout()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_at_the_missing_separator() {
        let table: &[(&[&str], Option<&str>)] = &[
            (
                &["behavry", "wrap", "npx", "-y", "pkg"],
                Some("behavry wrap -- npx -y pkg"),
            ),
            (
                &["behavry", "wrap", "--name", "fs", "npx", "pkg"],
                Some("behavry wrap --name fs -- npx pkg"),
            ),
            (
                &["behavry", "wrap", "--name=fs", "srv"],
                Some("behavry wrap --name=fs -- srv"),
            ),
            (&["behavry", "wrap", "--name", "fs", "--", "srv"], None),
            (&["behavry", "wrap"], None),
            (&["behavry", "claude", "wrap", "--scope", "nope"], None),
        ];
        for (args, want) in table {
            let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
            let hint = missing_separator_hint(&args);
            match want {
                Some(want) => assert!(
                    hint.as_deref().is_some_and(|h| h.ends_with(want)),
                    "{hint:?}"
                ),
                None => assert_eq!(hint, None),
            }
        }
    }
}
