//! OCI pulls against a real registry: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1,
//! bundles pushed by PyPI `oras` (pinned in `tests/requirements.txt`) with OPA's layer type.
//! Both are installed by `.ci/run`; a missing one fails the test saying what to install.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use behavry::oci::{pull, OciError, PullOptions, Pulled, LAYER_TYPE};
use sha2::Digest as _;

/// A `docker-registry serve` on a free loopback port, stopped when dropped.
pub(crate) struct Registry {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Registry {
    pub(crate) fn start() -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        // A free port: the registry reports the configured address, not the one it bound.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {addr}\n  secret: behavry-tests\nlog:\n  level: error\n",
                dir.path().join("data").display()
            ),
        )
        .expect("write registry config");
        // The access log (stdout) tells which blobs were downloaded.
        let log = std::fs::File::create(dir.path().join("access.log")).expect("access log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run docker-registry ({e}): install it with `apt-get install docker-registry`")
            });
        let registry = Registry { child, addr, dir };
        assert!(
            crate::common::eventually(|| std::net::TcpStream::connect(&registry.addr).is_ok()),
            "docker-registry never listened on {}",
            registry.addr
        );
        registry
    }

    pub(crate) fn url(&self, tag: &str) -> String {
        format!("oci://{}/behavry/bundle:{tag}", self.addr)
    }

    /// How many times a blob was downloaded (`oras push` only asks with HEAD).
    fn blob_downloads(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .matches("\"GET /v2/behavry/bundle/blobs/")
            .count()
    }

    /// Where the registry keeps the blob `digest` (distribution's filesystem layout).
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Pushes `bytes` as the one layer of `tag`, with `media_type`, through `oras`.
    pub(crate) fn push(&self, tag: &str, bytes: &[u8], media_type: &str) {
        let file = self.dir.path().join("bundle.tar.gz");
        std::fs::write(&file, bytes).expect("write bundle");
        let script = "import sys, oras.client\n\
            host, target, layer = sys.argv[1:]\n\
            c = oras.client.OrasClient(hostname=host, insecure=True)\n\
            r = c.push(target=target, files=[layer], disable_path_validation=True)\n\
            sys.exit(0 if r.status_code == 201 else 1)\n";
        let out = Command::new("python3")
            .args(["-c", script, &self.addr])
            .arg(format!("{}/behavry/bundle:{tag}", self.addr))
            .arg(format!("bundle.tar.gz:{media_type}"))
            .current_dir(self.dir.path())
            .output()
            .expect("the OCI tests need python3 on PATH");
        assert!(
            out.status.success(),
            "oras push failed (install the test packages: `pip install -r tests/requirements.txt`): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gzip tar holding one policy file, different for each `revision`.
fn bundle(revision: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("policy.rego"),
        format!("package behavry.authz\n# {revision}\n"),
    )
    .expect("write policy");
    let archive: PathBuf = dir.path().join("b.tar.gz");
    let status = Command::new("tar")
        .args(["czf"])
        .arg(&archive)
        .args(["-C"])
        .arg(dir.path())
        .arg("policy.rego")
        .status()
        .expect("tar");
    assert!(status.success());
    std::fs::read(&archive).expect("read archive")
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

fn opts() -> PullOptions {
    PullOptions {
        max_bytes: 1024 * 1024,
        ..PullOptions::default()
    }
}

#[test]
fn pulls_the_bundle_layer_and_uses_its_digest_as_the_etag() {
    let registry = Registry::start();
    let first = bundle("one");
    registry.push("latest", &first, LAYER_TYPE);
    let url = registry.url("latest");

    let pulled = pull(&url, None, &opts()).expect("pull");
    assert_eq!(
        pulled,
        Pulled::Archive {
            bytes: first.clone(),
            digest: digest(&first)
        }
    );
    assert_eq!(registry.blob_downloads(), 1);
    // Unchanged: not modified, and no blob is fetched.
    assert_eq!(
        pull(&url, Some(&digest(&first)), &opts()).expect("pull"),
        Pulled::NotModified
    );
    assert_eq!(registry.blob_downloads(), 1);
    // A new push under the same tag: the new layer, the new digest.
    let second = bundle("two");
    registry.push("latest", &second, LAYER_TYPE);
    match pull(&url, Some(&digest(&first)), &opts()).expect("pull") {
        Pulled::Archive { bytes, digest: d } => {
            assert_eq!(bytes, second);
            assert_eq!(d, digest(&second));
        }
        Pulled::NotModified => panic!("a new push was taken for the old one"),
    }
}

#[test]
fn refuses_a_wrong_layer_type_an_oversized_layer_and_a_missing_tag() {
    let registry = Registry::start();
    let archive = bundle("one");
    registry.push(
        "plain-tar",
        &archive,
        "application/vnd.oci.image.layer.v1.tar",
    );
    let err = pull(&registry.url("plain-tar"), None, &opts()).unwrap_err();
    assert!(matches!(err, OciError::Manifest { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("has no application/vnd.oci.image.layer.v1.tar+gzip layer")
            && err
                .to_string()
                .contains("found: application/vnd.oci.image.layer.v1.tar"),
        "{err}"
    );

    registry.push("big", &archive, LAYER_TYPE);
    let small = PullOptions {
        max_bytes: archive.len() as u64 - 1,
        ..opts()
    };
    let err = pull(&registry.url("big"), None, &small).unwrap_err();
    assert!(matches!(err, OciError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("max_bytes"), "{err}");

    let err = pull(&registry.url("nope"), None, &opts()).unwrap_err();
    assert!(matches!(err, OciError::Status { status: 404, .. }), "{err}");
}

#[test]
fn refuses_a_blob_that_does_not_match_its_digest() {
    let registry = Registry::start();
    let archive = bundle("one");
    registry.push("latest", &archive, LAYER_TYPE);
    // The registry serves what its storage holds: change one byte behind its back.
    let stored = registry.blob_file(&digest(&archive));
    let mut bytes = std::fs::read(&stored).expect("read stored blob");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&stored, &bytes).expect("tamper");
    let err = pull(&registry.url("latest"), None, &opts()).unwrap_err();
    assert!(matches!(err, OciError::Digest { .. }), "{err}");
    assert!(err.to_string().contains(&digest(&bytes)), "{err}");
}

/// A registry that wants a bearer token (Docker's token protocol): every `/v2/` request without
/// `Bearer issued` gets a 401 challenge naming `/token`, which hands out `issued` only to a client
/// presenting `Bearer team-secret` for the right service and scope. Prints its port first.
const TOKEN_REGISTRY: &str = r#"
import hashlib, http.server, json, sys
blob = open(sys.argv[1], "rb").read()
digest = "sha256:" + hashlib.sha256(blob).hexdigest()
manifest = json.dumps({"schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
               "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "size": len(blob), "digest": digest}]}).encode()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def send(self, code, body, headers={}):
        self.send_response(code)
        for k, v in headers.items(): self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        auth = self.headers.get("Authorization")
        if self.path.startswith("/token?"):
            want = "/token?scope=repository%3Abehavry%2Fbundle%3Apull&service=fake"
            if self.path != want or auth != "Bearer team-secret":
                return self.send(401, b"{}")
            return self.send(200, b'{"token": "issued"}')
        if auth != "Bearer issued":
            realm = 'Bearer realm="http://%s/token",service="fake",scope="repository:behavry/bundle:pull"' % self.headers["Host"]
            return self.send(401, b"{}", {"WWW-Authenticate": realm})
        if self.path == "/v2/behavry/bundle/manifests/latest":
            return self.send(200, manifest, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        if self.path == "/v2/behavry/bundle/blobs/" + digest:
            return self.send(200, blob)
        self.send(404, b"{}")
server = http.server.HTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

#[test]
fn answers_a_bearer_challenge_with_a_token_from_the_realm() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = bundle("one");
    let file = dir.path().join("bundle.tar.gz");
    std::fs::write(&file, &archive).expect("write bundle");
    let mut server = Command::new("python3")
        .args(["-c", TOKEN_REGISTRY])
        .arg(&file)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the OCI tests need python3 on PATH");
    let mut port = String::new();
    if let Some(out) = server.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut port);
    }
    let url = format!("oci://127.0.0.1:{}/behavry/bundle:latest", port.trim());
    let with_token = PullOptions {
        token: Some("team-secret".into()),
        ..opts()
    };
    let pulled = pull(&url, None, &with_token);
    let without = pull(&url, None, &opts());
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(
        pulled.expect("pull with the team's token"),
        Pulled::Archive {
            digest: digest(&archive),
            bytes: archive
        }
    );
    let err = without.unwrap_err();
    assert!(matches!(err, OciError::Status { status: 401, .. }), "{err}");
    assert!(err.to_string().contains("check token_file"), "{err}");
}
