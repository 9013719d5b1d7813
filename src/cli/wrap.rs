//! `behavry wrap`: builds the proxy's options and runs it with signals as the shutdown trigger.

use std::time::Duration;

use anyhow::Context as _;

use super::WrapArgs;
use crate::config::{Config, Paths};
use crate::proxy::{self, child, WrapOptions};

pub fn run(args: WrapArgs) -> anyhow::Result<i32> {
    let paths = Paths::resolve()?;
    let config = Config::load(&paths.config_file())?;
    let Some((program, rest)) = args.command.split_first() else {
        anyhow::bail!("no server command given; usage: behavry wrap -- <command> [args...]");
    };
    let server = match args.name {
        Some(name) if !name.is_empty() && !name.contains('/') => name,
        Some(name) => anyhow::bail!("--name {name:?} must be non-empty and contain no '/'"),
        None => child::default_server_name(program, rest),
    };
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
    let code = runtime.block_on(async {
        let shutdown = signals()?;
        proxy::run(opts, client_in(), client_out(), shutdown).await
    });
    // Reading stdin occupies a blocking thread that only returns when the client writes or hangs
    // up; don't wait for it.
    runtime.shutdown_background();
    Ok(code?)
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
