//! The wrapped MCP server process: spawning it so it cannot outlive behavry, stopping it politely
//! then firmly, and naming it.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

/// Spawns `program args` with piped stdin/stdout; its stderr is behavry's stderr, untouched.
///
/// On Linux the child gets `PR_SET_PDEATHSIG = SIGKILL`, so it dies with behavry even if behavry is
/// SIGKILLed. The kernel ties that signal to the *thread* that forked, so this must be called from
/// a thread that lives as long as the process (the main thread).
pub fn spawn(program: &str, args: &[String]) -> io::Result<Child> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls.
        unsafe {
            command.pre_exec(move || {
                // Ignored signals stay ignored across exec; give the server the default.
                libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // behavry may have died between fork and prctl; then nobody will ever signal us.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    command.spawn().map_err(|e| explain_spawn_error(program, e))
}

/// A missing program is the most common set-up mistake, and MCP clients often start servers with
/// a minimal PATH: say which PATH was searched.
fn explain_spawn_error(program: &str, e: io::Error) -> io::Error {
    if e.kind() != io::ErrorKind::NotFound {
        return e;
    }
    if program.contains('/') {
        return io::Error::new(e.kind(), format!("{program} does not exist"));
    }
    let path = std::env::var("PATH").unwrap_or_default();
    io::Error::new(
        e.kind(),
        format!(
            "not found on PATH (behavry's PATH is {path:?}); MCP clients often start servers with a \
             minimal PATH: give the command's absolute path (see `command -v {program}`) or set PATH \
             in the server's env"
        ),
    )
}

/// Stops the child the way a well-behaved supervisor does: its stdin is already closed by the
/// caller; wait `grace`, then SIGTERM, wait `grace`, then SIGKILL. Always reaps it.
pub async fn stop(child: &mut Child, grace: Duration) -> io::Result<ExitStatus> {
    if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
        return status;
    }
    if let Some(pid) = child.id() {
        // SAFETY: kill has no memory-safety preconditions; the pid is our own unreaped child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
        return status;
    }
    child.kill().await?;
    child.wait().await
}

/// behavry's exit code for a child's exit status: its code, or 128 + the signal that killed it.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// Launchers whose first plain argument names the real server.
const LAUNCHERS: &[&str] = &[
    "npx", "npm", "pnpm", "pnpx", "yarn", "bunx", "bun", "node", "deno", "uvx", "uv", "pipx",
    "python", "python3", "docker", "podman", "env", "sh", "bash", "cargo", "go", "java", "run",
    "exec", "dlx", "tool",
];

/// The server name used when `--name` is not given, derived from the command:
/// skip launchers (`npx`, `uvx`, `node`, `python -m`, `docker run`, …) and flags, take the first
/// remaining word, drop its directory, npm scope, version and extension, then the `mcp-server-`,
/// `server-`, `mcp-` prefixes and `-mcp-server`, `-server`, `-mcp` suffixes.
/// `npx -y @modelcontextprotocol/server-filesystem ~/code` → `filesystem`.
pub fn default_server_name(program: &str, args: &[String]) -> String {
    // `sh -c 'exec my-server --flag'`: the script's own words name the server.
    let words = std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .flat_map(str::split_whitespace);
    let word = words
        .filter(|w| !w.starts_with('-'))
        .find(|w| {
            let base = w.rsplit('/').next().unwrap_or(w);
            !LAUNCHERS.contains(&base) && !base.starts_with("python")
        })
        .unwrap_or(program);
    let mut name = word.trim_end_matches('/');
    // `@scope/pkg@1.2` → `pkg@1.2` → `pkg`; `/usr/bin/srv.py` → `srv.py` → `srv`.
    name = name.rsplit('/').next().unwrap_or(name);
    if let Some((base, _version)) = name.split_once('@').filter(|(b, _)| !b.is_empty()) {
        name = base;
    }
    for ext in [".js", ".mjs", ".cjs", ".ts", ".py", ".exe", ".jar"] {
        name = name.strip_suffix(ext).unwrap_or(name);
    }
    for prefix in ["mcp-server-", "server-", "mcp-"] {
        if let Some(rest) = name.strip_prefix(prefix).filter(|r| !r.is_empty()) {
            name = rest;
            break;
        }
    }
    for suffix in ["-mcp-server", "-server", "-mcp"] {
        if let Some(rest) = name.strip_suffix(suffix).filter(|r| !r.is_empty()) {
            name = rest;
            break;
        }
    }
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.is_empty() {
        "server".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_server_names() {
        let table: &[(&str, &[&str], &str)] = &[
            (
                "npx",
                &[
                    "-y",
                    "@modelcontextprotocol/server-filesystem",
                    "/home/a/code",
                ],
                "filesystem",
            ),
            (
                "npx",
                &["@modelcontextprotocol/server-everything@2025.1.1"],
                "everything",
            ),
            ("uvx", &["mcp-server-git", "--repository", "."], "git"),
            ("python", &["-m", "mcp_server_time"], "mcp_server_time"),
            ("/usr/local/bin/github-mcp-server", &["stdio"], "github"),
            ("node", &["/opt/x/dist/index.js"], "index"),
            ("docker", &["run", "-i", "--rm", "mcp/fetch"], "fetch"),
            ("my-tool", &[], "my-tool"),
            ("npx", &[], "npx"),
            (
                "sh",
                &["-c", "exec node /srv/weather-mcp.js --port 1"],
                "weather",
            ),
        ];
        for (program, args, want) in table {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            assert_eq!(
                default_server_name(program, &args),
                *want,
                "{program} {args:?}"
            );
        }
    }
}
