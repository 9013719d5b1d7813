//! `behavry demo`: the real wrapper in front of the built-in server (`behavry mock-server`), driven
//! by a scripted client, with the seed policy, in a throw-away `BEHAVRY_HOME`. Needs nothing
//! installed but behavry. Prints each call and what behavry decided; its stdout is for people.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

/// The policy the demo runs: the seed page's example, verbatim.
const SEED: &str = include_str!("../../policies/examples/seed.rego");

/// How long any reply may take beyond an approval wait (the server answers at once).
const SLACK: Duration = Duration::from_secs(30);

/// See allow, deny and escalate on a built-in server, with nothing else installed
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The demo runs `behavry wrap` in front of a built-in MCP server with the \
    seed policy (read → allow, write under /prod → deny, delete → escalate) in a temporary \
    directory, and removes it afterwards. Your own config, policies and audit log are not used."
)]
pub struct DemoArgs {
    /// How long the escalated call waits for `behavry approve` before it is denied
    #[arg(long, value_name = "SECS", default_value_t = 20)]
    wait: u64,
}

/// One scripted call and what the seed policy does with it.
struct Step {
    tool: &'static str,
    arguments: Value,
    expect: &'static str,
}

pub fn run(args: DemoArgs) -> anyhow::Result<i32> {
    let home = TempHome::create()?;
    let exe = std::env::current_exe().context("cannot find behavry's own path")?;
    let wait = args.wait.to_string();
    let mut wrapper = Wrapper::spawn(
        Command::new(&exe)
            .args(["wrap", "--name", "demo", "--approval-timeout", &wait, "--"])
            .arg(&exe)
            .arg("mock-server")
            .env("BEHAVRY_HOME", &home.0),
    )?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "behavry demo: a built-in MCP server \"demo\" behind `behavry wrap`, with this policy:\n"
    )?;
    for line in SEED.lines() {
        writeln!(out, "    {line}")?;
    }
    writeln!(out)?;

    wrapper.request(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "behavry-demo", "version": env!("CARGO_PKG_VERSION")}}),
        SLACK,
        || {},
    )?;
    wrapper.notify("notifications/initialized")?;

    let steps = [
        Step {
            tool: "read_file",
            arguments: json!({"path": "/home/me/notes.txt"}),
            expect: "a read: allowed",
        },
        Step {
            tool: "write_file",
            arguments: json!({"path": "/prod/config.yaml", "content": "debug: true"}),
            expect: "a write under /prod: denied",
        },
        Step {
            tool: "write_file",
            arguments: json!({"path": "/tmp/scratch.txt", "content": "hello"}),
            expect: "a write no rule allows: denied by default",
        },
        Step {
            tool: "delete_file",
            arguments: json!({"path": "/home/me/old.log"}),
            expect: "a delete: escalated to a person",
        },
    ];
    let db = home.0.join("behavry.db");
    let approve = format!("BEHAVRY_HOME={} behavry approve", shell_word(&home.0));
    for step in &steps {
        writeln!(
            out,
            "→ demo/{} {}   ({})",
            step.tool, step.arguments, step.expect
        )?;
        out.flush()?;
        let mut announced = false;
        let reply = wrapper.request(
            "tools/call",
            json!({"name": step.tool, "arguments": step.arguments}),
            Duration::from_secs(args.wait) + SLACK,
            || {
                if !announced && is_held(&db) {
                    announced = true;
                    let _ = writeln!(
                        out,
                        "  escalate: held until a person decides. Approve or deny it in another \
                         terminal with\n      {approve}\n    (denied automatically after {} s)",
                        args.wait
                    );
                    let _ = out.flush();
                }
            },
        )?;
        let text = reply
            .pointer("/result/content/0/text")
            .and_then(Value::as_str)
            .unwrap_or("");
        let verdict = if reply.pointer("/result/isError") == Some(&Value::Bool(true)) {
            "deny"
        } else if reply.get("error").is_some() {
            "error"
        } else {
            "allow"
        };
        let text = if text.is_empty() {
            reply.to_string()
        } else {
            text.to_owned()
        };
        writeln!(out, "  {verdict}: {text}\n")?;
    }
    drop(out);
    let code = wrapper.finish();
    if code != Some(0) {
        bail!(
            "the wrapper exited with {code:?}:\n{}",
            wrapper.stderr.try_iter().collect::<Vec<_>>().join("\n")
        );
    }
    writeln!(
        std::io::stdout().lock(),
        "The audit log of this run (`behavry log`):\n"
    )?;
    let _ = Command::new(&exe)
        .arg("log")
        .env("BEHAVRY_HOME", &home.0)
        .status();
    writeln!(
        std::io::stdout().lock(),
        "\nNext: `behavry init` to set up your own policies, then `behavry claude wrap` to put \
         behavry in front of your Claude Code servers."
    )?;
    Ok(0)
}

/// Whether a call is waiting for approval in the demo's store.
fn is_held(db: &Path) -> bool {
    db.exists()
        && crate::audit::Store::open(db)
            .and_then(|mut s| s.pending())
            .is_ok_and(|p| !p.is_empty())
}

/// A path as one shell word.
fn shell_word(path: &Path) -> String {
    let s = path.display().to_string();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A private temporary `BEHAVRY_HOME` with the seed policy, removed on drop.
struct TempHome(PathBuf);

impl TempHome {
    fn create() -> anyhow::Result<TempHome> {
        let dir = std::env::temp_dir().join(format!("behavry-demo-{}", uuid::Uuid::new_v4()));
        let policies = dir.join("policies");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&policies)
            .with_context(|| format!("cannot create {}", policies.display()))?;
        let home = TempHome(dir);
        let seed = policies.join("seed.rego");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&seed)
            .and_then(|mut f| f.write_all(SEED.as_bytes()))
            .with_context(|| format!("cannot write {}", seed.display()))?;
        Ok(home)
    }
}

impl Drop for TempHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The running `behavry wrap`, spoken to as an MCP client.
struct Wrapper {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    next_id: i64,
}

impl Wrapper {
    fn spawn(command: &mut Command) -> anyhow::Result<Wrapper> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start `behavry wrap`")?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            bail!("the wrapper's pipes were not created");
        };
        Ok(Wrapper {
            child,
            stdin: Some(stdin),
            lines: lines_of(stdout),
            stderr: lines_of(stderr),
            next_id: 1,
        })
    }

    fn send(&mut self, message: Value) -> anyhow::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .context("the wrapper's stdin is closed")?;
        writeln!(stdin, "{message}")
            .and_then(|()| stdin.flush())
            .context("the wrapper stopped reading")
    }

    fn notify(&mut self, method: &str) -> anyhow::Result<()> {
        self.send(json!({"jsonrpc": "2.0", "method": method}))
    }

    /// Sends a request and waits up to `limit` for its reply, calling `waiting` about five
    /// times a second meanwhile.
    fn request(
        &mut self,
        method: &str,
        params: Value,
        limit: Duration,
        mut waiting: impl FnMut(),
    ) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        let start = Instant::now();
        while start.elapsed() < limit {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let Ok(message) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    if message.get("id") == Some(&json!(id)) {
                        return Ok(message);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => waiting(),
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!(
                    "the wrapper exited before answering {method}:\n{}",
                    self.stderr.try_iter().collect::<Vec<_>>().join("\n")
                ),
            }
        }
        bail!("no answer to {method} within {} s", limit.as_secs())
    }

    /// Closes the wrapper's stdin (the client hangs up) and waits for it to exit.
    fn finish(&mut self) -> Option<i32> {
        self.stdin = None;
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Wrapper {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}
