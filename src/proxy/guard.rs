//! Protocol state the strict parser cannot see in one message: which client request ids are in
//! flight (an id may not be reused until its request is answered), and the negotiated protocol
//! version (only 2025-03-26 has JSON-RPC batches).
//!
//! Also the relay's hardening steps that need that state or I/O: admitting a client message,
//! resolving a governed call's paths off the async workers, and recording the requests the server
//! sends the client. Kept here so the relay's main loop in `proxy/mod.rs` stays a short read.

use std::collections::HashSet;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::message::{self, Kind};
use super::strict::{self, Rejection};
use super::{lock, Relay};
use crate::audit::chain;
use crate::policy::canon::PathArg;
use crate::policy::input::{self, Governed};

/// The only protocol version with JSON-RPC batches.
pub const BATCH_VERSION: &str = "2025-03-26";

/// Server-to-client requests that are not worth an audit row: they act on nobody.
const UNRECORDED_SERVER_REQUESTS: &[&str] = &["ping"];

#[derive(Debug, Default)]
pub struct Guard {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Keys ([`message::id_key`]) of client requests not answered yet, by the server or by us.
    in_flight: HashSet<String>,
    /// The id of the client's `initialize`, until the server answers it.
    initialize: Option<String>,
    /// `protocolVersion` from the server's answer to `initialize`.
    protocol: Option<String>,
}

impl Guard {
    /// Admits one client message (already through [`strict::check`]): a request reserves its id
    /// until it is answered. A message whose id is already reserved is refused, whatever its
    /// shape: answering it with that id would answer the first request instead.
    pub fn admit(&self, msg: &Value) -> Result<(), Rejection> {
        let mut state = lock(&self.state);
        let (id, method) = match message::classify(msg) {
            Kind::Request { id, method } => (id, Some(method)),
            Kind::Invalid { id: Some(id), .. } => (id, None),
            _ => return Ok(()),
        };
        let key = message::id_key(id);
        if state.in_flight.contains(&key) {
            return Err(Rejection::invalid(format!(
                "request id {} is already used by a request that has not been answered; ids must be unique",
                shorten(&key)
            )));
        }
        if let Some(method) = method {
            if method == "initialize" {
                state.initialize = Some(key.clone());
            }
            state.in_flight.insert(key);
        }
        Ok(())
    }

    /// Notes a message from the server: responses free their ids, and the answer to `initialize`
    /// fixes the protocol version.
    pub fn server_message(&self, msg: &Value) {
        match message::classify(msg) {
            Kind::Response { id } => self.answered(id, msg),
            Kind::Batch(items) => items.iter().for_each(|m| {
                if let Kind::Response { id } = message::classify(m) {
                    self.answered(id, m);
                }
            }),
            _ => {}
        }
    }

    /// Whether a client request with this id is waiting for its answer.
    pub fn in_flight(&self, id: &Value) -> bool {
        lock(&self.state).in_flight.contains(&message::id_key(id))
    }

    /// Notes a frame behavry itself sends the client: an answer frees its id.
    pub fn replied(&self, frame: &[u8]) {
        // Our own frames, so a plain parse is fine; a frame without an id frees nothing.
        if let Ok(msg) = serde_json::from_slice::<Value>(frame) {
            if let Kind::Response { id } = message::classify(&msg) {
                lock(&self.state).in_flight.remove(&message::id_key(id));
            }
        }
    }

    fn answered(&self, id: &Value, response: &Value) {
        let key = message::id_key(id);
        let mut state = lock(&self.state);
        state.in_flight.remove(&key);
        if state.initialize.as_deref() == Some(key.as_str()) {
            state.initialize = None;
            state.protocol = response
                .pointer("/result/protocolVersion")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
    }

    /// The negotiated protocol version, once the server answered `initialize`.
    pub fn protocol(&self) -> Option<String> {
        lock(&self.state).protocol.clone()
    }

    /// Batches are JSON-RPC 2.0, but MCP allowed them only in 2025-03-26; before `initialize` is
    /// answered nothing is negotiated (and `initialize` itself may not be batched).
    pub fn batch_allowed(&self) -> Result<(), Rejection> {
        match self.protocol() {
            Some(v) if v == BATCH_VERSION => Ok(()),
            Some(v) => Err(Rejection::invalid(format!(
                "batches are not part of the negotiated MCP protocol version {}; send one message per line",
                shorten(&v)
            ))),
            None => Err(Rejection::invalid(
                "batches are allowed only after initialize negotiated protocol version 2025-03-26",
            )),
        }
    }
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

impl Relay {
    /// Runs one client message through the per-message checks; a refused one is answered here
    /// and `None` is returned.
    pub(super) async fn admit(&self, msg: Value) -> Option<Value> {
        match strict::check(&msg).and_then(|()| self.guard.admit(&msg)) {
            Ok(()) => Some(msg),
            Err(rejection) => {
                self.reply(rejection.reply()).await;
                None
            }
        }
    }

    /// Canonicalises the paths a governed call names. Symlink resolution touches the file
    /// system (a slow mount could block), so it runs on the blocking pool.
    pub(super) async fn resolve_paths(&self, request: &Governed) -> Vec<PathArg> {
        // The tool's inputSchema is not cached yet: the walker reads keys and shapes only.
        let found = input::path_args(request, None);
        if found.named.is_empty() && found.refused.is_none() {
            return Vec::new();
        }
        let resolver = self.resolver.clone();
        let fallback = found.named.clone();
        tokio::task::spawn_blocking(move || resolver.resolve_call(&found))
            .await
            .unwrap_or_else(|e| {
                // Fail closed: a call whose paths could not be resolved is refused.
                let why = format!("behavry could not resolve this call's paths ({e})");
                let mut refused: Vec<PathArg> = fallback
                    .into_iter()
                    .map(|n| PathArg::refused(n.raw, why.clone()))
                    .collect();
                if refused.is_empty() {
                    refused.push(PathArg::refused(String::new(), why));
                }
                refused
            })
    }

    /// Records the requests the server sends the client (`sampling/createMessage`,
    /// `elicitation/create`, `roots/list`, …) as `server_request` records in the audit journal:
    /// they are the server acting on the user. They are relayed regardless; the record is queued,
    /// and written before behavry exits.
    pub(super) fn record_server_requests(&self, msg: &Value) {
        let record = |m: &Value| {
            if let Kind::Request { id, method } = message::classify(m) {
                if UNRECORDED_SERVER_REQUESTS.contains(&method) {
                    return;
                }
                self.audit.event(
                    chain::Kind::ServerRequest,
                    json!({
                        "session_id": self.ctx.session_id,
                        "server": self.ctx.server,
                        "method": method,
                        "request_id": message::id_key(id),
                        "params": crate::audit::store::redact(m.get("params").unwrap_or(&Value::Null)),
                    }),
                );
            }
        };
        match msg {
            Value::Array(items) => items.iter().for_each(record),
            other => record(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(id: Value, method: &str) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "method": method})
    }

    #[test]
    fn ids_are_reserved_until_answered() {
        let g = Guard::default();
        assert!(g.admit(&req(json!(1), "tools/call")).is_ok());
        let again = g.admit(&req(json!(1), "ping")).unwrap_err();
        assert!(again.message.contains("already used"), "{again}");
        // "1" and 1 are different ids.
        assert!(g.admit(&req(json!("1"), "ping")).is_ok());
        // An invalid message may not borrow an id in flight either (its error would carry it).
        let invalid = json!({"jsonrpc": "2.0", "id": 1});
        assert!(g.admit(&invalid).is_err());
        g.server_message(&json!({"jsonrpc": "2.0", "id": 1, "result": {}}));
        assert!(g.admit(&req(json!(1), "ping")).is_ok());
        g.replied(br#"{"jsonrpc":"2.0","id":1,"result":{"isError":true}}"#);
        assert!(g.admit(&req(json!(1), "ping")).is_ok());
        // Notifications and responses to the server's requests use no client id.
        assert!(g
            .admit(&json!({"jsonrpc": "2.0", "method": "notifications/x"}))
            .is_ok());
        assert!(g
            .admit(&json!({"jsonrpc": "2.0", "id": 1, "result": {}}))
            .is_ok());
    }

    #[test]
    fn batch_version_comes_from_the_initialize_answer() {
        let g = Guard::default();
        assert!(g.batch_allowed().is_err());
        g.admit(&req(json!("init"), "initialize")).unwrap();
        assert!(g.batch_allowed().is_err());
        g.server_message(
            &json!({"jsonrpc": "2.0", "id": "init", "result": {"protocolVersion": "2025-03-26"}}),
        );
        assert_eq!(g.protocol().as_deref(), Some("2025-03-26"));
        assert!(g.batch_allowed().is_ok());

        let g = Guard::default();
        g.admit(&req(json!(0), "initialize")).unwrap();
        g.server_message(
            &json!([{"jsonrpc": "2.0", "id": 0, "result": {"protocolVersion": "2025-06-18"}}]),
        );
        let e = g.batch_allowed().unwrap_err();
        assert!(e.message.contains("2025-06-18"), "{e}");
    }
}
