//! Loads `.rego` files, compiles them once, and decides requests on a cheap clone of the engine.
//!
//! Rules live in `package behavry.authz`: `allow`, `deny`, `escalate` (booleans) and an optional set
//! `reasons`. Default deny; deny beats escalate beats allow. A policy set that fails to compile still
//! loads (so non-governed traffic flows) but denies every governed call with the compile error.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The package users write their rules in.
pub const PACKAGE: &str = "data.behavry.authz";

/// Reads the user's rules through a package of our own, so that a policy set that omits a rule
/// (or has no rules at all) reads as `false`/empty instead of an evaluation error, and users can
/// still write their own `default allow := false` without a conflict.
const DECISION_MODULE: &str = r#"
package behavry.decision

import rego.v1

default allow := false
default deny := false
default escalate := false

allow if data.behavry.authz.allow == true
deny if data.behavry.authz.deny == true
escalate if data.behavry.authz.escalate == true

reasons contains r if {
	some x in data.behavry.authz.reasons
	r := sprintf("%v", [x])
}

result := {"allow": allow, "deny": deny, "escalate": escalate, "reasons": reasons}
"#;

const DECISION_RULE: &str = "data.behavry.decision.result";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    Escalate,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Escalate => "escalate",
        }
    }

    /// Default deny; deny beats escalate beats allow.
    pub fn combine(allow: bool, deny: bool, escalate: bool) -> Decision {
        match (deny, escalate, allow) {
            (true, _, _) => Decision::Deny,
            (false, true, _) => Decision::Escalate,
            (false, false, true) => Decision::Allow,
            (false, false, false) => Decision::Deny,
        }
    }
}

/// The outcome of one evaluation: the decision, which rules held, and the reasons to show.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub decision: Decision,
    pub allow: bool,
    pub deny: bool,
    pub escalate: bool,
    pub reasons: Vec<String>,
}

impl Verdict {
    /// Combines two verdicts about one call: each rule holds if it held for either, and the
    /// reasons of both are kept.
    pub fn strictest(self, other: Verdict) -> Verdict {
        let (allow, deny, escalate) = (
            self.allow && other.allow,
            self.deny || other.deny,
            self.escalate || other.escalate,
        );
        let mut reasons = self.reasons;
        reasons.extend(other.reasons);
        reasons.sort();
        reasons.dedup();
        Verdict {
            // Every path must be allowed for the call to be allowed.
            decision: Decision::combine(allow, deny, escalate),
            allow,
            deny,
            escalate,
            reasons,
        }
    }

    /// A deny that did not come from the rules (compile error, evaluation error, store failure).
    pub fn fail_closed(reason: impl Into<String>) -> Verdict {
        Verdict {
            decision: Decision::Deny,
            allow: false,
            deny: true,
            escalate: false,
            reasons: vec![reason.into()],
        }
    }
}

/// A loaded set of policy files: compiled, or the error that stopped it compiling.
#[derive(Clone)]
pub struct PolicySet {
    engine: Result<regorus::Engine, String>,
    /// SHA-256 over every file's path and contents, recorded with each decision.
    pub hash: String,
    pub files: Vec<PathBuf>,
}

impl PolicySet {
    /// Loads every `.rego` file under `dirs` (recursively, in sorted order). Never fails: a set that
    /// does not compile is returned with its error, and denies everything it is asked about.
    pub fn load(dirs: &[PathBuf], eval_timeout: Duration) -> PolicySet {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for dir in dirs {
            if let Err(e) = collect_rego(dir, &mut files) {
                errors.push(format!("{}: {e}", dir.display()));
            }
        }
        files.sort();
        files.dedup();
        let mut sources = Vec::new();
        for file in &files {
            match std::fs::read_to_string(file) {
                Ok(text) => sources.push((file.display().to_string(), text)),
                Err(e) => errors.push(format!("{}: {e}", file.display())),
            }
        }
        let hash = hash_sources(&sources);
        let engine = if errors.is_empty() {
            compile(&sources, eval_timeout)
        } else {
            Err(errors.join("\n"))
        };
        PolicySet {
            engine,
            hash,
            files,
        }
    }

    /// Compiles policies given as (name, text) pairs; for tests and tools that do not read files.
    pub fn from_sources(sources: &[(String, String)], eval_timeout: Duration) -> PolicySet {
        PolicySet {
            engine: compile(sources, eval_timeout),
            hash: hash_sources(sources),
            files: Vec::new(),
        }
    }

    /// The compile error, when the set is unusable.
    pub fn error(&self) -> Option<&str> {
        self.engine.as_ref().err().map(String::as_str)
    }

    /// Decides one input. Any error (compile, evaluation, timeout, malformed result) is a deny with
    /// the error as its reason.
    ///
    /// A call that names several paths (`move_file {source, destination}`) is evaluated once per
    /// path, with `resource.path` set to each, and the strictest verdict wins: a rule written
    /// about one path (`startswith(input.resource.path, "/prod/")`) then holds for all of them.
    pub fn decide(&self, input: &Value) -> Verdict {
        let engine = match &self.engine {
            Ok(engine) => engine,
            Err(e) => return Verdict::fail_closed(format!("policies failed to compile: {e}")),
        };
        let decide_one = |input: &Value| {
            evaluate(engine.clone(), input)
                .unwrap_or_else(|e| Verdict::fail_closed(format!("policy evaluation failed: {e}")))
        };
        let mut paths: Vec<&Value> = input
            .pointer("/resource/paths")
            .and_then(Value::as_array)
            .map(|p| p.iter().collect())
            .unwrap_or_default();
        paths.sort_by_key(|p| p.as_str());
        paths.dedup();
        if paths.len() < 2 {
            return decide_one(input);
        }
        let mut per_path = input.clone();
        let verdicts = paths.into_iter().map(|path| {
            per_path["resource"]["path"] = path.clone();
            decide_one(&per_path)
        });
        verdicts
            .reduce(Verdict::strictest)
            .unwrap_or_else(|| decide_one(input))
    }
}

fn collect_rego(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // A policy dir that does not exist yet holds no policies; default deny covers it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            collect_rego(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rego") {
            out.push(path);
        }
    }
    Ok(())
}

fn hash_sources(sources: &[(String, String)]) -> String {
    let mut hasher = Sha256::new();
    for (name, text) in sources {
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    let digest = hasher.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn compile(
    sources: &[(String, String)],
    eval_timeout: Duration,
) -> Result<regorus::Engine, String> {
    let mut engine = regorus::Engine::new();
    // OPA semantics: a builtin given the wrong type is undefined, not an error.
    engine.set_strict_builtin_errors(false);
    engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
        limit: eval_timeout,
        check_interval: NonZeroU32::MIN.saturating_add(63),
    });
    engine
        .add_policy("behavry/decision.rego".into(), DECISION_MODULE.into())
        .map_err(|e| format!("internal decision module: {e}"))?;
    for (name, text) in sources {
        engine
            .add_policy(name.clone(), text.clone())
            .map_err(|e| e.to_string())?;
    }
    // regorus finishes compiling (rule conflicts, unsafe variables) at the first evaluation; do it
    // now so a broken set is reported at load, not at the first tool call. It is done on the
    // engine that is kept, so every per-call clone starts out prepared instead of re-analysing.
    evaluate_raw(&mut engine, &serde_json::json!({})).map_err(|e| e.to_string())?;
    Ok(engine)
}

fn evaluate_raw(engine: &mut regorus::Engine, input: &Value) -> anyhow::Result<Value> {
    engine.set_input(regorus::Value::from(input.clone()));
    let result = engine.eval_rule(DECISION_RULE.into())?;
    Ok(serde_json::from_str(&result.to_json_str()?)?)
}

fn evaluate(mut engine: regorus::Engine, input: &Value) -> anyhow::Result<Verdict> {
    let result = evaluate_raw(&mut engine, input)?;
    let flag = |key: &str| result.get(key).and_then(Value::as_bool).unwrap_or(false);
    let (allow, deny, escalate) = (flag("allow"), flag("deny"), flag("escalate"));
    let mut reasons: Vec<String> = result
        .get("reasons")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    reasons.sort();
    Ok(Verdict {
        decision: Decision::combine(allow, deny, escalate),
        allow,
        deny,
        escalate,
        reasons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SEED: &str = include_str!("../../policies/examples/seed.rego");
    const TIMEOUT: Duration = Duration::from_millis(500);

    fn set(text: &str) -> PolicySet {
        PolicySet::from_sources(&[("p.rego".into(), text.into())], TIMEOUT)
    }

    fn input(role: &str, ty: &str, path: &str) -> Value {
        json!({"agent": {"role": role}, "action": {"type": ty}, "resource": {"path": path}})
    }

    #[test]
    fn precedence_table() {
        use Decision::*;
        let table = [
            (false, false, false, Deny),
            (true, false, false, Allow),
            (false, true, false, Deny),
            (false, false, true, Escalate),
            (true, true, false, Deny),
            (true, false, true, Escalate),
            (false, true, true, Deny),
            (true, true, true, Deny),
        ];
        for (allow, deny, escalate, want) in table {
            assert_eq!(
                Decision::combine(allow, deny, escalate),
                want,
                "{allow} {deny} {escalate}"
            );
        }
    }

    #[test]
    fn seed_policy_verbatim() {
        let p = set(SEED);
        assert!(p.error().is_none(), "{:?}", p.error());
        assert_eq!(
            p.decide(&input("developer", "read", "/home/x")).decision,
            Decision::Allow
        );
        assert_eq!(
            p.decide(&input("developer", "list", "/home/x")).decision,
            Decision::Allow
        );
        assert_eq!(
            p.decide(&input("developer", "write", "/prod/config.yaml"))
                .decision,
            Decision::Deny
        );
        assert_eq!(
            p.decide(&input("developer", "write", "/home/x")).decision,
            Decision::Deny
        );
        let v = p.decide(&input("developer", "delete", "/home/x"));
        assert_eq!(
            (v.decision, v.escalate, v.allow),
            (Decision::Escalate, true, false)
        );
        assert_eq!(
            p.decide(&input("guest", "read", "/home/x")).decision,
            Decision::Deny
        );
    }

    #[test]
    fn every_path_is_decided_and_the_strictest_wins() {
        let p = set(SEED);
        let input = |ty: &str, paths: &[&str]| {
            json!({"agent": {"role": "developer"}, "action": {"type": ty},
                   "resource": {"path": paths[0], "paths": paths}})
        };
        assert_eq!(
            p.decide(&input("write", &["/tmp/a", "/prod/b"])).decision,
            Decision::Deny
        );
        assert_eq!(
            p.decide(&input("write", &["/prod/b", "/tmp/a"])).decision,
            Decision::Deny
        );
        assert_eq!(
            p.decide(&input("read", &["/a", "/b", "/a"])).decision,
            Decision::Allow
        );
        let only_tmp = set("package behavry.authz\nimport rego.v1\nallow if startswith(input.resource.path, \"/tmp/\")\n");
        assert_eq!(
            only_tmp
                .decide(&input("read", &["/tmp/a", "/etc/b"]))
                .decision,
            Decision::Deny
        );
        assert_eq!(
            only_tmp
                .decide(&input("read", &["/tmp/a", "/tmp/b"]))
                .decision,
            Decision::Allow
        );
    }

    #[test]
    fn reasons_are_collected() {
        let p = set("package behavry.authz\nimport rego.v1\n\
             deny if input.x == 1\n\
             reasons contains \"x is one\" if input.x == 1\n\
             reasons contains 42 if input.x == 1\n");
        let v = p.decide(&json!({"x": 1}));
        assert_eq!(v.decision, Decision::Deny);
        assert_eq!(v.reasons, ["42", "x is one"]);
        assert!(p.decide(&json!({"x": 2})).reasons.is_empty());
    }

    #[test]
    fn no_policies_is_default_deny() {
        let p = PolicySet::from_sources(&[], TIMEOUT);
        assert!(p.error().is_none());
        assert_eq!(p.decide(&json!({})).decision, Decision::Deny);
    }

    #[test]
    fn user_defaults_do_not_conflict() {
        let p = set(
            "package behavry.authz\nimport rego.v1\ndefault allow := false\nallow if input.ok\n",
        );
        assert!(p.error().is_none(), "{:?}", p.error());
        assert_eq!(p.decide(&json!({"ok": true})).decision, Decision::Allow);
    }

    #[test]
    fn compile_errors_deny_everything() {
        let p = set("package behavry.authz\nallow if {\n");
        let err = p.error().expect("syntax error").to_string();
        assert!(err.contains("p.rego:"), "{err}");
        let v = p.decide(&json!({}));
        assert_eq!(v.decision, Decision::Deny);
        assert!(
            v.reasons[0].starts_with("policies failed to compile"),
            "{:?}",
            v.reasons
        );

        let unsafe_var = set("package behavry.authz\nimport rego.v1\nallow if x == 1\n");
        assert!(unsafe_var.error().is_some());
    }

    #[test]
    fn evaluation_errors_deny() {
        // Conflicting values for a complete rule are an evaluation error in Rego.
        let p = set("package behavry.authz\nimport rego.v1\nallow := true if input.a\nallow := false if input.b\n");
        let v = p.decide(&json!({"a": true, "b": true}));
        assert_eq!(v.decision, Decision::Deny);
        assert!(
            v.reasons[0].starts_with("policy evaluation failed"),
            "{:?}",
            v.reasons
        );
    }

    #[test]
    fn runaway_policies_time_out() {
        let p = PolicySet::from_sources(
            &[(
                "slow.rego".into(),
                "package behavry.authz\nimport rego.v1\nallow if {\n count([x | some a in numbers.range(1, input.n); some b in numbers.range(1, input.n); x := a * b]) > 0\n}\n".into(),
            )],
            Duration::from_millis(20),
        );
        assert!(p.error().is_none(), "{:?}", p.error());
        let v = p.decide(&json!({"n": 5000}));
        assert_eq!(v.decision, Decision::Deny);
        assert!(
            v.reasons[0].contains("policy evaluation failed"),
            "{:?}",
            v.reasons
        );
    }

    #[test]
    fn hash_depends_on_names_and_contents() {
        let a = PolicySet::from_sources(&[("a".into(), "bc".into())], TIMEOUT).hash;
        let b = PolicySet::from_sources(&[("ab".into(), "c".into())], TIMEOUT).hash;
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
    }
}
