//! Approval inside the client: a held call is put to the person as an MCP elicitation form
//! (`elicitation/create`), which Claude Code shows in its own UI with Accept / Decline / Esc.
//!
//! The form races `behavry approve`: whichever resolves the call first wins (the store's
//! first-resolution-wins rule decides), and the other is withdrawn. A form the client cancels
//! (Esc, or `claude -p`, which cancels every form at once) is no decision: the call stays held for
//! `behavry approve` and the timeout. Accepting without a choice is no approval either.
//!
//! behavry's requests use ids of their own (a random prefix no server can guess), and their answers
//! are consumed here, never relayed to the server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::message::{self, Kind};
use super::{lock, Relay};

/// How held calls are put to a person (`[wrap] approval`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// An elicitation form when the client supports one, and `behavry approve`.
    #[default]
    Auto,
    /// Only `behavry approve`.
    Tui,
    /// The form first (the notes do not point to `behavry approve`, which still works).
    Elicitation,
}

/// What the person chose in the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Approve {
        session: bool,
    },
    Deny,
    /// Not a decision (cancelled, no choice, an error): the call stays held.
    Undecided(String),
}

/// The schema's one field and its choices.
const FIELD: &str = "decision";
const APPROVE: &str = "approve";
const APPROVE_SESSION: &str = "approve_for_session";
const DENY: &str = "deny";

/// Reads the client's answer to a form (a whole JSON-RPC response).
pub fn answer(response: &Value) -> Answer {
    if let Some(error) = response.get("error") {
        let why = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("an error");
        return Answer::Undecided(format!("the client could not show the form ({why})"));
    }
    let result = response.get("result");
    let action = result.and_then(|r| r.get("action")).and_then(Value::as_str);
    match action {
        Some("decline") => Answer::Deny,
        Some("accept") => match result.and_then(|r| r.pointer(&format!("/content/{FIELD}"))) {
            Some(Value::String(s)) if s == APPROVE => Answer::Approve { session: false },
            Some(Value::String(s)) if s == APPROVE_SESSION => Answer::Approve { session: true },
            Some(Value::String(s)) if s == DENY => Answer::Deny,
            _ => Answer::Undecided("the form was accepted without a choice".into()),
        },
        Some("cancel") => Answer::Undecided("the form was dismissed".into()),
        _ => Answer::Undecided("the client's answer to the form was not understood".into()),
    }
}

/// What the form shows about a held call. Every text here is the agent's or the server's: it is
/// shown through the one sanitiser so it cannot restyle or hide anything in the client's UI.
#[derive(Debug, Clone, Default)]
pub struct Summary<'a> {
    /// `<server>/<tool>`.
    pub qualified: &'a str,
    pub paths: &'a [String],
    pub reasons: &'a [String],
    pub arguments: &'a Value,
}

/// Arguments longer than this are cut in the form (the person can open `behavry approve` for all).
const ARGUMENTS_SHOWN: usize = 600;

/// The `elicitation/create` params for a held call.
pub fn form(summary: &Summary) -> Value {
    let shown = |s: &str| crate::display::escape(s).into_owned();
    let mut text = format!(
        "behavry is holding a call for your approval.\n\nTool: {}\n",
        shown(summary.qualified)
    );
    match summary.paths {
        [] => {}
        [one] => text.push_str(&format!("Path: {}\n", shown(one))),
        many => {
            text.push_str("Paths:\n");
            for p in many.iter().take(10) {
                text.push_str(&format!("  {}\n", shown(p)));
            }
            if many.len() > 10 {
                text.push_str(&format!("  … and {} more\n", many.len() - 10));
            }
        }
    }
    if !summary.reasons.is_empty() {
        text.push_str(&format!("Why: {}\n", shown(&summary.reasons.join("; "))));
    }
    let mut args = summary.arguments.to_string();
    if args.chars().count() > ARGUMENTS_SHOWN {
        args = args.chars().take(ARGUMENTS_SHOWN).collect::<String>() + " …";
    }
    text.push_str(&format!("Arguments: {}\n", shown(&args)));
    json!({
        "message": text,
        "requestedSchema": {
            "type": "object",
            "properties": {
                FIELD: {
                    "type": "string",
                    "title": "Your decision",
                    "enum": [APPROVE, APPROVE_SESSION, DENY],
                    "enumNames": ["Approve once", "Approve for the rest of this session", "Deny"],
                }
            },
            "required": [FIELD],
        }
    })
}

/// Forms in flight, by the id behavry gave them.
pub(super) struct Forms {
    prefix: String,
    next: AtomicU64,
    waiting: Mutex<HashMap<String, oneshot::Sender<Value>>>,
}

impl Forms {
    pub(super) fn new() -> Forms {
        Forms {
            prefix: format!("behavry-form-{}-", uuid::Uuid::new_v4().simple()),
            next: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
        }
    }
}

/// A form sent to the client, waiting for its answer.
pub(super) struct Asked {
    pub id: Value,
    pub answer: oneshot::Receiver<Value>,
}

impl Relay {
    /// Whether a held call should be put to the person in the client.
    pub(super) fn elicits(&self) -> bool {
        self.approval != Channel::Tui && self.client_elicits.load(Ordering::Relaxed)
    }

    /// How notes and forms name the client ("Claude Code").
    pub(super) fn client_title(&self) -> String {
        lock(&self.client_title)
            .clone()
            .unwrap_or_else(|| "the client".to_owned())
    }

    /// Sends the client a form about a held call.
    pub(super) async fn ask(&self, summary: &Summary<'_>) -> Asked {
        let n = self.forms.next.fetch_add(1, Ordering::Relaxed);
        let id = Value::String(format!("{}{n}", self.forms.prefix));
        let (tx, answer) = oneshot::channel();
        lock(&self.forms.waiting).insert(message::id_key(&id), tx);
        let request = json!({"jsonrpc": "2.0", "id": id, "method": "elicitation/create",
            "params": form(summary)});
        let _ = self.to_client.send(request.to_string().into_bytes()).await;
        Asked { id, answer }
    }

    /// Takes the client's answer to one of behavry's forms; false if `msg` is not one.
    pub(super) fn form_answer(&self, msg: &Value) -> bool {
        let Kind::Response { id } = message::classify(msg) else {
            return false;
        };
        if !id
            .as_str()
            .is_some_and(|s| s.starts_with(&self.forms.prefix))
        {
            return false;
        }
        if let Some(tx) = lock(&self.forms.waiting).remove(&message::id_key(id)) {
            let _ = tx.send(msg.clone());
        }
        true
    }

    /// Withdraws a form the call no longer needs (resolved elsewhere, cancelled, timed out).
    pub(super) async fn withdraw(&self, id: &Value) {
        if lock(&self.forms.waiting)
            .remove(&message::id_key(id))
            .is_none()
        {
            return;
        }
        let note = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": id, "reason": "the call was resolved elsewhere"}});
        let _ = self.to_client.send(note.to_string().into_bytes()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(result: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": "f", "result": result})
    }

    #[test]
    fn answers() {
        let accept =
            |decision: Value| reply(json!({"action": "accept", "content": {"decision": decision}}));
        let table = [
            (accept(json!("approve")), Answer::Approve { session: false }),
            (
                accept(json!("approve_for_session")),
                Answer::Approve { session: true },
            ),
            (accept(json!("deny")), Answer::Deny),
            (reply(json!({"action": "decline"})), Answer::Deny),
        ];
        for (msg, want) in table {
            assert_eq!(answer(&msg), want, "{msg}");
        }
        // Nothing else is a decision.
        let undecided = [
            reply(json!({"action": "cancel"})),
            reply(json!({"action": "accept"})),
            reply(json!({"action": "accept", "content": {}})),
            reply(json!({"action": "accept", "content": {"decision": true}})),
            reply(json!({"action": "accept", "content": {"decision": "APPROVE"}})),
            reply(json!({"action": "accept", "content": {"Decision": "approve"}})),
            reply(json!({"action": "yes"})),
            json!({"jsonrpc": "2.0", "id": "f", "error": {"code": -32601, "message": "no"}}),
        ];
        for msg in undecided {
            assert!(matches!(answer(&msg), Answer::Undecided(_)), "{msg}");
        }
    }

    #[test]
    fn the_form_shows_the_call_and_cannot_be_restyled() {
        let paths = ["/tmp/a".to_string(), "/tmp/\u{1b}[2Kb".to_string()];
        let reasons = ["deletes need a person".to_string()];
        let args = json!({"path": "/tmp/a", "note": "\u{202e}txt.exe"});
        let f = form(&Summary {
            qualified: "fs/delete_file",
            paths: &paths,
            reasons: &reasons,
            arguments: &args,
        });
        let text = f["message"].as_str().unwrap_or("");
        assert!(text.contains("Tool: fs/delete_file"), "{text}");
        assert!(text.contains("/tmp/a"), "{text}");
        assert!(text.contains("Why: deletes need a person"), "{text}");
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{202e}'),
            "{text}"
        );
        assert_eq!(f["requestedSchema"]["required"], json!(["decision"]));
        let long = json!({"content": "x".repeat(5000)});
        let f = form(&Summary {
            qualified: "fs/write_file",
            arguments: &long,
            ..Summary::default()
        });
        assert!(f["message"].as_str().unwrap_or("").len() < 1000);
    }
}
