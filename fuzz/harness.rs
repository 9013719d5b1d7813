#![allow(dead_code)] // each fuzz target uses half of this file

//! What the fuzz targets run, shared with the stable-toolchain smoke run (`tests/fuzz_smoke.rs`)
//! so both exercise exactly the same code and check the same properties. Any panic is a bug:
//! these functions see nothing but untrusted input.

use std::cell::RefCell;
use std::path::{Component, Path};
use std::sync::OnceLock;

use behavry::policy::canon::{self, Lexical, OwnDir, PathArg, Resolver};
use behavry::policy::input::{self, Context, Facts, Governed};
use behavry::proxy::frame::{self, Frame, FrameReader};
use behavry::proxy::guard::Guard;
use behavry::proxy::message;
use behavry::proxy::strict;
use serde_json::{json, Value};

thread_local! {
    static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

/// Client bytes → frames → strict parse → per-message checks → classification → governed
/// request recognition, with the in-flight id bookkeeping of one connection.
///
/// Properties: whatever the strict parser accepts, serde_json reads the same way, and the
/// re-serialisation behavry would forward is one line that parses back to the same value.
pub fn frame_message(data: &[u8]) {
    // The first byte picks the reader's buffer size and the frame cap, so chunk boundaries and
    // the oversize path get exercised too.
    let (head, body) = match data.split_first() {
        Some((h, b)) => (*h as usize, b),
        None => (0, data),
    };
    let capacity = 1 + head % 64;
    let max = 16 + (head * 37) % 4096;
    let frames = RUNTIME.with(|rt| {
        let mut rt = rt.borrow_mut();
        let rt = rt.get_or_insert_with(|| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a current-thread runtime")
        });
        rt.block_on(async {
            let mut reader =
                FrameReader::new(tokio::io::BufReader::with_capacity(capacity, body), max);
            let mut frames = Vec::new();
            while let Ok(Some(frame)) = reader.read_frame().await {
                frames.push(frame);
            }
            frames
        })
    });
    let guard = Guard::default();
    for frame in frames {
        match frame {
            Frame::Line(line) => {
                assert!(line.len() <= max, "a frame over the cap");
                assert!(!line.contains(&b'\n'), "a frame with a newline");
                message_checks(&line, &guard);
            }
            Frame::Oversized { bytes, head, tail } => {
                assert!(bytes > max);
                assert!(head.len() <= frame::EDGE && tail.len() <= frame::EDGE);
                // Recovering an id from the ends never panics, whatever they hold.
                let _ = message::oversized_id(&head, &tail);
            }
        }
    }
    // The parser on its own, without framing: newlines inside are its business then.
    message_checks(body, &guard);
}

fn message_checks(line: &[u8], guard: &Guard) {
    let Ok(strict::Message { value, bytes }) = strict::read(line.to_vec()) else {
        let _ = strict::readable_id(line);
        return;
    };
    // What is forwarded is the line (lone surrogates repaired): any reader reads it as policy did.
    let lenient: Value =
        serde_json::from_slice(&bytes).expect("strict accepted what serde_json refuses");
    assert_eq!(
        lenient, value,
        "strict and serde_json read the message differently"
    );
    // Repair keeps lengths and never adds a newline, so a framed line stays one line.
    assert_eq!(bytes.len(), line.len(), "repair changed the length");
    assert_eq!(
        bytes.contains(&b'\n'),
        line.contains(&b'\n'),
        "repair added or removed a newline"
    );
    let reparsed = strict::parse(&bytes).expect("the forwarded bytes do not parse");
    assert_eq!(
        reparsed, value,
        "the server would read something else than policy did"
    );
    let _ = message::read_server_line(line);

    let messages = match &value {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    for msg in messages {
        if strict::check(msg).is_err() {
            continue;
        }
        let _ = guard.admit(msg);
        guard.server_message(msg);
        if let message::Kind::Request { id, method } = message::classify(msg) {
            assert!(
                id.is_string() || id.is_i64() || id.is_u64(),
                "a checked request with id {id}"
            );
            if let Some(Ok(governed)) = Governed::from_request(method, msg.get("params")) {
                let _ = input::path_args(&governed, None);
            }
        }
    }
    let _ = guard.batch_allowed();
}

struct Fixture {
    _dir: tempfile::TempDir,
    resolver: Resolver,
    ctx: Context,
}

/// A small tree with symlinks (one a loop, one dangling) to resolve paths against.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = canon::resolve(dir.path());
        for d in ["tmp", "prod/sub", "home", "own/policies"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            let _ = symlink(root.join("prod"), root.join("tmp/link"));
            let _ = symlink("../prod/sub", root.join("tmp/rel"));
            let _ = symlink(root.join("prod/new"), root.join("tmp/dangling"));
            let _ = symlink(root.join("tmp/loop"), root.join("tmp/loop"));
            let _ = symlink(root.join("own"), root.join("tmp/own"));
        }
        let resolver = Resolver::new(
            root.join("tmp"),
            Some(root.join("home")),
            vec![OwnDir {
                what: "data directory".into(),
                dir: root.join("own"),
            }],
        );
        let ctx = Context {
            server: "fs".into(),
            agent_id: None,
            agent_name: None,
            role: "developer".into(),
            risk_tier: "low".into(),
            requester_id: "fuzz".into(),
            session_id: "s".into(),
            project_dir: None,
            cwd: root.join("tmp"),
            home: Some(root.join("home")),
            action_types: Default::default(),
            behavry: Default::default(),
        };
        Fixture {
            _dir: dir,
            resolver,
            ctx,
        }
    })
}

/// Arbitrary bytes as tool arguments (a JSON object), or as one path string, through path
/// extraction, the canonicaliser and the input builder.
///
/// Properties: canonical local paths are absolute and hold no `.`/`..`; only a refused path may
/// lack a reading; the input lists every reading and every raw path.
pub fn input_canon(data: &[u8]) {
    let f = fixture();
    let arguments = match strict::parse(data) {
        Ok(v @ Value::Object(_)) => v,
        Ok(other) => json!({ "paths": [other], "path": other.to_string() }),
        Err(_) => json!({ "path": String::from_utf8_lossy(data) }),
    };
    for raw in arguments.as_object().into_iter().flat_map(|o| o.values()) {
        if let Some(raw) = raw.as_str() {
            lexical_properties(raw, &f.ctx.cwd);
        }
    }
    let name = if data.first().is_some_and(|b| b % 2 == 0) {
        "write_file"
    } else {
        "read_file"
    };
    for request in [
        Governed::ToolCall {
            name: name.into(),
            arguments: arguments.clone(),
        },
        Governed::PromptGet {
            name: "p".into(),
            arguments: arguments.clone(),
        },
        Governed::ResourceRead {
            uri: String::from_utf8_lossy(data).into_owned(),
        },
    ] {
        let found = input::path_args(&request, None);
        let paths: Vec<PathArg> = f.resolver.resolve_call(&found);
        if found.refused.is_none() {
            assert_eq!(paths.len(), found.named.len());
        }
        for p in &paths {
            // Only a refused path may lack a reading (one refused for naming behavry's own
            // files keeps its readings, for the audit row).
            assert!(
                p.refused.is_some() || !p.canonical.is_empty(),
                "a path with no reading: {p:?}"
            );
        }
        let facts = Facts {
            client_name: Some("fuzz"),
            annotations: None,
            session_seconds: 1,
            paths: &paths,
            tool: None,
        };
        let built = input::build(&f.ctx, &request, &facts);
        let readings: usize = paths.iter().map(|p| p.canonical.len()).sum();
        let listed = built.input["resource"]["paths"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(listed, readings);
        let raw_listed = built.input["resource"]["raw_paths"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(raw_listed, paths.len());
        if let Some(why) = &built.refused {
            assert!(!why.is_empty());
        }
    }
}

fn lexical_properties(raw: &str, cwd: &Path) {
    let Ok(Lexical::Path { normalised, .. }) = canon::lexical(raw, cwd, Some(Path::new("/h")))
    else {
        return;
    };
    assert!(normalised.is_absolute(), "{normalised:?}");
    assert!(
        normalised
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_))),
        "not normal: {normalised:?}"
    );
    assert_eq!(canon::normalise(&normalised), normalised);
    let resolved = canon::resolve(&normalised);
    assert!(resolved.is_absolute());
    assert!(resolved
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_))));
}
