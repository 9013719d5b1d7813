//! Team bundles pulled from a real web server (Debian's nginx, with its own ETags and 304s) by
//! real wrappers: new revisions arrive, bad ones change nothing but a logged failure, a required
//! bundle not downloaded yet denies, and several wrappers share one download.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::json;

use crate::common::{chmod, eventually, is_error, text, Home, Wrapper};

/// nginx serving one directory on 127.0.0.1, with its access log.
pub(crate) struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Nginx {
    pub(crate) fn start() -> Nginx {
        let binary = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is not installed: `apt-get install -y nginx` (as .ci/run does)");
        let dir = tempfile::tempdir().expect("tempdir");
        // Workers may run as another user: they must be able to read what they serve.
        chmod(dir.path(), 0o755);
        std::fs::create_dir(dir.path().join("www")).expect("www");
        chmod(&dir.path().join("www"), 0o755);
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let d = dir.path().display();
        let conf = format!(
            "user root;\ndaemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{}}\nhttp {{\n access_log {d}/access.log;\n client_body_temp_path {d}/tmp;\n\
             proxy_temp_path {d}/tmp;\n fastcgi_temp_path {d}/tmp;\n uwsgi_temp_path {d}/tmp;\n\
             scgi_temp_path {d}/tmp;\n server {{ listen 127.0.0.1:{port}; root {d}/www; }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("nginx.conf");
        let child = Command::new(binary)
            .args([
                "-e",
                &format!("{d}/error.log"),
                "-c",
                &format!("{d}/nginx.conf"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let nginx = Nginx { child, dir, port };
        assert!(
            eventually(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "nginx did not start: {}",
            std::fs::read_to_string(nginx.dir.path().join("error.log")).unwrap_or_default()
        );
        nginx
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/bundle.tar.gz", self.port)
    }

    /// Serves `archive` in place of the last one (renamed over it, with a newer mtime so
    /// nginx's ETag changes even when the size does not).
    pub(crate) fn publish(&self, archive: &Path, generation: u64) {
        let www = self.dir.path().join("www");
        let tmp = www.join(".bundle.tmp");
        std::fs::copy(archive, &tmp).expect("copy archive");
        chmod(&tmp, 0o644);
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + generation);
        std::fs::File::options()
            .write(true)
            .open(&tmp)
            .and_then(|f| f.set_modified(mtime))
            .expect("set mtime");
        std::fs::rename(&tmp, www.join("bundle.tar.gz")).expect("publish");
    }

    /// GET requests for the bundle so far, and how many were answered 304.
    pub(crate) fn requests(&self) -> (usize, usize) {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        let gets: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("GET /bundle.tar.gz"))
            .collect();
        let not_modified = gets.iter().filter(|l| l.contains("\" 304 ")).count();
        (gets.len(), not_modified)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bundle of one policy, laid out as `opa build` writes one (`.manifest` with the revision
/// and root `behavry`), packed with tar. (`behavry bundle build` would do, once it packs
/// OPA's leading-`/` names.)
fn build(dir: &Path, revision: &str, rego: &str) -> PathBuf {
    let src = dir.join(format!("src-{revision}"));
    std::fs::create_dir_all(&src).expect("bundle source dir");
    std::fs::write(src.join("policy.rego"), rego).expect("policy");
    std::fs::write(
        src.join(".manifest"),
        format!("{{\"revision\":\"{revision}\",\"roots\":[\"behavry\"]}}"),
    )
    .expect("manifest");
    let out = dir.join(format!("{revision}.tar.gz"));
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(&src)
        .args(["policy.rego", ".manifest"])
        .status()
        .expect("tar");
    assert!(status.success());
    out
}

const ALLOW_ECHO: &str =
    "package behavry.authz\nimport rego.v1\nallow if input.action.tool == \"mock/echo\"\n";
const DENY_ALL: &str =
    "package behavry.authz\nimport rego.v1\ndeny := true\nreasons contains \"revision two\"\n";
const BROKEN: &str = "package behavry.authz\nallow if {\n";

fn config(url: &str, extra: &str) -> String {
    format!("[bundles.org]\nurl = \"{url}\"\nmin_delay_secs = 1\nmax_delay_secs = 1\n{extra}")
}

/// The revision recorded with the last decision row.
fn last_revision(home: &Home) -> Option<String> {
    let rows = home.log(&[]);
    let row = rows.last()?;
    row["bundles"]["org"]["revision"]
        .as_str()
        .map(str::to_owned)
}

fn echo(w: &mut Wrapper, id: i64) -> (bool, String) {
    let reply = w.call(id, "echo", json!({"text": "hi"}));
    (is_error(&reply), text(&reply).to_owned())
}

#[test]
fn revisions_arrive_bad_ones_change_nothing_and_five_wrappers_share_one_download() {
    let nginx = Nginx::start();
    let scratch = tempfile::tempdir().expect("tempdir");
    let home = Home::new();
    home.config(&config(&nginx.url(), ""));
    nginx.publish(&build(scratch.path(), "r1", ALLOW_ECHO), 1);

    let mut w = home.wrap_mock();
    w.initialize();
    // r1 arrives (downloaded at start, a poll each second after).
    let mut id = 0;
    assert!(
        eventually(|| {
            id += 1;
            !echo(&mut w, id).0
        }),
        "revision r1 never allowed echo"
    );
    assert_eq!(last_revision(&home).as_deref(), Some("r1"));
    // Unchanged: nginx answers 304 to the next polls.
    assert!(
        eventually(|| nginx.requests().1 >= 2),
        "no 304: {:?}",
        nginx.requests()
    );

    // A new revision.
    nginx.publish(&build(scratch.path(), "r2", DENY_ALL), 2);
    assert!(
        eventually(|| {
            id += 1;
            echo(&mut w, id) == (true, "behavry denied mock/echo: revision two".into())
        }),
        "revision r2 never denied"
    );
    assert_eq!(last_revision(&home).as_deref(), Some("r2"));

    // A broken publish: refused, logged, and r2 stays in force.
    nginx.publish(&build(scratch.path(), "r3", BROKEN), 3);
    assert!(
        eventually(|| home
            .events()
            .iter()
            .any(|e| e["kind"] == "bundle_activation_failed")),
        "no bundle_activation_failed event: {:?}",
        home.events()
    );
    id += 1;
    assert!(echo(&mut w, id).0);
    assert_eq!(last_revision(&home).as_deref(), Some("r2"));

    // Fixed.
    nginx.publish(&build(scratch.path(), "r4", ALLOW_ECHO), 4);
    assert!(
        eventually(|| {
            id += 1;
            !echo(&mut w, id).0
        }),
        "revision r4 never allowed echo"
    );
    assert_eq!(last_revision(&home).as_deref(), Some("r4"));
    let activated: Vec<String> = home
        .events()
        .iter()
        .filter(|e| e["kind"] == "bundle_activated")
        .filter_map(|e| e["detail"]["revision"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(activated, ["r1", "r2", "r4"]);

    // Five wrappers on one database: one of them polls. Over a few poll intervals the host sees
    // about one request per interval, not five.
    let mut more: Vec<Wrapper> = (0..4).map(|_| home.wrap_mock()).collect();
    for w in &mut more {
        w.initialize();
    }
    let (before, _) = nginx.requests();
    std::thread::sleep(Duration::from_secs(6));
    let (after, _) = nginx.requests();
    // Six intervals of 1 s (plus the request in flight at each edge); five pollers would make 30.
    assert!(after - before <= 9, "{} requests in 6 s", after - before);
    for w in &mut more {
        id += 1;
        assert!(!echo(w, id).0, "every wrapper enforces r4");
    }
}

#[test]
fn a_required_bundle_not_downloaded_yet_denies_with_the_reason() {
    // Nothing listens on this port.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let home = Home::with_policy(
        "allow.rego",
        "package behavry.authz\nimport rego.v1\nallow := true\n",
    );
    home.config(&config(
        &format!("http://127.0.0.1:{port}/bundle.tar.gz"),
        "required = true\n",
    ));
    let mut w = home.wrap_mock();
    w.initialize();
    let mut id = 0;
    assert!(
        eventually(|| {
            id += 1;
            let (denied, text) = echo(&mut w, id);
            denied
                && text
                    .contains("the team policy bundle is not downloaded yet: GET http://127.0.0.1:")
        }),
        "the deny never named the download error"
    );
}

#[test]
fn tighten_lets_local_files_restrict_never_widen() {
    let nginx = Nginx::start();
    let scratch = tempfile::tempdir().expect("tempdir");
    nginx.publish(&build(scratch.path(), "r1", ALLOW_ECHO), 1);
    // A local allow-everything (it must not widen) and a local deny of one argument.
    let home = Home::with_policy(
        "local.rego",
        "package behavry.authz\nimport rego.v1\nallow := true\ndeny if input.action.arguments.text == \"secret\"\n",
    );
    home.config(&config(&nginx.url(), ""));
    let mut w = home.wrap_mock();
    w.initialize();
    // Until r1 is in force the local files decide (the bundle is not required): wait for a
    // decision made under r1.
    let mut id = 0;
    assert!(
        eventually(|| {
            id += 1;
            !echo(&mut w, id).0 && last_revision(&home).as_deref() == Some("r1")
        }),
        "r1 never allowed echo"
    );
    let reply = w.call(100, "echo", json!({"text": "secret"}));
    assert!(is_error(&reply), "a local deny counts");
    let reply = w.call(101, "add", json!({"a": 1, "b": 2}));
    assert!(is_error(&reply), "a local allow does not widen the bundle");
}

/// The store is the user's file, so an agent can put an older archive in it (here r1, once the
/// host serves r2) and leave the host's current ETag beside it. A 304 must not keep that archive:
/// the poller asks "not modified?" only about an archive it saw the host serve itself.
#[test]
fn an_archive_put_back_in_the_store_is_replaced_by_the_hosts() {
    let nginx = Nginx::start();
    let scratch = tempfile::tempdir().expect("tempdir");
    let home = Home::new();
    home.config(&config(&nginx.url(), ""));
    let r1 = build(scratch.path(), "r1", ALLOW_ECHO);
    nginx.publish(&build(scratch.path(), "r2", DENY_ALL), 2);
    let denied_by_r2 = |w: &mut Wrapper, id: i64| {
        echo(w, id) == (true, "behavry denied mock/echo: revision two".into())
    };
    let mut id = 0;
    {
        let mut w = home.wrap_mock();
        w.initialize();
        assert!(
            eventually(|| {
                id += 1;
                denied_by_r2(&mut w, id)
            }),
            "r2 never arrived"
        );
    }
    let old = std::fs::read(&r1).expect("r1");
    let db = rusqlite::Connection::open(home.path().join("behavry.db")).expect("db");
    let changed = db
        .execute(
            "UPDATE bundles SET archive = ?1, sha256 = ?2, revision = 'r1' WHERE name = 'org'",
            rusqlite::params![old, hex_sha256(&old)],
        )
        .expect("put r1 back");
    assert_eq!(changed, 1);
    drop(db);

    let mut w = home.wrap_mock();
    w.initialize();
    assert!(
        eventually(|| {
            id += 1;
            denied_by_r2(&mut w, id)
        }),
        "the archive put back in the store stayed in force: {:?}",
        nginx.requests()
    );
    assert_eq!(last_revision(&home).as_deref(), Some("r2"));
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
