//! A stand-in for the Anthropic Messages API, so the real Claude Code can run in tests with a
//! scripted "model". It listens on 127.0.0.1 only (never any other address), answers
//! `POST /v1/messages` with server-sent events, and records every request it got: what the model
//! received (the `tool_result` blocks) is read back from those records.
//!
//! The script is a list of tool calls. A main-loop request (one that offers the scripted tools) is
//! answered with the next tool call not yet answered by a `tool_result`; once all are answered, with
//! a short text and `end_turn`. Any other request (a side query Claude Code makes on its own) gets a
//! short text.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{json, Value};

/// One tool call the "model" makes.
#[derive(Clone, Debug)]
pub struct ToolUse {
    /// As Claude Code names it: `mcp__<server>__<tool>`.
    pub name: String,
    pub input: Value,
}

impl ToolUse {
    pub fn new(name: &str, input: Value) -> ToolUse {
        ToolUse {
            name: name.to_string(),
            input,
        }
    }

    /// The `tool_use` id of the `n`th scripted call (0-based).
    pub fn id(n: usize) -> String {
        format!("toolu_stand_in_{n}")
    }
}

/// One HTTP request as received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    /// The JSON body; `Value::Null` when there was none or it was not JSON.
    pub body: Value,
}

pub struct MessagesApi {
    addr: SocketAddr,
    script: Arc<Mutex<Vec<ToolUse>>>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
}

impl MessagesApi {
    /// Starts answering, with an empty script (the model only says "done").
    pub fn start() -> MessagesApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(Mutex::new(Vec::new()));
        let (log, stopping, calls) = (
            Arc::clone(&requests),
            Arc::clone(&stop),
            Arc::clone(&script),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (log, calls) = (Arc::clone(&log), Arc::clone(&calls));
                std::thread::spawn(move || serve(stream, &calls, &log));
            }
        });
        MessagesApi {
            addr,
            script,
            requests,
            stop,
        }
    }

    /// The tool calls the model makes, in order.
    pub fn script(&self, calls: Vec<ToolUse>) {
        *self.script.lock().unwrap_or_else(PoisonError::into_inner) = calls;
    }

    /// For `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The `tool_result` block the model received for the `n`th scripted call, if it did.
    pub fn tool_result(&self, n: usize) -> Option<Value> {
        let id = ToolUse::id(n);
        self.requests()
            .iter()
            .flat_map(|r| content_blocks(&r.body))
            .find(|b| b["type"] == "tool_result" && b["tool_use_id"] == id.as_str())
    }

    /// Every request, one line each, for failure messages: its last message (what is new in it),
    /// not the whole conversation and system prompt.
    pub fn transcript(&self) -> String {
        self.requests()
            .iter()
            .map(|r| {
                let last = r.body["messages"]
                    .as_array()
                    .and_then(|m| m.last())
                    .map(Value::to_string)
                    .unwrap_or_default();
                let last: String = last.chars().take(2000).collect();
                format!("{} {} last message: {last}", r.method, r.target)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for MessagesApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// The text of a `tool_result`'s content: a string, or text blocks joined.
pub fn result_text(result: &Value) -> String {
    match &result["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Every content block of every message in a Messages API request body.
fn content_blocks(body: &Value) -> Vec<Value> {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .cloned()
        .collect()
}

fn serve(stream: TcpStream, script: &Mutex<Vec<ToolUse>>, log: &Mutex<Vec<Recorded>>) {
    // A client that stalls must not pin a thread forever.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(request.clone());
    let response = if request.method == "POST" && request.target.starts_with("/v1/messages") {
        let script = script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        answer(&request.body, &script)
    } else {
        http(
            "404 Not Found",
            "application/json",
            &json!({"type": "error", "error": {"type": "not_found_error",
                "message": "the test stand-in answers only POST /v1/messages"}})
            .to_string(),
        )
    };
    let _ = writer.write_all(response.as_bytes());
    let _ = writer.flush();
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Recorded> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let (mut length, mut chunked) = (0usize, false);
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "content-length" {
            length = value.parse().ok()?;
        } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2]; // the chunk and its CRLF
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body).ok()?;
    }
    Some(Recorded {
        method,
        target,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}

/// The scripted model's answer to one Messages API request.
fn answer(body: &Value, script: &[ToolUse]) -> String {
    let offered: Vec<&str> = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    let main_loop = script.iter().any(|t| offered.contains(&t.name.as_str()));
    let answered = content_blocks(body)
        .iter()
        .filter(|b| b["type"] == "tool_result")
        .count();
    let next = if main_loop {
        script.get(answered).map(|t| (answered, t))
    } else {
        None
    };
    let streaming = body["stream"] == true;
    let model = body["model"].as_str().unwrap_or("claude-stand-in");
    let (block, stop_reason) = match next {
        Some((n, t)) => (
            json!({"type": "tool_use", "id": ToolUse::id(n), "name": t.name, "input": t.input}),
            "tool_use",
        ),
        None => (json!({"type": "text", "text": "done"}), "end_turn"),
    };
    if !streaming {
        let message = json!({"id": "msg_stand_in", "type": "message", "role": "assistant",
            "model": model, "content": [block], "stop_reason": stop_reason, "stop_sequence": null,
            "usage": {"input_tokens": 1, "output_tokens": 1}});
        return http("200 OK", "application/json", &message.to_string());
    }
    // The block starts empty and its content arrives as a delta, as the real API streams it.
    let (start, delta) = match block["type"].as_str() {
        Some("tool_use") => (
            json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
            json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
        ),
        _ => (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": block["text"]}),
        ),
    };
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_stand_in", "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null,
            "stop_sequence": null, "usage": {"input_tokens": 1, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": start}),
        json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": 1}}),
        json!({"type": "message_stop"}),
    ];
    let sse: String = events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
        .collect();
    http("200 OK", "text/event-stream", &sse)
}

/// A whole response; the connection closes after it, so no keep-alive bookkeeping.
fn http(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
