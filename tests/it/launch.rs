//! Starting up beside other wrappers: a client launches every configured server at once, and on a
//! new `BEHAVRY_HOME` they all create, switch to WAL and migrate the same database file.

use crate::common::*;
use serde_json::json;

const ALLOW_ECHO: &str =
    "package behavry.authz\nimport rego.v1\nallow if input.action.name == \"echo\"\n";

/// Wrappers started together on a new home.
const WRAPPERS: usize = 8;
const ROUNDS: usize = 50;

#[test]
fn wrappers_launched_together_on_a_new_home_all_record() {
    let mut refusals = Vec::new();
    for round in 0..ROUNDS {
        let home = Home::with_policy("p.rego", ALLOW_ECHO);
        // Spawned back to back, before any is waited on: they open the store in the same instant.
        let mut wrappers: Vec<Wrapper> = (0..WRAPPERS)
            .map(|i| {
                let name = format!("s{i}");
                home.wrap(&["--name", &name, "--", BIN, "mock-server"], &[])
            })
            .collect();
        for (i, w) in wrappers.iter_mut().enumerate() {
            w.initialize();
            let reply = w.call(1, "echo", json!({"text": "hi"}));
            if is_error(&reply) {
                refusals.push(format!("round {round}, wrapper {i}: {}", text(&reply)));
            }
        }
        for (i, w) in wrappers.into_iter().enumerate() {
            let (code, stderr) = w.finish();
            assert_eq!(code, Some(0), "round {round}, wrapper {i}: {stderr}");
            if stderr.contains("audit store unavailable") {
                refusals.push(format!("round {round}, wrapper {i}: {stderr}"));
            }
        }
        assert_eq!(home.log(&[]).len(), WRAPPERS, "round {round}");
    }
    assert!(refusals.is_empty(), "{}", refusals.join("\n"));
}

#[test]
fn a_store_that_comes_back_heals_without_a_restart() {
    let home = Home::with_policy("p.rego", ALLOW_ECHO);
    // A directory where the database file should be: SQLite cannot open it.
    let db = home.path().join("behavry.db");
    std::fs::create_dir_all(&db).expect("mkdir");
    let mut w = home.wrap_mock();
    w.initialize();
    let reply = w.call(1, "echo", json!({"text": "x"}));
    assert!(is_error(&reply), "{reply}");
    assert!(text(&reply).contains("audit store"), "{reply}");

    std::fs::remove_dir(&db).expect("rmdir");
    let reply = w.call(2, "echo", json!({"text": "y"}));
    assert!(!is_error(&reply), "{reply}");
    let (_, stderr) = w.finish();
    assert!(stderr.contains("available again"), "{stderr}");
    let log = home.log(&[]);
    assert_eq!(log.len(), 1, "only the call made once the store opened");
    assert_eq!(log[0]["decision"], "allow");
}
