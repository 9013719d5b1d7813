//! `behavry approve` in a real terminal (tmux), resolving calls that a real MCP client (the
//! TypeScript SDK) makes through `behavry wrap` to the real filesystem server.
//!
//! Needs tmux, Node.js and npm; fails (never skips) without them.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// Tests run in parallel threads of one process: each tmux server gets its own socket.
static SERVERS: AtomicUsize = AtomicUsize::new(0);

impl Tmux {
    fn start(home: &Home) -> Tmux {
        Tmux::sized(home, 140, 40)
    }

    fn sized(home: &Home, width: u16, height: u16) -> Tmux {
        let n = SERVERS.fetch_add(1, Ordering::Relaxed);
        let socket = format!("behavry-test-{}-{n}", std::process::id());
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
                &width.to_string(),
                "-y",
                &height.to_string(),
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

    /// The window title the approver set (OSC 0/2), as tmux records it.
    fn title(&self) -> String {
        let out = self
            .cmd(&["display-message", "-p", "-t", "approve", "#{pane_title}"])
            .output()
            .expect("display-message");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
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
    tmux.wait_for(&["approved call", "escalate  approved"]);

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

/// Escalates every governed call, with a reason built from the client's tool name.
const ESCALATE_ALL: &str = r#"package behavry.authz
import rego.v1
escalate if true
reasons contains sprintf("%s needs a person", [input.action.name])
"#;

fn initialize_as(w: &mut Wrapper, client: &str) {
    w.send(
        json!({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": client, "version": "1"}}}),
    );
    w.recv_id(&json!("init"));
    w.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
}

#[test]
fn what_a_person_judges_is_on_screen_at_80x24_and_200x50() {
    let path = "/tmp/behavry-approver/payments/config/production/database.toml";
    for (width, height) in [(80, 24), (200, 50)] {
        let home = Home::with_policy("p.rego", ESCALATE_WRITES);
        let tmux = Tmux::sized(&home, width, height);
        tmux.wait_for(&["nothing is waiting for approval"]);
        let mut w = home.wrap_mock();
        w.initialize();
        w.send(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "write_file",
            "arguments": {"path": path, "content": "url = postgres://prod"}}}),
        );
        let screen = tmux.wait_for(&["1 call is waiting for approval"]);
        for needle in [
            "mock/write_file",
            path,
            "writes need a person",
            "\"content\": \"url = postgres://prod\"",
        ] {
            assert!(
                screen.contains(needle),
                "{width}x{height}: {needle:?} is not on screen:\n{screen}"
            );
        }
        assert!(
            screen.lines().count() <= usize::from(height),
            "{width}x{height}:\n{screen}"
        );
        assert_eq!(tmux.title(), "behavry: 1 waiting", "{width}x{height}");
        // The full view shows the same call; Esc returns; a approves it.
        tmux.keys(&["Enter"]);
        tmux.wait_for(&["Esc back", path]);
        tmux.keys(&["Escape"]);
        tmux.wait_for(&["Enter"]);
        tmux.keys(&["a"]);
        assert!(!is_error(&w.recv_id(&json!(1))), "approved, forwarded");
        tmux.wait_for(&["nothing is waiting for approval", "approved call"]);
        assert_eq!(tmux.title(), "behavry: 0 waiting", "{width}x{height}");
    }
}

/// Client-controlled text that would drive a terminal if written raw, and what the person sees.
const CORPUS: &[(&str, &str)] = &[
    ("csi\u{1b}[2J\u{1b}[H", "csi\\u{1b}[2J\\u{1b}[H"),
    ("osc\u{1b}]0;pwn\u{7}", "osc\\u{1b}]0;pwn\\u{7}"),
    ("cr\r/tmp/old.log", "cr\\u{d}/tmp/old.log"),
    ("bs\u{8}\u{8}xx", "bs\\u{8}\\u{8}xx"),
    ("bidi\u{202e}gol.txt", "bidi\\u{202e}gol.txt"),
    ("zw\u{200d}j", "zw\\u{200d}j"),
];

/// Presses Down until the screen shows `needle` (held calls are listed in the order they were
/// decided, which concurrent calls do not fix); past the last call, `g` goes back to the first.
fn select_until(tmux: &Tmux, needle: &str) {
    // The selected call, as the detail panel names it: the age columns tick every second, so
    // the screen as a whole changes even when the selection does not.
    let selected = |screen: &str| {
        screen
            .lines()
            .find(|l| l.contains("│call   "))
            .map(str::to_owned)
    };
    let start = Instant::now();
    let mut screen = tmux.screen();
    while !screen.contains(needle) {
        assert!(start.elapsed() < WAIT, "never showed {needle:?}:\n{screen}");
        let before = selected(&screen);
        tmux.keys(&["Down"]);
        // Wait for the redraw before looking again (a loaded machine redraws late, and pressing
        // on would run past the call); a selection that does not move is the end of the list.
        let moved = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            screen = tmux.screen();
            if selected(&screen) != before || moved.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        if selected(&screen) == before {
            tmux.keys(&["g"]);
            std::thread::sleep(Duration::from_millis(200));
            screen = tmux.screen();
        }
    }
}

#[test]
fn client_text_cannot_drive_the_approvers_terminal_or_the_log() {
    let home = Home::with_policy("p.rego", ESCALATE_ALL);
    let tmux = Tmux::sized(&home, 120, 40);
    tmux.wait_for(&["nothing is waiting for approval"]);
    let mut w = home.wrap_mock();
    initialize_as(&mut w, "agent\u{1b}]0;pwned\u{7}");
    let long = format!("long{}", "x".repeat(3000));
    let mut names: Vec<&str> = CORPUS.iter().map(|(raw, _)| *raw).collect();
    names.push(&long);
    for (id, name) in names.iter().enumerate() {
        w.send(
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": name, "arguments": {"path": "/prod/db", "note": name}}}),
        );
    }
    let waiting = format!("{} calls are waiting for approval", names.len());
    let screen = tmux.wait_for(&[&waiting]);
    // Every name is on screen as visible escapes: in the queue's reasons column, which starts
    // with the name, and for the selected (first) call in full in the details.
    for (_, shown) in CORPUS {
        assert!(
            screen.contains(shown),
            "{shown} is not on screen:\n{screen}"
        );
    }
    // clientInfo.name, in full in the details of any call but the long one (which fills them).
    select_until(&tmux, "from   agent\\u{1b}]0;pwned\\u{7} for tester");
    // The title is ours, the screen was not cleared or overwritten, the long line is cut.
    assert_eq!(tmux.title(), format!("behavry: {} waiting", names.len()));
    assert!(screen.starts_with("behavry approve:"), "{screen}");
    assert!(screen.lines().all(|l| l.chars().count() <= 120), "{screen}");
    // The overlong call, viewed in full, scrolls rather than breaks the screen.
    tmux.keys(&["Home"]);
    select_until(&tmux, "call   mock/longxxxx");
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["Esc back", "longxxxx", "PgUp/PgDn"]);
    tmux.keys(&["PageDown"]);
    tmux.keys(&["Escape", "q"]);

    // The log's table and `approve --list` show the same escapes, and no raw control byte.
    let forbidden = |c: char| behavry::display::is_unsafe(c) && c != '\n';
    for args in [&["log"][..], &["approve", "--list"][..]] {
        let out = run(&mut home.command(args));
        let text = String::from_utf8(out.stdout).expect("utf-8");
        assert!(!text.chars().any(forbidden), "{args:?}: {text:?}");
        for (_, shown) in CORPUS {
            assert!(text.contains(shown), "{args:?}: {shown} missing:\n{text}");
        }
    }
    // Machine output keeps the exact text.
    let rows = home.log(&[]);
    let tools: Vec<&str> = rows.iter().filter_map(|r| r["tool"].as_str()).collect();
    for name in &names {
        assert!(tools.contains(name), "{name:?} not kept exactly in --json");
    }
}
