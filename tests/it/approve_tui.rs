//! `behavry approve` in a real terminal (tmux), resolving calls that a real MCP client (the
//! TypeScript SDK) makes through `behavry wrap` to the real filesystem server.
//!
//! Needs tmux, Node.js and npm; fails (never skips) without them.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};

const ESCALATE_WRITES: &str = r#"package behavry.authz
import rego.v1
allow if input.action.type in {"read", "list", "search"}
escalate if input.action.type == "write"
reasons contains "writes need a person" if input.action.type == "write"
"#;

/// A tmux server of our own, so tests never touch the user's sessions.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(home: &Home) -> Tmux {
        let socket = format!("behavry-test-{}", std::process::id());
        let tmux = Tmux { socket };
        let command = format!(
            "env BEHAVRY_HOME='{}' USER=tester '{BIN}' approve",
            home.path().display()
        );
        let status = tmux
            .cmd(&[
                "new-session",
                "-d",
                "-s",
                "approve",
                "-x",
                "140",
                "-y",
                "40",
                &command,
            ])
            .status()
            .unwrap_or_else(|e| panic!("these tests need tmux on PATH: {e}"));
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket]).args(args);
        cmd
    }

    fn screen(&self) -> String {
        let out = self
            .cmd(&["capture-pane", "-p", "-t", "approve"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "approve"];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status().expect("send-keys").success());
    }

    /// Waits until the screen shows every one of `needles`; returns the screen.
    fn wait_for(&self, needles: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if needles.iter().all(|n| screen.contains(n)) {
                return screen;
            }
            assert!(
                start.elapsed() < WAIT,
                "the approver never showed {needles:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn running(&self) -> bool {
        self.cmd(&["has-session", "-t", "approve"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]).output();
    }
}

fn write_call(root: &Path, name: &str) -> Value {
    json!([{"name": "write_file", "arguments": {"path": root.join(name), "content": "approved content"}}])
}

#[test]
fn approve_and_deny_from_the_terminal_app() {
    let home = Home::with_policy("p.rego", ESCALATE_WRITES);
    let root_dir = tempfile::tempdir().expect("tempdir");
    let root = root_dir.path().canonicalize().expect("root");
    node_modules();
    let tmux = Tmux::start(&home);
    tmux.wait_for(&["nothing is waiting for approval", "a approve once"]);

    // Approve: the client's call completes and the file is written.
    let out = std::thread::scope(|scope| {
        let client = scope.spawn(|| run_client(&home, &root, write_call(&root, "yes.txt")));
        let screen = tmux.wait_for(&[
            "1 call is waiting for approval",
            "write_file",
            "writes need a person",
        ]);
        assert!(screen.contains("yes.txt"), "{screen}");
        tmux.keys(&["a"]);
        client.join().expect("client thread")
    });
    let result = &out["results"][0];
    assert_eq!(result["ok"], true, "{out}");
    assert_ne!(result["result"]["isError"], true, "{out}");
    assert_eq!(
        std::fs::read_to_string(root.join("yes.txt")).expect("written"),
        "approved content"
    );
    tmux.wait_for(&["approved call", "escalate:approved"]);

    // Deny with a typed reason: the agent reads it, nothing is written.
    let out = std::thread::scope(|scope| {
        let client = scope.spawn(|| run_client(&home, &root, write_call(&root, "no.txt")));
        tmux.wait_for(&["1 call is waiting for approval", "no.txt"]);
        tmux.keys(&["d"]);
        tmux.wait_for(&["Reason shown to the agent"]);
        tmux.keys(&["-l", "not in the demo"]);
        tmux.keys(&["Enter"]);
        client.join().expect("client thread")
    });
    let result = &out["results"][0];
    assert_eq!(result["result"]["isError"], true, "{out}");
    let text = result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("");
    assert!(
        text.starts_with(
            "behavry denied fs/write_file: a person denied this call (tester via behavry approve"
        ),
        "{text}"
    );
    assert!(text.ends_with(": not in the demo"), "{text}");
    assert!(!root.join("no.txt").exists());

    let rows = home.log(&["--tool", "write_file"]);
    assert_eq!(rows[0]["resolution"], "approved");
    assert_eq!(rows[0]["outcome"], "ok");
    assert!(
        rows[0]["resolved_by"]
            .as_str()
            .is_some_and(|b| b.contains("behavry approve")),
        "{}",
        rows[0]
    );
    assert_eq!(rows[1]["resolution"], "denied");

    tmux.keys(&["q"]);
    let start = Instant::now();
    while tmux.running() {
        assert!(start.elapsed() < WAIT, "q did not quit the approver");
        std::thread::sleep(Duration::from_millis(50));
    }
}
