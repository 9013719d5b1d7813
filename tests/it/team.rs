//! A team's policy end to end: a bundle made and signed (ES256) by `behavry bundle build`, served
//! by Debian's nginx and by Debian's `docker-registry`, governs several wrappers of the mock
//! server on one machine; `behavry bundle status|fetch` show and drive the download.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{build_bundle, eventually, is_error, text, Home, Wrapper};
use crate::oci::Registry;
use crate::pull::Nginx;

const MAKE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bundles/make.py");

const ALLOW_ECHO: &str =
    "package behavry.authz\nimport rego.v1\nallow if input.action.tool == \"mock/echo\"\n";
const DENY_ALL: &str =
    "package behavry.authz\nimport rego.v1\ndeny := true\nreasons contains \"revision two\"\n";

/// The team's ES256 key pair, and a second private key nobody configured (a bad publish).
pub(crate) struct Keys {
    dir: tempfile::TempDir,
    pub(crate) private: PathBuf,
    pub(crate) public: PathBuf,
    pub(crate) stranger: PathBuf,
}

impl Keys {
    pub(crate) fn new() -> Keys {
        let dir = tempfile::tempdir().expect("tempdir");
        let keygen = |private: &Path, public: &Path| {
            let out = Command::new("python3")
                .arg(MAKE)
                .args(["keygen", "ES256"])
                .args([private, public])
                .output()
                .expect("the team tests need python3 on PATH");
            assert!(
                out.status.success(),
                "make.py keygen failed (pip install -r tests/requirements.txt): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let (private, public) = (dir.path().join("org.pem"), dir.path().join("org.pub.pem"));
        keygen(&private, &public);
        let stranger = dir.path().join("stranger.pem");
        keygen(&stranger, &dir.path().join("stranger.pub.pem"));
        Keys {
            dir,
            private,
            public,
            stranger,
        }
    }

    /// `behavry bundle build` of one policy at `revision`, signed with `key` as `org-2026`.
    pub(crate) fn build(&self, revision: &str, rego: &str, key: &Path) -> PathBuf {
        let key = key.to_str().expect("utf-8 key path");
        build_bundle(
            self.dir.path(),
            revision,
            &[("policy.rego", rego)],
            &[
                "--signing-key",
                key,
                "--keyid",
                "org-2026",
                "--scope",
                "behavry",
                "--algorithm",
                "ES256",
            ],
        )
    }

    /// `[bundles.org]` from `url` polled every `delay` seconds, with its signing key.
    pub(crate) fn config(&self, url: &str, delay: u64) -> String {
        format!(
            "[bundles.org]\nurl = \"{url}\"\nmin_delay_secs = {delay}\nmax_delay_secs = {delay}\n\
             signing = {{ keyid = \"org-2026\", scope = \"behavry\" }}\n\n\
             [keys.org-2026]\nalgorithm = \"ES256\"\nkey_file = \"{}\"\n",
            self.public.display()
        )
    }
}

fn echo(w: &mut Wrapper, id: i64) -> (bool, String) {
    let reply = w.call(id, "echo", json!({"text": "hi"}));
    (is_error(&reply), text(&reply).to_owned())
}

fn revision(row: &Value) -> Option<&str> {
    row["bundles"]["org"]["revision"].as_str()
}

/// `behavry bundle status --json`, the one configured bundle.
fn status(home: &Home) -> Value {
    let out = home
        .command(&["bundle", "status", "--json"])
        .output()
        .expect("bundle status");
    assert!(
        out.status.success(),
        "bundle status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

/// Calls `echo` on every wrapper until each answers as `enforces` says; how long that took.
fn until_all(
    ws: &mut [Wrapper],
    id: &mut i64,
    what: &str,
    enforces: impl Fn(bool, &str) -> bool,
) -> Duration {
    let start = Instant::now();
    for (i, w) in ws.iter_mut().enumerate() {
        assert!(
            eventually(|| {
                *id += 1;
                let (denied, text) = echo(w, *id);
                enforces(denied, &text)
            }),
            "wrapper {i} never enforced {what}"
        );
    }
    start.elapsed()
}

#[test]
fn a_signed_bundle_governs_five_wrappers_edits_arrive_and_a_bad_publish_changes_nothing() {
    let nginx = Nginx::start();
    let keys = Keys::new();
    let home = Home::new();
    home.config(&keys.config(&nginx.url(), 1));
    nginx.publish(&keys.build("r1", ALLOW_ECHO, &keys.private), 1);

    let mut ws: Vec<Wrapper> = (0..5).map(|_| home.wrap_mock()).collect();
    for w in &mut ws {
        w.initialize();
    }
    let mut id = 0;
    until_all(&mut ws, &mut id, "r1", |denied, _| !denied);

    // An edit: re-built, renamed over the served file. Every wrapper enforces it within a poll
    // interval and a store check (1 s each here); the bound below only shows it arrives.
    nginx.publish(&keys.build("r2", DENY_ALL, &keys.private), 2);
    let took = until_all(&mut ws, &mut id, "r2", |denied, text| {
        denied && text == "behavry denied mock/echo: revision two"
    });
    eprintln!("r2 reached all five wrappers in {took:?}");
    assert!(took < Duration::from_secs(15), "r2 took {took:?}");

    // Each row names the revision it was decided under, and that revision decided it.
    let rows = home.log(&[]);
    assert!(rows.len() >= 10, "{} rows", rows.len());
    for row in &rows {
        match revision(row) {
            Some("r1") => assert_ne!(row["decision"], "deny", "{row}"),
            Some("r2") => assert_eq!(row["decision"], "deny", "{row}"),
            // Before r1 arrived there is no policy at all: denied, no revision.
            None => assert_eq!(row["decision"], "deny", "{row}"),
            other => panic!("unexpected revision {other:?}: {row}"),
        }
    }
    assert_eq!(rows.last().and_then(revision), Some("r2"));

    // A bad publish: r3 signed by a key the team never configured. Refused, one record, r2 stays.
    nginx.publish(&keys.build("r3", ALLOW_ECHO, &keys.stranger), 3);
    let failed = || {
        home.events()
            .into_iter()
            .filter(|e| e["kind"] == "bundle_activation_failed")
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(|| !failed().is_empty()),
        "no bundle_activation_failed record"
    );
    let record = &failed()[0];
    assert!(
        record.to_string().contains("signature"),
        "the record says why: {record}"
    );
    assert!(
        eventually(|| status(&home)["last_error"].as_str().is_some()),
        "status never showed the refusal"
    );
    for w in &mut ws {
        id += 1;
        assert_eq!(
            echo(w, id),
            (true, "behavry denied mock/echo: revision two".into())
        );
    }
    let rows = home.log(&[]);
    assert!(rows.iter().rev().take(5).all(|r| revision(r) == Some("r2")));
    let shown = status(&home);
    assert_eq!(shown["revision"], "r2", "{shown}");
    assert_eq!(shown["signer"], "org-2026", "{shown}");
    assert_eq!(shown["active"], true, "{shown}");
    assert_eq!(failed().len(), 1, "one bad publish, one record");

    // Fixed again, then: how often does the host hear from this machine? One wrapper holds the
    // lease and polls once a second; five pollers would make about 50 requests in 10 s.
    nginx.publish(&keys.build("r4", ALLOW_ECHO, &keys.private), 4);
    until_all(&mut ws, &mut id, "r4", |denied, _| !denied);
    let (before, _) = nginx.requests();
    std::thread::sleep(Duration::from_secs(10));
    let (after, not_modified) = nginx.requests();
    let polls = after - before;
    eprintln!(
        "nginx saw {polls} bundle requests in 10 s from five wrappers ({not_modified} 304s in all)"
    );
    assert!(
        (5..=13).contains(&polls),
        "{polls} requests in 10 s: one poller at 1 s intervals makes about 10"
    );
}

#[test]
fn status_and_fetch_show_and_drive_the_download() {
    let nginx = Nginx::start();
    let keys = Keys::new();
    let home = Home::new();
    // Hour-long intervals: a wrapper polls at start, then only `bundle fetch` downloads.
    home.config(&keys.config(&nginx.url(), 3600));
    let before = status(&home);
    assert_eq!(before["active"], false, "{before}");
    assert_eq!(before["revision"], Value::Null, "{before}");
    assert_eq!(before["inactive_reason"], "nothing downloaded yet");
    let out = home
        .command(&["bundle", "status"])
        .output()
        .expect("status");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("fetched at:   never"), "{shown}");

    // Nothing served yet: fetch fails, says why, exit 1.
    let out = home.command(&["bundle", "fetch"]).output().expect("fetch");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HTTP 404"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(status(&home)["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("404")));

    nginx.publish(&keys.build("r1", ALLOW_ECHO, &keys.private), 1);
    let out = home
        .command(&["bundle", "fetch", "org"])
        .output()
        .expect("fetch");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.starts_with("org: revision none -> r1 (sha256 "),
        "{said}"
    );
    assert!(said.contains("signer org-2026"), "{said}");
    let shown = status(&home);
    assert_eq!(shown["revision"], "r1", "{shown}");
    assert_eq!(shown["active"], true, "{shown}");
    assert_eq!(shown["last_error"], Value::Null, "{shown}");
    assert!(
        shown["etag"].as_str().is_some(),
        "nginx's ETag is kept: {shown}"
    );
    assert!(shown["fetched_at"].as_str().is_some(), "{shown}");

    // Again: a fetch by hand downloads in full (the stored archive could have been put there by
    // hand beside the host's ETag), and finds the same archive.
    let (gets, not_modified) = nginx.requests();
    let out = home.command(&["bundle", "fetch"]).output().expect("fetch");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("org: unchanged: revision r1"));
    assert_eq!(
        nginx.requests(),
        (gets + 1, not_modified),
        "a full download"
    );

    // A running wrapper holds the lease and will not poll for an hour: fetch takes the lease over
    // for its download, and the wrapper enforces what it stored.
    let mut w = home.wrap_mock();
    w.initialize();
    let mut id = 0;
    assert!(eventually(|| {
        id += 1;
        !echo(&mut w, id).0
    }));
    assert!(
        eventually(|| status(&home)["lease_holder"].as_i64() == Some(i64::from(w.child.id()))),
        "the wrapper holds the lease: {}",
        status(&home)
    );
    nginx.publish(&keys.build("r2", DENY_ALL, &keys.private), 2);
    let out = home.command(&["bundle", "fetch"]).output().expect("fetch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("org: revision r1 -> r2"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "took the polling lease over from pid {}",
            w.child.id()
        )),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        eventually(|| {
            id += 1;
            echo(&mut w, id).0
        }),
        "the wrapper never enforced the fetched r2"
    );
    assert_eq!(home.log(&[]).last().and_then(revision), Some("r2"));

    // A bad publish fetched by hand: refused, exit 1, r2 stays.
    nginx.publish(&keys.build("r3", ALLOW_ECHO, &keys.stranger), 3);
    let out = home.command(&["bundle", "fetch"]).output().expect("fetch");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused the archive") && err.contains("signature"),
        "{err}"
    );
    assert_eq!(status(&home)["revision"], "r2");
    id += 1;
    assert!(echo(&mut w, id).0, "r2 still in force");

    // An unknown name says which ones exist.
    let out = home
        .command(&["bundle", "fetch", "nope"])
        .output()
        .expect("fetch");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("configured: org"));
}

#[test]
fn the_same_bundle_from_a_registry_governs_a_wrapper() {
    let registry = Registry::start();
    let keys = Keys::new();
    let home = Home::new();
    let r1 = std::fs::read(keys.build("r1", ALLOW_ECHO, &keys.private)).expect("r1");
    registry.push("v1", &r1, behavry::oci::LAYER_TYPE);
    home.config(&keys.config(&registry.url("v1"), 1));
    let mut w = home.wrap_mock();
    w.initialize();
    let mut id = 0;
    assert!(
        eventually(|| {
            id += 1;
            !echo(&mut w, id).0
        }),
        "r1 from the registry never allowed echo"
    );
    assert_eq!(home.log(&[]).last().and_then(revision), Some("r1"));
    // A new push to the same tag arrives too.
    let r2 = std::fs::read(keys.build("r2", DENY_ALL, &keys.private)).expect("r2");
    registry.push("v1", &r2, behavry::oci::LAYER_TYPE);
    assert!(
        eventually(|| {
            id += 1;
            echo(&mut w, id) == (true, "behavry denied mock/echo: revision two".into())
        }),
        "r2 from the registry never denied"
    );
    let rows = home.log(&[]);
    assert_eq!(rows.last().and_then(revision), Some("r2"));
    assert!(rows
        .iter()
        .all(|r| revision(r).is_some() || r["decision"] == "deny"));
    let shown = status(&home);
    assert_eq!(shown["signer"], "org-2026", "{shown}");
    assert!(
        shown["etag"]
            .as_str()
            .is_some_and(|e| e.starts_with("sha256:")),
        "the layer digest is the ETag: {shown}"
    );
}

const SERVE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bundles/serve.py");

/// `tests/bundles/serve.py`: a bundle host that fails, stalls and long-polls on demand.
struct Serve {
    child: std::process::Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Serve {
    fn start() -> Serve {
        use std::io::BufRead;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new("python3")
            .arg(SERVE)
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the bundle host needs python3 on PATH (apt-get install -y python3)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("serve.py port");
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!("serve.py did not print its port (got {line:?}); is python3 installed?")
        });
        Serve { child, dir, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/bundle.tar.gz", self.port)
    }

    /// How the next requests are answered (see serve.py).
    fn mode(&self, control: Value) {
        let tmp = self.dir.path().join("mode.tmp");
        std::fs::write(&tmp, control.to_string()).expect("mode");
        std::fs::rename(&tmp, self.dir.path().join("mode.json")).expect("mode");
    }

    fn publish(&self, archive: &Path) {
        let tmp = self.dir.path().join("bundle.tmp");
        std::fs::copy(archive, &tmp).expect("copy archive");
        std::fs::rename(&tmp, self.dir.path().join("bundle.tar.gz")).expect("publish");
    }

    /// The requests answered so far (serve.py's log).
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("serve.py log line"))
            .collect()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A home whose bundle `org` comes from `serve`, with r1 already fetched by `bundle fetch`.
fn fetched_r1(serve: &Serve, keys: &Keys, extra: &str) -> Home {
    let home = Home::new();
    home.config(&format!("{}{extra}", keys.config(&serve.url(), 3600)));
    serve.publish(&keys.build("r1", ALLOW_ECHO, &keys.private));
    let out = home.command(&["bundle", "fetch"]).output().expect("fetch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    home
}

fn fetch(home: &Home) -> (Option<i32>, String) {
    let out = home.command(&["bundle", "fetch"]).output().expect("fetch");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn server_errors_back_off_and_keep_the_last_good_bundle() {
    let serve = Serve::start();
    let keys = Keys::new();
    let home = Home::new();
    home.config(&keys.config(&serve.url(), 60));
    serve.publish(&keys.build("r1", ALLOW_ECHO, &keys.private));
    assert_eq!(fetch(&home).0, Some(0));
    serve.mode(json!({"mode": "500"}));
    // The wrapper starts with the stored r1 and polls at once: 500s from then on.
    let mut w = home.wrap_mock();
    w.initialize();
    assert!(!echo(&mut w, 1).0, "the stored r1 decides at once");
    assert!(
        eventually(|| serve.requests().iter().any(|r| r["status"] == 500)),
        "the wrapper never polled"
    );
    std::thread::sleep(Duration::from_secs(9));
    let failed: Vec<Value> = serve
        .requests()
        .into_iter()
        .filter(|r| r["status"] == 500)
        .collect();
    let first = failed[0]["at"].as_f64().expect("at");
    let within = failed
        .iter()
        .filter(|r| r["at"].as_f64().is_some_and(|at| at < first + 8.0))
        .count();
    // Backing off 1, 2, 4 s (plus jitter) makes at most 4 in 8 s; a retry each second, 8.
    assert!(
        within <= 5,
        "{within} requests in 8 s of errors: {failed:?}"
    );
    // A poller sends an ETag only for an archive it saw the host serve: this one never did, so
    // every poll asks for the whole archive.
    assert!(
        failed.iter().all(|r| r["if_none_match"].is_null()),
        "{failed:?}"
    );
    // The last good bundle still decides, and status says what went wrong.
    assert!(!echo(&mut w, 2).0);
    assert_eq!(home.log(&[]).last().and_then(revision), Some("r1"));
    let shown = status(&home);
    assert_eq!(shown["revision"], "r1", "{shown}");
    assert!(
        shown["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 500")),
        "{shown}"
    );
}

#[test]
fn a_truncated_body_is_refused_and_the_last_good_bundle_stays() {
    let serve = Serve::start();
    let keys = Keys::new();
    let home = fetched_r1(&serve, &keys, "");
    serve.publish(&keys.build("r2", DENY_ALL, &keys.private));
    serve.mode(json!({"mode": "truncated"}));
    let (code, err) = fetch(&home);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("reading the archive failed"), "{err}");
    let shown = status(&home);
    assert_eq!(shown["revision"], "r1", "{shown}");
    assert_eq!(shown["active"], true, "{shown}");
}

#[test]
fn an_oversized_body_is_refused_at_max_bytes_without_reading_on() {
    let serve = Serve::start();
    let keys = Keys::new();
    let home = Home::new();
    home.config(
        &keys
            .config(&serve.url(), 3600)
            .replace("\n\n[keys", "\nmax_bytes = 65536\n\n[keys"),
    );
    serve.publish(&keys.build("r1", ALLOW_ECHO, &keys.private));
    serve.mode(json!({"mode": "oversized"}));
    let (code, err) = fetch(&home);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("larger than max_bytes (65536 bytes)"), "{err}");
    // The host offered 256 MiB; the fetcher hung up after its limit (socket buffers aside).
    assert!(
        eventually(|| serve.requests().iter().any(|r| r["hung_up"] == true)),
        "the client never hung up: {:?}",
        serve.requests()
    );
    let sent = serve.requests()[0]["sent"].as_u64().expect("sent");
    eprintln!("the host sent {sent} bytes before the fetcher hung up (max_bytes 65536)");
    assert!(sent < 32 << 20, "{sent} bytes were read");
    assert_eq!(status(&home)["revision"], Value::Null);
}

#[test]
fn a_slow_body_arrives_while_calls_keep_being_decided() {
    let serve = Serve::start();
    let keys = Keys::new();
    let home = fetched_r1(&serve, &keys, "");
    // r2 trickles in over 4 s, starting with the wrapper's first poll.
    serve.publish(&keys.build("r2", DENY_ALL, &keys.private));
    serve.mode(json!({"mode": "slow"}));
    let mut w = home.wrap_mock();
    w.initialize();
    assert!(
        eventually(|| serve.requests().iter().any(|r| r["status"] == "started")),
        "the slow download never started"
    );
    // Decided under r1 while the body is still on its way.
    for id in 1..=3 {
        assert!(!echo(&mut w, id).0, "r1 decides during the download");
    }
    // (The one finished download so far is `bundle fetch`'s r1.)
    let finished =
        |requests: Vec<Value>| requests.into_iter().filter(|r| r["status"] == 200).count();
    assert_eq!(
        finished(serve.requests()),
        1,
        "the body finished before the calls: {:?}",
        serve.requests()
    );
    let mut id = 3;
    assert!(
        eventually(|| {
            id += 1;
            echo(&mut w, id).0
        }),
        "r2 never arrived"
    );
    assert_eq!(home.log(&[]).last().and_then(revision), Some("r2"));
    // serve.py logs the request after its last pause.
    assert!(eventually(|| finished(serve.requests()) == 2));
    let done: Vec<Value> = serve
        .requests()
        .into_iter()
        .filter(|r| r["status"] == 200)
        .collect();
    assert_eq!(done[1]["hung_up"], false, "{done:?}");
}

#[test]
fn an_opa_bundle_server_is_long_polled() {
    let serve = Serve::start();
    let keys = Keys::new();
    serve.mode(json!({"mode": "ok", "bundle_server": true}));
    serve.publish(&keys.build("r1", ALLOW_ECHO, &keys.private));
    let home = Home::new();
    // Polls 60 s apart: only a held request can bring r2 within the bound below.
    home.config(
        &keys
            .config(&serve.url(), 60)
            .replace("\n\n[keys", "\nlong_poll_secs = 30\n\n[keys"),
    );
    let mut w = home.wrap_mock();
    w.initialize();
    let mut id = 0;
    assert!(
        eventually(|| {
            id += 1;
            !echo(&mut w, id).0
        }),
        "r1 never arrived"
    );
    let r1_etag = serve.requests()[0]["prefer"].clone();
    assert!(
        !r1_etag.to_string().contains("wait="),
        "no long poll before the server showed it speaks OPA's protocol: {r1_etag}"
    );
    serve.publish(&keys.build("r2", DENY_ALL, &keys.private));
    let start = Instant::now();
    assert!(
        eventually(|| {
            id += 1;
            echo(&mut w, id).0
        }),
        "r2 never arrived"
    );
    let took = start.elapsed();
    eprintln!("r2 arrived through the long poll in {took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    let requests = serve.requests();
    let held = &requests[1];
    assert_eq!(held["status"], 200, "{requests:?}");
    assert!(
        held["prefer"].to_string().contains("wait=30"),
        "{requests:?}"
    );
    assert!(held["if_none_match"].is_string(), "{requests:?}");
    assert_eq!(requests.len(), 2, "{requests:?}");
}
