//! OPA bundles against fixtures behavry does not make: `tests/bundles/make.py` lays them out as
//! `opa build -b` does and signs them with PyJWT + `cryptography` over digests from a Python
//! port of OPA's `hash.go`. Each refusal is checked through `behavry bundle verify` (the real
//! binary); a behavry-built bundle is checked by the Python side in turn.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::common::{Home, BIN};

const MAKE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bundles/make.py");

const POLICY: &str = "package team.authz\n\nallow if input.action.type == \"read\"\n\
    deny if input.resource.path in data.team.limits.blocked\n";
const TESTS: &str = "package team.authz_test\n\n\
    test_read if data.team.authz.allow with input as {\"action\": {\"type\": \"read\"}}\n\
    test_data if data.team.limits.max == 1.50\n";
/// Spacing, key order, a number written `1.50`, HTML characters and U+2028: the canonical form
/// (sorted keys, Go escaping, numbers as written) is what both sides must agree on.
const DATA: &str = "{ \"team\": {\"limits\": {\"max\": 1.50, \"blocked\": [\"/prod\"], \
    \"note\": \"<a&b>\\u2028\"}, \"a\": 1e2} }";

/// Runs make.py; a missing Python package fails the test saying what to install.
fn make(args: &[&str]) {
    let out = Command::new("python3")
        .arg(MAKE)
        .args(args)
        .output()
        .expect("python3 is needed: apt-get install -y python3");
    assert!(
        out.status.success(),
        "make.py {args:?} failed (pip install -r tests/requirements.txt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// A source tree with a manifest, a policy, its test and root data.
    fn new(manifest: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("team")).expect("fixture");
        std::fs::write(src.join(".manifest"), manifest).expect("fixture");
        std::fs::write(src.join("team/authz.rego"), POLICY).expect("fixture");
        std::fs::write(src.join("team/authz_test.rego"), TESTS).expect("fixture");
        std::fs::write(src.join("data.json"), DATA).expect("fixture");
        Fixture { dir }
    }

    fn standard() -> Fixture {
        Fixture::new(r#"{"revision": "r42", "roots": ["team"], "metadata": {"owner": "sec"}}"#)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn src(&self) -> String {
        self.path("src").display().to_string()
    }

    /// A bundle from make.py: `extra` are its flags after `SRC OUT`.
    fn bundle(&self, out: &str, extra: &[&str]) -> PathBuf {
        let path = self.path(out);
        let src = self.src();
        let mut args = vec!["bundle", src.as_str(), path.to_str().expect("UTF-8 path")];
        args.extend_from_slice(extra);
        make(&args);
        path
    }
}

/// One key pair per algorithm, made once (RSA generation is slow).
fn key(alg: &str) -> (PathBuf, PathBuf) {
    static KEYS: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        for alg in ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"] {
            let (private, public) = (
                dir.path().join(format!("{alg}.pem")),
                dir.path().join(format!("{alg}.pub")),
            );
            make(&[
                "keygen",
                alg,
                private.to_str().expect("UTF-8 path"),
                public.to_str().expect("UTF-8 path"),
            ]);
        }
        dir
    });
    (
        dir.path().join(format!("{alg}.pem")),
        dir.path().join(format!("{alg}.pub")),
    )
}

fn signed(alg: &str) -> Vec<String> {
    let (private, _) = key(alg);
    [
        "--key",
        private.to_str().expect("UTF-8 path"),
        "--alg",
        alg,
        "--keyid",
        "org",
        "--scope",
        "behavry",
    ]
    .map(String::from)
    .to_vec()
}

fn verify(home: &Home, bundle: &Path, alg: &str, scope: &str) -> Output {
    let (_, public) = key(alg);
    home.command(&[
        "bundle",
        "verify",
        bundle.to_str().expect("UTF-8 path"),
        "--key",
        public.to_str().expect("UTF-8 path"),
        "--algorithm",
        alg,
        "--keyid",
        "org",
        "--scope",
        scope,
    ])
    .output()
    .expect("behavry bundle verify")
}

fn refused(out: &Output, want: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "expected a refusal: {stderr}");
    assert!(
        stderr.contains("refused") && stderr.contains(want),
        "want {want:?} in: {stderr}"
    );
}

#[test]
fn a_signed_bundle_loads_for_every_algorithm() {
    let home = Home::new();
    let fixture = Fixture::standard();
    for alg in ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"] {
        let args = signed(alg);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let bundle = fixture.bundle(&format!("{alg}.tar.gz"), &args);
        let out = verify(&home, &bundle, alg, "behavry");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{alg}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for want in [
            "revision: r42",
            "roots:    \"team\"",
            "signer:   org (signature verified)",
            "team/authz.rego",
            "tests:    2 passed, 0 failed",
        ] {
            assert!(stdout.contains(want), "{alg}: want {want:?} in:\n{stdout}");
        }
    }
}

#[test]
fn bad_signatures_are_refused() {
    let home = Home::new();
    let fixture = Fixture::standard();
    let es = signed("ES256");
    let es: Vec<&str> = es.iter().map(String::as_str).collect();

    let unsigned = fixture.bundle("unsigned.tar.gz", &[]);
    refused(
        &verify(&home, &unsigned, "ES256", "behavry"),
        "the bundle is not signed",
    );

    let good = fixture.bundle("good.tar.gz", &es);
    refused(
        &verify(&home, &good, "ES384", "behavry"),
        "is signed with ES256, but [keys.org] is ES384",
    );
    refused(
        &verify(&home, &good, "ES256", "other-scope"),
        "scope is \"behavry\", but \"other-scope\" is required",
    );

    for (tamper, want) in [
        (
            "extra",
            "extra.rego: is not listed in the bundle's signature",
        ),
        (
            "drop",
            "data.json: is listed in the bundle's signature but missing",
        ),
        ("edit-data", "data.json: digest mismatch"),
        ("hs256", "HS256 is refused"),
        ("none", "unsigned (`alg: none`)"),
        ("two", "several signatures"),
    ] {
        let bundle = fixture.bundle(
            &format!("{tamper}.tar.gz"),
            &[es.as_slice(), &["--tamper", tamper]].concat(),
        );
        refused(&verify(&home, &bundle, "ES256", "behavry"), want);
    }
}

#[test]
fn a_bundle_signed_by_another_key_is_refused() {
    let home = Home::new();
    let fixture = Fixture::standard();
    let (_, real_public) = key("ES256");
    // Sign with a second P-256 key under the same key id.
    let other = tempfile::tempdir().expect("fixture");
    let (private, public) = (other.path().join("k.pem"), other.path().join("k.pub"));
    make(&[
        "keygen",
        "ES256",
        private.to_str().expect("UTF-8 path"),
        public.to_str().expect("UTF-8 path"),
    ]);
    let bundle = fixture.bundle(
        "forged.tar.gz",
        &[
            "--key",
            private.to_str().expect("UTF-8 path"),
            "--alg",
            "ES256",
            "--keyid",
            "org",
            "--scope",
            "behavry",
        ],
    );
    let out = home
        .command(&[
            "bundle",
            "verify",
            bundle.to_str().expect("UTF-8 path"),
            "--key",
            real_public.to_str().expect("UTF-8 path"),
            "--algorithm",
            "ES256",
            "--keyid",
            "org",
            "--scope",
            "behavry",
        ])
        .output()
        .expect("fixture");
    refused(&out, "does not verify with key `org`");
}

#[test]
fn unsafe_entries_are_refused() {
    let home = Home::new();
    let fixture = Fixture::standard();
    for (extra, want) in [
        (vec!["--raw", "../escape.rego=package team.x"], "`..`"),
        (
            vec!["--symlink", "team/link.rego"],
            "team/link.rego: is a link",
        ),
        (
            vec!["--duplicate", "team/authz.rego"],
            "team/authz.rego: appears twice",
        ),
    ] {
        let bundle = fixture.bundle("unsafe.tar.gz", &extra);
        let out = home
            .command(&["bundle", "verify", bundle.to_str().expect("UTF-8 path")])
            .output()
            .expect("fixture");
        refused(&out, want);
    }
}

#[test]
fn limits_apply_from_the_bundle_config() {
    let home = Home::new();
    let fixture = Fixture::standard();
    let bundle = fixture.bundle("plain.tar.gz", &[]);
    let packed = std::fs::metadata(&bundle).expect("fixture").len();
    for (limit, want) in [
        (format!("max_bytes = {}", packed - 1), "over max_bytes"),
        (
            "max_unpacked_bytes = 2048".to_string(),
            "max_unpacked_bytes = 2048",
        ),
        ("max_entries = 3".to_string(), "more than max_entries = 3"),
    ] {
        home.config(&format!(
            "[bundles.org]\nurl = \"https://policies.example.com/b.tar.gz\"\n{limit}\n"
        ));
        let out = home
            .command(&[
                "bundle",
                "verify",
                bundle.to_str().expect("UTF-8 path"),
                "--bundle",
                "org",
            ])
            .output()
            .expect("fixture");
        refused(&out, want);
    }
    home.config("[bundles.org]\nurl = \"https://policies.example.com/b.tar.gz\"\n");
    let out = home
        .command(&[
            "bundle",
            "verify",
            bundle.to_str().expect("UTF-8 path"),
            "--bundle",
            "org",
        ])
        .output()
        .expect("fixture");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_config_s_signing_and_keys_apply() {
    let home = Home::new();
    let fixture = Fixture::standard();
    let (_, public) = key("ES384");
    let args = signed("ES384");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let bundle = fixture.bundle("org.tar.gz", &args);
    home.config(&format!(
        "[bundles.org]\nurl = \"https://policies.example.com/b.tar.gz\"\nsigning = {{ keyid = \"org\", scope = \"behavry\" }}\n\n\
         [keys.org]\nalgorithm = \"ES384\"\nkey_file = \"{}\"\n",
        public.display()
    ));
    let out = home
        .command(&[
            "bundle",
            "verify",
            bundle.to_str().expect("UTF-8 path"),
            "--bundle",
            "org",
        ])
        .output()
        .expect("fixture");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unsigned = fixture.bundle("unsigned.tar.gz", &[]);
    let out = home
        .command(&[
            "bundle",
            "verify",
            unsigned.to_str().expect("UTF-8 path"),
            "--bundle",
            "org",
        ])
        .output()
        .expect("fixture");
    refused(&out, "requires a signature by key `org`");
}

#[test]
fn roots_and_rego_versions_are_enforced() {
    let home = Home::new();
    for (manifest, want) in [
        (
            r#"{"revision": "r", "roots": ["other"]}"#,
            "package `team.authz` is outside the manifest's roots",
        ),
        (
            r#"{"revision": "r", "roots": ["team/authz", "team/authz_test"]}"#,
            "data at `data.team.a` is outside",
        ),
        (
            r#"{"revision": "r", "roots": ["team", "team/sub"]}"#,
            "roots \"team\" and \"team/sub\" overlap",
        ),
        (
            r#"{"revision": "r", "roots": ["team"], "rego_version": 0}"#,
            "`rego_version: 0` asks for Rego v0",
        ),
        (
            r#"{"revision": "r", "roots": ["team"], "file_rego_versions": {"team/*.rego": 0}}"#,
            "marks \"team/*.rego\" as Rego v0",
        ),
    ] {
        let fixture = Fixture::new(manifest);
        // make.py keeps a rego_version the manifest sets; without one it writes 1, as opa build does.
        let bundle = fixture.bundle("b.tar.gz", &[]);
        let out = home
            .command(&["bundle", "verify", bundle.to_str().expect("UTF-8 path")])
            .output()
            .expect("fixture");
        refused(&out, want);
    }
}

#[test]
fn overlapping_bundles_are_refused() {
    let load = |manifest: &str, name: &str| {
        let fixture = Fixture::new(manifest);
        let path = fixture.bundle("b.tar.gz", &[]);
        let cfg: behavry::team::BundleConfig =
            serde_json::from_value(serde_json::json!({"url": ""})).expect("fixture");
        behavry::bundle::load(
            &std::fs::read(path).expect("fixture"),
            name,
            &cfg,
            &Default::default(),
        )
        .expect("loads")
    };
    let team = load(r#"{"roots": ["team"]}"#, "org");
    let nested = load(
        r#"{"roots": ["team/authz", "team/authz_test", "team/limits", "team/a"]}"#,
        "sub",
    );
    let e = behavry::bundle::check_disjoint(&[&team, &nested]).unwrap_err();
    assert_eq!(e.kind, behavry::bundle::ErrorKind::Overlap);
    assert!(
        e.message
            .contains("bundles `org` (root \"team\") and `sub`"),
        "{e}"
    );
    assert!(behavry::bundle::check_disjoint(&[&team]).is_ok());
}

#[test]
fn a_behavry_built_bundle_verifies_in_python_and_in_behavry() {
    let home = Home::new();
    let fixture = Fixture::standard();
    for alg in ["RS256", "PS256", "ES256", "ES384"] {
        let (private, public) = key(alg);
        let out_path = fixture.path(&format!("built-{alg}.tar.gz"));
        let out = Command::new(BIN)
            .args([
                "bundle",
                "build",
                &fixture.src(),
                "-o",
                out_path.to_str().expect("UTF-8 path"),
                "--revision",
                "built-1",
                "--signing-key",
                private.to_str().expect("UTF-8 path"),
                "--keyid",
                "org",
                "--scope",
                "behavry",
                "--algorithm",
                alg,
            ])
            .env("BEHAVRY_HOME", home.path())
            .output()
            .expect("fixture");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        make(&[
            "check",
            out_path.to_str().expect("UTF-8 path"),
            public.to_str().expect("UTF-8 path"),
            alg,
            "--scope",
            "behavry",
        ]);
        let out = verify(&home, &out_path, alg, "behavry");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("revision: built-1"),
            "{stdout}"
        );
        assert!(stdout.contains("tests:    2 passed, 0 failed"), "{stdout}");
    }
}

#[test]
fn build_is_deterministic_unsigned() {
    let fixture = Fixture::standard();
    let build = |out: &str| {
        let path = fixture.path(out);
        let status = Command::new(BIN)
            .args([
                "bundle",
                "build",
                &fixture.src(),
                "-o",
                path.to_str().expect("UTF-8 path"),
            ])
            .status()
            .expect("fixture");
        assert!(status.success());
        std::fs::read(path).expect("fixture")
    };
    assert_eq!(build("one.tar.gz"), build("two.tar.gz"));
}
