//! The server's tools as behavry reads them itself, so what policy sees about a tool (its
//! annotations, its input schema) never depends on whether the client happened to list them.
//!
//! behavry sends its own `tools/list` (every page) once the client has initialised the session, again
//! after the server says `notifications/tools/list_changed`, and when a tool call arrives before
//! any list was asked for (protocol versions without `initialize`). Its requests carry ids of its
//! own (a random prefix no client can guess, reserved while in flight), and their answers are
//! consumed here, never relayed. A governed call that arrives while the list is being read waits
//! for it, for a bounded time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::message::{self, Kind};
use super::{lock, Relay};
use crate::note;

/// Pages of one listing; a server that pages forever is cut off here.
const MAX_PAGES: usize = 100;

/// Where the catalogue stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Nothing asked yet.
    Unknown,
    /// A listing is in flight.
    Reading,
    /// The last listing finished (or failed: then the previous one, possibly empty, stands).
    Known,
}

/// The catalogue and the listing in flight.
pub(super) struct Tools {
    /// Tool name → its definition from the server's latest complete list.
    defs: Mutex<HashMap<String, Arc<Value>>>,
    listing: watch::Sender<Listing>,
    reading: Mutex<Option<Reading>>,
    /// behavry's own request ids are `<prefix><n>`.
    prefix: String,
    next: AtomicU64,
    /// How long a governed call waits for a listing in flight.
    pub(super) wait: Duration,
}

/// A listing in flight: the id of the page asked for, and the tools read so far.
struct Reading {
    id: String,
    pages: usize,
    tools: HashMap<String, Arc<Value>>,
}

impl Tools {
    pub(super) fn new(wait: Duration) -> Tools {
        Tools {
            defs: Mutex::new(HashMap::new()),
            listing: watch::channel(Listing::Unknown).0,
            reading: Mutex::new(None),
            prefix: format!("behavry-{}-", uuid::Uuid::new_v4().simple()),
            next: AtomicU64::new(1),
            wait,
        }
    }

    /// A tool's definition from the latest list.
    /// Shared, not copied: a call reads its tool's schema and annotations on every decision.
    pub(super) fn get(&self, name: &str) -> Option<Arc<Value>> {
        lock(&self.defs).get(name).cloned()
    }

    pub(super) fn listing(&self) -> Listing {
        *self.listing.borrow()
    }

    /// Whether `id` is one of behavry's own request ids.
    fn is_ours(&self, id: &Value) -> bool {
        id.as_str().is_some_and(|s| s.starts_with(&self.prefix))
    }

    /// Merges the tools of one page of a `tools/list` result into `into`.
    fn read_page(result: &Value, into: &mut HashMap<String, Arc<Value>>) {
        let tools = result.get("tools").and_then(Value::as_array);
        for tool in tools.into_iter().flatten() {
            if let Some(name) = tool.get("name").and_then(Value::as_str) {
                into.insert(name.to_owned(), Arc::new(tool.clone()));
            }
        }
    }
}

impl Relay {
    /// Asks the server for its tools (first page); a listing already in flight is superseded.
    pub(super) async fn list_tools(&self) {
        self.ask_tools_page(None, HashMap::new(), 0).await;
    }

    async fn ask_tools_page(
        &self,
        cursor: Option<Value>,
        tools: HashMap<String, Arc<Value>>,
        pages: usize,
    ) {
        let n = self.tools.next.fetch_add(1, Ordering::Relaxed);
        let id = Value::String(format!("{}{n}", self.tools.prefix));
        let mut params = Map::new();
        if let Some(cursor) = cursor {
            params.insert("cursor".into(), cursor);
        }
        let request = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params});
        *lock(&self.tools.reading) = Some(Reading {
            id: message::id_key(&id),
            pages,
            tools,
        });
        self.tools.listing.send_replace(Listing::Reading);
        self.guard.reserve(&id);
        if !self.forward(request.to_string().into_bytes()).await {
            self.tools_listed(None, "the server has exited");
        }
    }

    /// Consumes the server's answer to one of behavry's own requests; false if `skeleton` (of
    /// `line`, see [`message::read_server_line`]) is not one.
    pub(super) async fn own_answer(&self, skeleton: &Value, line: &[u8]) -> bool {
        let Kind::Response { id } = message::classify(skeleton) else {
            return false;
        };
        if !self.tools.is_ours(id) {
            return false;
        }
        let Some(msg) = message::full_response(line, id) else {
            self.tools_listed(None, "its answer could not be read");
            return true;
        };
        let msg = &msg;
        let key = message::id_key(id);
        let reading = {
            let mut reading = lock(&self.tools.reading);
            match reading.take() {
                Some(r) if r.id == key => r,
                // An answer to a listing that was superseded: dropped.
                other => {
                    *reading = other;
                    return true;
                }
            }
        };
        let Some(result) = msg.get("result") else {
            let why = msg
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("an error");
            self.tools_listed(None, why);
            return true;
        };
        let Reading {
            mut tools, pages, ..
        } = reading;
        Tools::read_page(result, &mut tools);
        match result.get("nextCursor") {
            Some(cursor @ Value::String(_)) if pages + 1 < MAX_PAGES => {
                self.ask_tools_page(Some(cursor.clone()), tools, pages + 1)
                    .await;
            }
            Some(Value::String(_)) => {
                note!("the server's tool list has more than {MAX_PAGES} pages; reading the first {MAX_PAGES}");
                self.tools_listed(Some(tools), "");
            }
            _ => self.tools_listed(Some(tools), ""),
        }
        true
    }

    /// Ends a listing: a complete one replaces the catalogue; a failed one leaves it as it was.
    fn tools_listed(&self, tools: Option<HashMap<String, Arc<Value>>>, why: &str) {
        match tools {
            Some(tools) => {
                let defs = tools.iter().map(|(k, v)| (k.clone(), Value::clone(v)));
                self.pins.observe(defs.collect());
                *lock(&self.tools.defs) = tools;
            }
            None => note!(
                "could not read the server's tool list ({}); tool calls are decided by their names alone",
                crate::display::escape(why)
            ),
        }
        self.tools.listing.send_replace(Listing::Known);
    }

    /// Caches what a client-requested `tools/list` page shows (the server's own answer, so as good
    /// as behavry's; it only adds or refreshes tools).
    pub(super) fn client_tools_page(&self, result: &Value) {
        Tools::read_page(result, &mut lock(&self.tools.defs));
    }

    /// With `filter_denied_tools`, the server's answer to a client's `tools/list` without the tools
    /// the policies deny for every call (see [`crate::policy::visible`]), recorded as a
    /// `tools_hidden` journal record; `None` to relay the answer as it is.
    pub(super) fn hide_denied_tools(&self, response: &Value, line: &[u8]) -> Option<Vec<u8>> {
        if !self.filter_denied_tools {
            return None;
        }
        let Kind::Response { id } = message::classify(response) else {
            return None;
        };
        if !matches!(
            lock(&self.pending).get(&message::id_key(id)),
            Some(super::Pending::ToolsList)
        ) {
            return None;
        }
        let mut full = message::full_response(line, id)?;
        let policy = self.policy.current();
        let tools = full.pointer_mut("/result/tools")?.as_array_mut()?;
        let mut hidden = Vec::new();
        tools.retain(|tool| {
            match crate::policy::visible::always_denied(&self.ctx, tool, &policy) {
                Some(reasons) => {
                    hidden.push(json!({"name": tool.get("name"), "reasons": reasons}));
                    false
                }
                None => true,
            }
        });
        if hidden.is_empty() {
            return None;
        }
        note!(
            "hid {} tool(s) the policies deny for every call from the client's tool list",
            hidden.len()
        );
        self.audit.event(
            crate::audit::chain::Kind::ToolsHidden,
            json!({"session_id": self.ctx.session_id, "server": self.ctx.server,
                   "policy_hash": policy.hash, "tools": hidden}),
        );
        Some(full.to_string().into_bytes())
    }

    /// The definition of tool `name` for deciding a call to it: waits (bounded) for a listing in
    /// flight, and starts one if none was ever asked for. `Err` says why it is not known.
    pub(super) async fn tool_definition(&self, name: &str) -> Result<Option<Arc<Value>>, String> {
        if self.tools.listing() == Listing::Unknown {
            self.list_tools().await;
        }
        let mut listing = self.tools.listing.subscribe();
        let known =
            tokio::time::timeout(self.tools.wait, listing.wait_for(|l| *l == Listing::Known)).await;
        match known {
            Ok(Ok(_)) => Ok(self.tools.get(name)),
            _ => Err(format!(
                "the server's tool list was not known within {} ms; decided without the tool's annotations",
                self.tools.wait.as_millis()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_merge_by_name() {
        let mut into = HashMap::new();
        Tools::read_page(
            &json!({"tools": [{"name": "a", "annotations": {"readOnlyHint": true}}, {"x": 1}]}),
            &mut into,
        );
        Tools::read_page(
            &json!({"tools": [{"name": "b"}, {"name": "a", "annotations": {"destructiveHint": true}}]}),
            &mut into,
        );
        assert_eq!(into.len(), 2);
        assert_eq!(into["a"]["annotations"]["destructiveHint"], true);
        Tools::read_page(&json!({"tools": "nope"}), &mut into);
        assert_eq!(into.len(), 2);
    }

    #[test]
    fn own_ids_are_unguessable_strings() {
        let a = Tools::new(Duration::from_secs(1));
        let b = Tools::new(Duration::from_secs(1));
        assert_ne!(a.prefix, b.prefix);
        assert!(a.is_ours(&json!(format!("{}7", a.prefix))));
        assert!(!a.is_ours(&json!(format!("{}7", b.prefix))));
        assert!(!a.is_ours(&json!(7)));
        assert!(!a.is_ours(&json!("behavry-7")));
    }
}
