//! One journal record as it leaves the machine, before any sink's format: pure functions from a
//! [`JournalRecord`] to an [`Event`], with the arguments handled as `[decision_log] arguments`
//! says and the policy's `package behavry.log` `mask` applied.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::audit::export::JournalRecord;
use crate::policy::PolicySet;
use crate::team::ExportArguments;

/// The rule a team's policy may define to erase fields before export: a set of JSON pointers
/// under `/input` or `/result` (as OPA's `data.system.log.mask`).
pub const MASK_RULE: &str = "data.behavry.log.mask";
const MASK_PACKAGE: &str = "data.behavry.log";

/// A journal record, mapped.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: i64,
    /// The chain hash: with `instance_id` and `seq`, the key a collector deduplicates on.
    pub hash: String,
    /// The journal kind: `decision`, `outcome`, `resolution`, `policy_reload`, `export_gap`, …
    pub kind: String,
    pub ts: String,
    /// The decision's UUID, for decisions and their outcomes and resolutions.
    pub decision_id: Option<String>,
    /// `{"NAME": {"revision": …}}` (empty without bundles).
    pub bundles: Value,
    /// For a decision: the policy input it was decided on (after masking); else null.
    pub input: Value,
    /// For a decision: `{decision, reasons, resolution, outcome, enforced}`; for any other
    /// record: its body.
    pub result: Value,
    pub requested_by: String,
    /// Pointers removed before export.
    pub erased: Vec<String>,
    /// Scalar facts worth indexing on: server, tool, session_id, decision, action_type, …
    pub facts: Map<String, Value>,
}

impl Event {
    /// `behavry.<kind>`: the OTLP event name.
    pub fn name(&self) -> String {
        format!("behavry.{}", self.kind)
    }
}

/// Maps one record. `policy` is the set in force, for its `mask` rule.
pub fn map(
    record: &JournalRecord,
    arguments: ExportArguments,
    policy: Option<&PolicySet>,
) -> Event {
    let body = &record.body;
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
    let mut facts = Map::new();
    for key in [
        "session_id",
        "server",
        "tool",
        "method",
        "action_type",
        "resource_path",
        "decision",
        "agent",
        "requester",
        "channel",
        "policy_hash",
        "request_id",
    ] {
        if let Some(v) = body
            .get(key)
            .filter(|v| !v.is_null() && v.as_str() != Some(""))
        {
            facts.insert(key.to_owned(), v.clone());
        }
    }
    let mut event = Event {
        seq: record.seq,
        hash: record.hash.clone(),
        kind: record.kind.clone(),
        ts: record.ts.clone(),
        decision_id: record.decision_id.clone(),
        bundles: Value::Object(Map::new()),
        input: Value::Null,
        result: body.clone(),
        requested_by: text("requester").unwrap_or_default(),
        erased: Vec::new(),
        facts,
    };
    if record.kind != "decision" {
        // Other records that carry what a client or server sent: the same rule as arguments.
        match record.kind.as_str() {
            "server_request" => content(&mut event, "/result/params", arguments),
            "refused_frame" => content(&mut event, "/result/head", arguments),
            _ => {}
        }
        apply_mask(&mut event, policy);
        return event;
    }
    event.bundles = revisions(text("bundles").as_deref());
    // The body holds reasons and arguments as the JSON text the decisions table stores.
    let parsed = |key: &str| {
        text(key)
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .unwrap_or(Value::Null)
    };
    event.result = json!({
        "decision": body.get("decision"),
        "reasons": parsed("reasons"),
        "resolution": record.resolution,
        "outcome": record.outcome,
        "enforced": body.get("enforced").cloned().unwrap_or(Value::Bool(true)),
    });
    event.input = record.input.clone().unwrap_or_else(|| {
        // Rows recorded before inputs were stored: the facts the row has, in the input's shape.
        json!({
            "action": {"tool": format!("{}/{}", text("server").unwrap_or_default(),
                text("tool").unwrap_or_default()), "type": body.get("action_type"),
                "arguments": parsed("arguments")},
            "resource": {"path": body.get("resource_path"), "server": body.get("server")},
            "session": {"id": body.get("session_id")},
            "requester": {"id": body.get("requester"), "channel": body.get("channel")},
        })
    });
    content(&mut event, "/input/action/arguments", arguments);
    apply_mask(&mut event, policy);
    event
}

/// Applies `[decision_log] arguments` to the content at `pointer` (under `/input` or `/result`):
/// kept as stored (redacted), erased, or replaced by the SHA-256 of its canonical JSON.
fn content(event: &mut Event, pointer: &str, arguments: ExportArguments) {
    match arguments {
        ExportArguments::Redacted => {}
        ExportArguments::Omit => {
            if erase(event, pointer) {
                event.erased.push(pointer.to_owned());
            }
        }
        ExportArguments::Sha256 => {
            let target = if let Some(rest) = pointer.strip_prefix("/input") {
                event.input.pointer_mut(rest)
            } else if let Some(rest) = pointer.strip_prefix("/result") {
                event.result.pointer_mut(rest)
            } else {
                None
            };
            if let Some(value) = target {
                let digest = Sha256::digest(crate::audit::chain::canonical(value).as_bytes());
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                *value = Value::String(format!("sha256:{hex}"));
            }
        }
    }
}

/// `{"NAME": {"revision": …}}` from the stored `{"NAME": {"revision", "sha256"}}` text.
fn revisions(bundles: Option<&str>) -> Value {
    let stored: Map<String, Value> = bundles
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or_default();
    let mapped = stored
        .into_iter()
        .map(|(name, b)| {
            let revision = b.get("revision").cloned().unwrap_or(Value::Null);
            (name, json!({"revision": revision}))
        })
        .collect();
    Value::Object(mapped)
}

/// Runs the policy's `mask` rule on the event (`input` = `{input, result, kind, decision_id}`)
/// and removes the pointers it names. When the rule exists but cannot be evaluated, nothing of
/// the input or result leaves: a broken mask must not leak what it was written to hide.
fn apply_mask(event: &mut Event, policy: Option<&PolicySet>) {
    let pointers = match mask_pointers(event, policy) {
        Ok(pointers) => pointers,
        Err(_) => vec!["/input".to_owned(), "/result".to_owned()],
    };
    for pointer in pointers {
        if erase(event, &pointer) && !event.erased.contains(&pointer) {
            event.erased.push(pointer);
        }
    }
    event.erased.sort();
    // The facts repeat fields of the input or result (OTLP attributes): what was erased there
    // must not leave through them.
    let kind = event.kind.clone();
    let erased = &event.erased;
    event.facts.retain(|key, _| {
        let Some(at) = fact_pointer(&kind, key) else {
            return true;
        };
        !erased.iter().any(|p| {
            at == *p
                || at
                    .strip_prefix(p.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        })
    });
}

/// Where in the event the fact `key` comes from; `None` for facts that are not content (the
/// method, the policy hash, the request id).
fn fact_pointer(kind: &str, key: &str) -> Option<String> {
    if kind != "decision" {
        return Some(format!("/result/{key}"));
    }
    let at = match key {
        "session_id" => "/input/session/id",
        "server" => "/input/resource/server",
        "tool" => "/input/action/name",
        "action_type" => "/input/action/type",
        "resource_path" => "/input/resource/path",
        "decision" => "/result/decision",
        "agent" => "/input/agent/id",
        "requester" => "/input/requester/id",
        "channel" => "/input/requester/channel",
        _ => return None,
    };
    Some(at.to_owned())
}

fn mask_pointers(event: &Event, policy: Option<&PolicySet>) -> Result<Vec<String>, String> {
    let Some(policy) = policy else {
        return Ok(Vec::new());
    };
    let Some(engine) = policy.engine() else {
        return Err("the policies do not compile".into());
    };
    let packages = engine.get_packages().map_err(|e| e.to_string())?;
    if !packages.iter().any(|p| p == MASK_PACKAGE) {
        return Ok(Vec::new());
    }
    let mut engine = engine.clone();
    let input = json!({
        "input": event.input, "result": event.result, "kind": event.kind,
        "decision_id": event.decision_id,
    });
    engine.set_input(crate::policy::engine::to_rego(&input));
    let value = engine
        .eval_rule(MASK_RULE.into())
        .map_err(|e| e.to_string())?;
    if value == regorus::Value::Undefined {
        return Ok(Vec::new());
    }
    let items: Vec<regorus::Value> = if let Ok(set) = value.as_set() {
        set.iter().cloned().collect()
    } else if let Ok(array) = value.as_array() {
        array.iter().cloned().collect()
    } else {
        return Err(format!("{MASK_RULE} is not a set of JSON pointers"));
    };
    items
        .iter()
        .map(|v| {
            v.as_string()
                .map(|s| s.to_string())
                .map_err(|_| format!("{MASK_RULE} holds a value that is not a string"))
        })
        .collect()
}

/// Removes what `pointer` (under `/input` or `/result`) names; whether anything was removed.
fn erase(event: &mut Event, pointer: &str) -> bool {
    let (root, rest) = if let Some(rest) = pointer.strip_prefix("/input") {
        (&mut event.input, rest)
    } else if let Some(rest) = pointer.strip_prefix("/result") {
        (&mut event.result, rest)
    } else {
        return false;
    };
    if rest.is_empty() {
        let had = !root.is_null();
        *root = Value::Null;
        return had;
    }
    if !rest.starts_with('/') {
        return false;
    }
    let Some((parent, last)) = rest.rsplit_once('/') else {
        return false;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match root.pointer_mut(parent) {
        Some(Value::Object(map)) => map.remove(&last).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn decision() -> JournalRecord {
        let body = json!({
            "ts": "2026-01-01T00:00:00Z", "session_id": "s1", "server": "fs", "tool": "write_file",
            "method": "tools/call", "action_type": "write", "resource_path": "/tmp/x",
            "decision": "deny", "reasons": "[\"no writes\"]",
            "arguments": "{\"content\":\"hi\",\"path\":\"/tmp/x\"}", "agent": "claude-code",
            "requester": "dev@example.com", "channel": "claude-code", "policy_hash": "abc",
            "request_id": "1", "request_hash": null, "enforced": true,
            "decision_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            "bundles": "{\"org\":{\"revision\":\"r7\",\"sha256\":\"ff\"}}",
        });
        JournalRecord {
            seq: 5,
            ts: "2026-01-01T00:00:00Z".into(),
            kind: "decision".into(),
            ref_seq: None,
            body,
            hash: "h5".into(),
            input: Some(json!({
                "action": {"tool": "fs/write_file", "type": "write",
                           "arguments": {"content": "hi", "path": "/tmp/x"}},
                "resource": {"path": "/tmp/x", "server": "fs"},
            })),
            decision_id: Some("1b4e28ba-2fa1-11d2-883f-0016d3cca427".into()),
            resolution: None,
            outcome: None,
            size: 0,
        }
    }

    fn policy(text: &str) -> PolicySet {
        PolicySet::from_sources(&[("log.rego".into(), text.into())], Duration::from_secs(1))
    }

    #[test]
    fn a_decision_carries_its_input_result_and_revisions() {
        let event = map(&decision(), ExportArguments::Redacted, None);
        assert_eq!(event.name(), "behavry.decision");
        assert_eq!(event.bundles, json!({"org": {"revision": "r7"}}));
        assert_eq!(
            event.result,
            json!({"decision": "deny", "reasons": ["no writes"], "resolution": null,
                   "outcome": null, "enforced": true})
        );
        assert_eq!(event.input["action"]["arguments"]["content"], "hi");
        assert_eq!(event.requested_by, "dev@example.com");
        assert_eq!(event.facts["tool"], "write_file");
        assert!(event.erased.is_empty());
    }

    #[test]
    fn arguments_leave_as_configured() {
        let omitted = map(&decision(), ExportArguments::Omit, None);
        assert_eq!(omitted.input["action"].get("arguments"), None);
        assert_eq!(omitted.erased, ["/input/action/arguments"]);
        let hashed = map(&decision(), ExportArguments::Sha256, None);
        let digest = hashed.input["action"]["arguments"].as_str().unwrap_or("");
        assert!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "{digest}"
        );
    }

    #[test]
    fn the_policy_mask_erases_what_it_names() {
        let table: &[(&str, &[&str], bool)] = &[
            (
                "package behavry.log\nimport rego.v1\nmask contains \"/input/action/arguments/content\" if input.input.action.type == \"write\"\nmask contains \"/result/reasons\"\nmask contains \"/input/nothing/here\"\n",
                &["/input/action/arguments/content", "/result/reasons"],
                false,
            ),
            // A mask whose answer is not a set of pointers lets neither input nor result out.
            (
                "package behavry.log\nimport rego.v1\nmask contains 42\n",
                &["/input", "/result"],
                true,
            ),
            // Facts repeat the input: masking the path masks the `resource_path` fact too.
            (
                "package behavry.log\nimport rego.v1\nmask contains \"/input/resource/path\"\n",
                &["/input/resource/path"],
                false,
            ),
            // No `behavry.log` package: nothing masked.
            ("package behavry.authz\nimport rego.v1\nallow if true\n", &[], false),
        ];
        for (text, want, emptied) in table {
            let set = policy(text);
            assert_eq!(set.error(), None, "{text}");
            let event = map(&decision(), ExportArguments::Redacted, Some(&set));
            assert_eq!(event.erased, *want, "{text}");
            assert_eq!(event.input.is_null(), *emptied, "{text}");
            // Nothing erased leaves through the facts (OTLP attributes).
            let path_erased = want
                .iter()
                .any(|p| *p == "/input" || *p == "/input/resource/path");
            assert_eq!(
                event.facts.contains_key("resource_path"),
                !path_erased,
                "{text}"
            );
            if *emptied {
                assert!(
                    event
                        .facts
                        .keys()
                        .all(|k| k == "method" || k == "policy_hash" || k == "request_id"),
                    "{:?}",
                    event.facts
                );
            }
            if want.contains(&"/input/action/arguments/content") {
                assert_eq!(
                    event.input["action"]["arguments"],
                    json!({"path": "/tmp/x"})
                );
                assert_eq!(event.result.get("reasons"), None);
            }
        }
    }

    #[test]
    fn what_a_server_or_client_sent_follows_the_arguments_rule() {
        let record = JournalRecord {
            seq: 7,
            ts: "t".into(),
            kind: "server_request".into(),
            ref_seq: None,
            body: json!({"server": "fs", "method": "sampling/createMessage",
                         "params": {"messages": ["private"]}}),
            hash: "h7".into(),
            input: None,
            decision_id: None,
            resolution: None,
            outcome: None,
            size: 0,
        };
        let omitted = map(&record, ExportArguments::Omit, None);
        assert_eq!(omitted.result.get("params"), None);
        assert_eq!(omitted.erased, ["/result/params"]);
        let hashed = map(&record, ExportArguments::Sha256, None);
        assert!(hashed.result["params"]
            .as_str()
            .is_some_and(|p| p.starts_with("sha256:")));
        let kept = map(&record, ExportArguments::Redacted, None);
        assert_eq!(kept.result["params"]["messages"][0], "private");
    }

    #[test]
    fn other_records_carry_their_body_and_decision() {
        let record = JournalRecord {
            seq: 6,
            ts: "t".into(),
            kind: "outcome".into(),
            ref_seq: Some(5),
            body: json!({"outcome": "ok", "duration_ms": 1.5}),
            hash: "h6".into(),
            input: None,
            decision_id: Some("d".into()),
            resolution: None,
            outcome: None,
            size: 0,
        };
        let event = map(&record, ExportArguments::Omit, None);
        assert_eq!(event.result, record.body);
        assert!(event.erased.is_empty());
        assert_eq!(event.decision_id.as_deref(), Some("d"));
        assert_eq!(event.input, Value::Null);
    }
}
