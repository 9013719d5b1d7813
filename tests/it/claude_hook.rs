//! `behavry hook` in the real Claude Code (`claude -p`, the pinned package), with the shipped base
//! policy as `behavry init` seeds it. The hooks come from a `--settings` file whose commands run
//! this build's binary, as `behavry claude hook install` writes them; the model is the scripted
//! stand-in in [`crate::messages_api`], and what it received is read back from its request log.
//!
//! Claude Code's own permissions allow both tools (`--allowedTools Bash,Write`), so only behavry's
//! answer stands between the model and the tool. (Not `bypassPermissions`: Claude Code refuses it
//! to root, and tests run as root in containers.) Needs Node.js and npm; fails (never skips)
//! without them.

use std::path::{Path, PathBuf};

use crate::claude_code::{claude_command, report, Finished, Run};
use crate::common::*;
use crate::messages_api::{result_text, MessagesApi, ToolUse};
use serde_json::{json, Value};

/// One Claude Code run's world: its own HOME, BEHAVRY_HOME (seeded by `behavry init`), project
/// directory, a directory outside the project, and model.
struct Setup {
    home: Home,
    user_home: tempfile::TempDir,
    _project_dir: tempfile::TempDir,
    /// The project directory, canonical (the hook canonicalises the paths it decides on).
    project: PathBuf,
    _outside_dir: tempfile::TempDir,
    /// A directory that is not the project's and not inside it.
    outside: PathBuf,
    api: MessagesApi,
}

impl Setup {
    fn new() -> Setup {
        let home = Home::new();
        let init = run(&mut home.command(&["init"]));
        assert!(
            init.status.success(),
            "behavry init failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let project_dir = tempfile::tempdir().expect("tempdir");
        let project = project_dir
            .path()
            .canonicalize()
            .expect("canonical project");
        let outside_dir = tempfile::tempdir().expect("tempdir");
        let outside = outside_dir.path().canonicalize().expect("canonical dir");
        Setup {
            home,
            user_home: tempfile::tempdir().expect("tempdir"),
            _project_dir: project_dir,
            project,
            _outside_dir: outside_dir,
            outside,
            api: MessagesApi::start(),
        }
    }

    /// The `--settings` file: behavry's hook on the three events, as `behavry claude hook
    /// install` writes it (BEHAVRY_HOME in the command, since the hook runs through a shell).
    fn settings(&self) -> PathBuf {
        let command = format!(
            "BEHAVRY_HOME={} USER=tester {} hook",
            quoted(self.home.path()),
            quoted(Path::new(BIN))
        );
        let entry = json!([{"matcher": "*", "hooks": [{"type": "command", "command": command,
            "timeout": 300}]}]);
        let settings = json!({"hooks": {
            "PreToolUse": entry,
            "PostToolUse": entry,
            "PostToolUseFailure": entry,
        }});
        let file = self.home.path().join("claude-settings.json");
        std::fs::write(&file, settings.to_string()).expect("write settings");
        file
    }

    /// Runs `claude -p PROMPT` in the project with only the Bash and Write tools, both allowed
    /// without a prompt, and behavry's hooks.
    fn claude(&self, prompt: &str) -> Finished {
        let mut cmd = claude_command(self.user_home.path(), &self.api, &self.project);
        cmd.args(["-p", prompt, "--settings"])
            .arg(self.settings())
            .args(["--strict-mcp-config", "--tools", "Bash,Write"])
            .args(["--allowedTools", "Bash,Write"]);
        Run::spawn(cmd).finish()
    }

    /// The `tool_result` the model got for the `n`th scripted call; fails with the whole story.
    fn tool_result(&self, n: usize, run: &Finished) -> Value {
        self.api.tool_result(n).unwrap_or_else(|| {
            panic!(
                "the model never got a result for call {n}\n{}",
                report(run, &self.api)
            )
        })
    }
}

/// `path` in single quotes for the shell the hook command runs in.
fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn rm_rf_outside_the_project_is_denied_and_the_model_reads_why() {
    let setup = Setup::new();
    let victim = setup.outside.join("victim");
    std::fs::create_dir_all(&victim).expect("mkdir");
    std::fs::write(victim.join("keep.txt"), "precious\n").expect("write");
    let command = format!("rm -rf {}", victim.display());
    setup.api.script(vec![ToolUse::new(
        "Bash",
        json!({"command": command, "description": "Remove the directory"}),
    )]);

    let run = setup.claude("Remove that directory");
    let result = setup.tool_result(0, &run);
    let report = report(&run, &setup.api);
    assert!(
        victim.join("keep.txt").exists(),
        "the command ran\n{report}"
    );
    assert_eq!(result["is_error"], true, "{report}");
    let text = result_text(&result);
    assert!(
        text.contains("behavry: ") && text.contains("rm -r outside the project"),
        "the model did not get behavry's reason: {text}\n{report}"
    );

    let rows = setup.home.log(&["--server", "claude-code"]);
    assert_eq!(rows.len(), 1, "{rows:?}\n{report}");
    let row = &rows[0];
    assert_eq!(
        (&row["server"], &row["tool"], &row["decision"]),
        (&json!("claude-code"), &json!("Bash"), &json!("deny")),
        "{row}"
    );
    assert!(
        row.to_string().contains("rm -r outside the project"),
        "the log lacks the reason: {row}"
    );
    assert_eq!(row["request_id"], ToolUse::id(0), "{row}");
}

#[test]
fn write_inside_the_project_runs_and_its_outcome_is_logged() {
    let setup = Setup::new();
    let file = setup.project.join("notes.txt");
    setup.api.script(vec![ToolUse::new(
        "Write",
        json!({"file_path": file.display().to_string(), "content": "written by the model\n"}),
    )]);

    let run = setup.claude("Write notes.txt");
    let result = setup.tool_result(0, &run);
    let report = report(&run, &setup.api);
    assert_ne!(result["is_error"], true, "{report}");
    assert_eq!(
        std::fs::read_to_string(&file).ok().as_deref(),
        Some("written by the model\n"),
        "{report}"
    );
    assert_eq!(run.code, Some(0), "{report}");

    let rows = setup.home.log(&["--server", "claude-code"]);
    assert_eq!(rows.len(), 1, "{rows:?}\n{report}");
    let row = &rows[0];
    assert_eq!(
        (
            &row["server"],
            &row["tool"],
            &row["decision"],
            &row["outcome"]
        ),
        (
            &json!("claude-code"),
            &json!("Write"),
            &json!("allow"),
            &json!("ok")
        ),
        "{row}\n{report}"
    );
    assert_eq!(row["resource_path"], file.display().to_string(), "{row}");
    assert_eq!(row["request_id"], ToolUse::id(0), "{row}");
}
