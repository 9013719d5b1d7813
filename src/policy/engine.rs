//! Compiles a policy set once and decides requests on a cheap clone of the engine.
//!
//! Rules live in `package behavry.authz`: `allow`, `deny`, `escalate` (booleans) and an optional set
//! `reasons`. Default deny; deny beats escalate beats allow. A policy set that fails to compile
//! (or is refused, see [`super::source`]) still loads, so non-governed traffic flows, but denies
//! every governed call with the errors. Compiling includes evaluating each decision rule against an
//! empty and a sample input, because regorus reports some errors (conflicting rules, unknown
//! functions) only when a rule is first evaluated.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::diagnostic::Diagnostic;
use super::source::{self, Kind, Scan, SourceFile, Sources};

/// The package users write their rules in.
pub const PACKAGE: &str = "data.behavry.authz";

/// The name the decision module is loaded under; reports about "your files" leave it out.
pub const DECISION_FILE: &str = "behavry/decision.rego";

/// Reads the user's rules through a package of our own, so that a policy set that omits a rule
/// (or has no rules at all) reads as `false`/empty instead of an evaluation error, and users can
/// still write their own `default allow := false` without a conflict. `decision` is the final
/// word (as the wrapper combines the rules), for `test_*` rules to check.
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

decision := "deny" if deny
else := "escalate" if escalate
else := "allow" if allow
else := "deny"

# What the wrapper evaluates: each rule's values in a list (empty when the rule is undefined or
# absent). Comprehensions instead of the defaults above: this costs half as much per decision, and
# `verdict` in the engine reads it exactly as `decision` combines the rules.
result := {
	"allow": [x | x := data.behavry.authz.allow],
	"deny": [x | x := data.behavry.authz.deny],
	"escalate": [x | x := data.behavry.authz.escalate],
	"reasons": [r | some x in data.behavry.authz.reasons; r := sprintf("%v", [x])],
}
"#;

const DECISION_RULE: &str = "data.behavry.decision.result";

/// The rules compiling evaluates, so a set that would fail on its first call fails at load.
const PROBED_RULES: [&str; 4] = ["allow", "deny", "escalate", "reasons"];

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
    /// Combines two verdicts about one call (one per path it names): the stricter decision wins
    /// (deny, then escalate, then allow), each rule shows as held if it held for either, and the
    /// reasons of both are kept. Decisions are compared, not flags: a path that nothing allows
    /// stays a deny even when another path's rules only escalate.
    pub fn strictest(self, other: Verdict) -> Verdict {
        let severity = |d: Decision| match d {
            Decision::Allow => 0,
            Decision::Escalate => 1,
            Decision::Deny => 2,
        };
        let decision = if severity(other.decision) > severity(self.decision) {
            other.decision
        } else {
            self.decision
        };
        let mut reasons = self.reasons;
        reasons.extend(other.reasons);
        reasons.sort();
        reasons.dedup();
        Verdict {
            decision,
            allow: self.allow && other.allow,
            deny: self.deny || other.deny,
            escalate: self.escalate || other.escalate,
            reasons,
        }
    }

    /// The verdict of rules that may only restrict: their `allow` is taken as given, so only
    /// their `deny` and `escalate` count when combined with [`Verdict::strictest`].
    pub fn without_allow(self) -> Verdict {
        Verdict {
            decision: Decision::combine(true, self.deny, self.escalate),
            allow: true,
            ..self
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

/// A loaded set of policy files: compiled, or the problems that stopped it compiling.
#[derive(Clone)]
pub struct PolicySet {
    engine: Result<regorus::Engine, Failure>,
    /// SHA-256 over every file's path and contents, recorded with each decision.
    pub hash: String,
    /// The `.rego` files loaded.
    pub files: Vec<PathBuf>,
    /// The `.json` data documents merged into `data`.
    pub data_files: Vec<PathBuf>,
    fingerprint: String,
    /// The team bundles this set was built from, as recorded with each decision
    /// (`{"NAME": {"revision": …, "sha256": …}}`); `None` for local files only.
    pub bundles: Option<String>,
    /// Local files under a team bundle (`local = "tighten"`): their `deny` and `escalate` count,
    /// their `allow` is ignored, so they restrict the bundle's decisions and never widen them.
    pub tighten: Option<std::sync::Arc<PolicySet>>,
    /// Why this set decides nothing (a required team bundle not downloaded yet): every governed
    /// call is denied with it.
    pub unavailable: Option<String>,
}

#[derive(Debug, Clone)]
struct Failure {
    diagnostics: Vec<Diagnostic>,
    /// One `file:line:col: message` line per diagnostic.
    summary: String,
    /// Not a compile error: the set was refused before any file was read (see
    /// [`PolicySet::refused`]), and `summary` is the whole reason.
    refusal: bool,
}

impl PolicySet {
    /// Loads every policy file under `dirs` (recursively, in sorted order), as `behavry wrap`
    /// enforces them. Never fails: a set that does not compile, or contains a file others can
    /// write, is returned with its problems and denies everything it is asked about.
    pub fn load(dirs: &[PathBuf], eval_timeout: Duration) -> PolicySet {
        PolicySet::from_scan(source::scan(dirs, Scan::ENFORCE), eval_timeout)
    }

    /// Compiles files already read. Problems found while reading make the set unusable, but the
    /// files that could be read are still compiled so every error is reported at once.
    pub fn from_scan(sources: Sources, eval_timeout: Duration) -> PolicySet {
        let hash = sources.hash();
        let fingerprint = sources.fingerprint();
        let of_kind = |kind: Kind| {
            sources
                .files
                .iter()
                .filter(|f| f.kind == kind)
                .map(|f| f.path.clone())
                .collect::<Vec<_>>()
        };
        let (files, data_files) = (of_kind(Kind::Rego), of_kind(Kind::Data));
        let mut diagnostics = sources.problems;
        let compiled = compile(&sources.files, eval_timeout);
        let engine = match compiled {
            Ok(engine) if diagnostics.is_empty() => Ok(engine),
            Ok(_) => Err(Failure::new(diagnostics)),
            Err(errors) => {
                diagnostics.extend(errors);
                Err(Failure::new(diagnostics))
            }
        };
        PolicySet {
            engine,
            hash,
            files,
            data_files,
            fingerprint,
            bundles: None,
            tighten: None,
            unavailable: None,
        }
    }

    /// Compiles policies given as (name, text) pairs; for tests and tools that do not read files.
    pub fn from_sources(sources: &[(String, String)], eval_timeout: Duration) -> PolicySet {
        let files = sources
            .iter()
            .map(|(name, text)| SourceFile {
                path: PathBuf::from(name),
                kind: Kind::Rego,
                text: text.clone(),
            })
            .collect();
        PolicySet::from_scan(
            Sources {
                files,
                problems: Vec::new(),
            },
            eval_timeout,
        )
    }

    /// A set that denies every call with `reason`, for a wrapper whose configuration cannot be
    /// trusted (a refused system config): nothing is loaded, nothing reloads it.
    pub fn refused(reason: impl Into<String>) -> PolicySet {
        let reason = reason.into();
        let mut failure = Failure::new(vec![Diagnostic::new(None, reason)]);
        failure.refusal = true;
        PolicySet {
            engine: Err(failure),
            hash: String::new(),
            files: Vec::new(),
            data_files: Vec::new(),
            fingerprint: String::new(),
            bundles: None,
            tighten: None,
            unavailable: None,
        }
    }

    /// Why every call is denied, when the set was [`refused`](PolicySet::refused).
    pub fn refusal(&self) -> Option<&str> {
        match &self.engine {
            Err(f) if f.refusal => Some(&f.summary),
            _ => None,
        }
    }

    /// The problems, one `file:line:col: message` per line, when the set is unusable.
    pub fn error(&self) -> Option<&str> {
        self.engine.as_ref().err().map(|f| f.summary.as_str())
    }

    /// Every problem that makes the set unusable (empty when it compiled).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match &self.engine {
            Ok(_) => &[],
            Err(f) => &f.diagnostics,
        }
    }

    /// The problems with source snippets under them, for a terminal.
    pub fn error_report(&self) -> Option<String> {
        let failure = self.engine.as_ref().err()?;
        let rendered: Vec<String> = failure.diagnostics.iter().map(Diagnostic::render).collect();
        Some(rendered.join("\n"))
    }

    /// The compiled engine (already prepared), when the set compiled.
    pub fn engine(&self) -> Option<&regorus::Engine> {
        self.engine.as_ref().ok()
    }

    /// Changes whenever reloading the same directories would give a different set.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Decides one input. Any error (compile, evaluation, timeout, malformed result) is a deny with
    /// the error as its reason.
    ///
    /// A call that names several paths (`move_file {source, destination}`) is evaluated once per
    /// path, with `resource.path` set to each, and the strictest verdict wins: a rule written
    /// about one path (`startswith(input.resource.path, "/prod/")`) then holds for all of them.
    pub fn decide(&self, input: &Value) -> Verdict {
        if let Some(reason) = &self.unavailable {
            return Verdict::fail_closed(reason.clone());
        }
        let verdict = self.decide_own(input);
        match &self.tighten {
            None => verdict,
            Some(local) => verdict.strictest(local.decide(input).without_allow()),
        }
    }

    /// [`PolicySet::decide`] with this set's own rules only.
    fn decide_own(&self, input: &Value) -> Verdict {
        let engine = match &self.engine {
            Ok(engine) => engine,
            Err(f) if f.refusal => return Verdict::fail_closed(f.summary.replace('\n', "; ")),
            Err(f) => {
                let one_line = f.summary.replace('\n', "; ");
                return Verdict::fail_closed(format!("policies failed to compile: {one_line}"));
            }
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

impl Failure {
    fn new(diagnostics: Vec<Diagnostic>) -> Failure {
        let lines: Vec<String> = diagnostics.iter().map(Diagnostic::to_string).collect();
        Failure {
            summary: lines.join("\n"),
            diagnostics,
            refusal: false,
        }
    }
}

/// A fresh engine with behavry's settings: OPA's lenient builtins and a bound on evaluation time.
pub fn new_engine(eval_timeout: Duration) -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    // OPA semantics: a builtin given the wrong type is undefined, not an error.
    engine.set_strict_builtin_errors(false);
    engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
        limit: eval_timeout,
        check_interval: NonZeroU32::MIN.saturating_add(63),
    });
    engine
}

/// Parses every file (collecting every syntax error, not just the first), merges the data
/// documents, then evaluates the decision rules once so that errors regorus finds only at
/// evaluation are reported at load. The engine returned is prepared: clones of it evaluate at once.
fn compile(
    files: &[SourceFile],
    eval_timeout: Duration,
) -> Result<regorus::Engine, Vec<Diagnostic>> {
    let mut engine = new_engine(eval_timeout);
    engine
        .add_policy(DECISION_FILE.into(), DECISION_MODULE.into())
        .map_err(|e| {
            vec![Diagnostic::new(
                None,
                format!("internal decision module: {e}"),
            )]
        })?;
    let mut errors = Vec::new();
    for file in files.iter().filter(|f| f.kind == Kind::Rego) {
        let name = file.name();
        if let Err(e) = engine.add_policy(name.clone(), file.text.clone()) {
            errors.push(Diagnostic::from_regorus(&e.to_string(), Some(&name)));
        }
    }
    for file in files.iter().filter(|f| f.kind == Kind::Data) {
        if let Err(e) = add_data(&mut engine, file) {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    for (input, what) in [(json!({}), None), (sample_input(), Some("a sample input"))] {
        engine.set_input(regorus::Value::from(input));
        for rule in PROBED_RULES {
            if let Err(e) = engine.eval_rule(format!("data.behavry.decision.{rule}")) {
                let mut d = Diagnostic::from_regorus(&e.to_string(), None);
                if let Some(what) = what {
                    d.message = format!("{} (evaluating `{rule}` against {what})", d.message);
                }
                return Err(vec![d]);
            }
        }
    }
    Ok(engine)
}

/// Merges one JSON data document into `data`.
fn add_data(engine: &mut regorus::Engine, file: &SourceFile) -> Result<(), Diagnostic> {
    let name = file.name();
    let value: Value = serde_json::from_str(&file.text).map_err(|e| {
        Diagnostic::new(
            Some(format!("{name}:{}:{}", e.line(), e.column())),
            format!("not valid JSON: {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(Diagnostic::file(
            &name,
            "a data document must be a JSON object (its keys are merged into `data`)",
        ));
    }
    engine
        .add_data(regorus::Value::from(value))
        .map_err(|e| Diagnostic::file(&name, format!("cannot merge into `data`: {e}")))
}

/// An input of the documented shape, for validating a set before it is put in force.
pub fn sample_input() -> Value {
    json!({
        "agent": {"id": "agent-uuid", "name": "claude-code", "role": "developer", "risk_tier": "low"},
        "action": {"type": "write", "tool": "filesystem/write_file", "name": "write_file",
                   "arguments": {"path": "/prod/config.yaml", "content": ""}, "annotations": {}},
        "resource": {"path": "/prod/config.yaml", "paths": ["/prod/config.yaml"], "server": "filesystem"},
        "session": {"id": "session-uuid", "duration_seconds": 120, "project_dir": "/home/user/project"},
        "requester": {"id": "user@example.com", "channel": "claude-code"},
        "behavry": {"config_dir": "/home/user/.config/behavry", "data_dir": "/home/user/.local/share/behavry",
                    "policy_dirs": ["/home/user/.config/behavry/policies"],
                    "protected": ["/home/user/.config/behavry", "/home/user/.local/share/behavry"]},
    })
}

/// The input as regorus's value, built from the borrowed JSON: cheaper than `regorus::Value::from`,
/// which clones the whole input and goes through serde's deserializer.
pub(crate) fn to_rego(value: &Value) -> regorus::Value {
    match value {
        Value::Null => regorus::Value::Null,
        Value::Bool(b) => regorus::Value::from(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                regorus::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                regorus::Value::from(u)
            } else {
                // serde_json (without arbitrary_precision) holds every other number as a finite f64.
                n.as_f64()
                    .map_or(regorus::Value::Null, regorus::Value::from)
            }
        }
        Value::String(s) => regorus::Value::from(s.as_str()),
        Value::Array(items) => regorus::Value::from(items.iter().map(to_rego).collect::<Vec<_>>()),
        Value::Object(map) => regorus::Value::from(
            map.iter()
                .map(|(k, v)| (regorus::Value::from(k.as_str()), to_rego(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

fn evaluate(mut engine: regorus::Engine, input: &Value) -> anyhow::Result<Verdict> {
    engine.set_input(to_rego(input));
    // Read straight from regorus's value: the decision module makes its shape (booleans, a set
    // of strings), so there is nothing to gain from a round trip through JSON text.
    let result = engine.eval_rule(DECISION_RULE.into())?;
    // A rule holds when its value is `true` (`allow := "yes"` does not allow, as `== true` in
    // the decision module).
    let flag = |key: &str| {
        result[key]
            .as_array()
            .is_ok_and(|values| values.iter().any(|v| *v == regorus::Value::Bool(true)))
    };
    let (allow, deny, escalate) = (flag("allow"), flag("deny"), flag("escalate"));
    let mut reasons: Vec<String> = result["reasons"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|r| r.as_string().ok())
                .map(|r| r.to_string())
                .collect()
        })
        .unwrap_or_default();
    reasons.sort();
    reasons.dedup();
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
        // One path escalated, the other allowed by nothing: its default deny must survive.
        let escalate_tmp = set("package behavry.authz\nimport rego.v1\nescalate if startswith(input.resource.path, \"/tmp/\")\n");
        let decide = |paths: &[&str]| escalate_tmp.decide(&input("write", paths)).decision;
        assert_eq!(decide(&["/tmp/a", "/etc/cron.d/x"]), Decision::Deny);
        assert_eq!(decide(&["/etc/cron.d/x", "/tmp/a"]), Decision::Deny);
        assert_eq!(decide(&["/tmp/a", "/tmp/b"]), Decision::Escalate);
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
    fn a_refused_set_denies_with_its_reason_alone() {
        let p = PolicySet::refused("the system config is refused: fix it");
        assert_eq!(p.refusal(), Some("the system config is refused: fix it"));
        let v = p.decide(&sample_input());
        assert_eq!(v.decision, Decision::Deny);
        assert_eq!(v.reasons, ["the system config is refused: fix it"]);
        assert_eq!(PolicySet::from_sources(&[], TIMEOUT).refusal(), None);
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
    fn the_decision_rule_agrees_with_combine() {
        // `data.behavry.decision.decision` is what `test_*` rules check; it must say what the
        // wrapper does.
        for bits in 0..8u8 {
            let (allow, deny, escalate) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
            let p = set(&format!(
                "package behavry.authz\nimport rego.v1\nallow := {allow}\ndeny := {deny}\nescalate := {escalate}\n"
            ));
            let mut engine = p.engine().expect("compiles").clone();
            let got = engine
                .eval_rule("data.behavry.decision.decision".into())
                .expect("evaluates");
            let want = Decision::combine(allow, deny, escalate).as_str();
            assert_eq!(got, regorus::Value::from(want), "{allow} {deny} {escalate}");
        }
    }

    #[test]
    fn errors_only_a_real_input_reaches_are_found_at_load() {
        // Conflicting values, but only for a write: the sample input (a write to /prod/) finds it.
        let p = set("package behavry.authz\nimport rego.v1\nallow := true if input.action.type == \"write\"\nallow := false if input.resource.path\n");
        let err = p.error().expect("rejected at load");
        assert!(err.contains("against a sample input"), "{err}");
        assert!(err.starts_with("p.rego:"), "{err}");
    }

    fn data_set(files: &[(&str, &str)]) -> PolicySet {
        let files = files
            .iter()
            .map(|(name, text)| SourceFile {
                path: PathBuf::from(name),
                kind: if name.ends_with(".json") {
                    Kind::Data
                } else {
                    Kind::Rego
                },
                text: (*text).to_owned(),
            })
            .collect();
        PolicySet::from_scan(
            Sources {
                files,
                problems: Vec::new(),
            },
            TIMEOUT,
        )
    }

    #[test]
    fn data_documents_are_merged_into_data() {
        let rules = ("p.rego", "package behavry.authz\nimport rego.v1\nallow if input.user in data.users\ndeny if input.user in data.banned\n");
        let p = data_set(&[
            rules,
            ("a.json", r#"{"users": ["ann"]}"#),
            ("b.json", r#"{"banned": ["bob"]}"#),
        ]);
        assert!(p.error().is_none(), "{:?}", p.error());
        assert_eq!(p.data_files.len(), 2);
        assert_eq!(p.decide(&json!({"user": "ann"})).decision, Decision::Allow);
        assert_eq!(p.decide(&json!({"user": "bob"})).decision, Decision::Deny);

        let clash = data_set(&[
            rules,
            ("a.json", r#"{"users": "ann"}"#),
            ("b.json", r#"{"users": "bob"}"#),
        ]);
        let err = clash.error().expect("merge conflict");
        assert!(err.starts_with("b.json: cannot merge into `data`"), "{err}");

        let bad = data_set(&[rules, ("a.json", "{\n  \"users\": [\n")]);
        assert!(
            bad.error()
                .expect("bad JSON")
                .starts_with("a.json:3:0: not valid JSON"),
            "{:?}",
            bad.error()
        );
        let not_object = data_set(&[rules, ("a.json", "[]")]);
        assert!(not_object
            .error()
            .expect("not an object")
            .contains("must be a JSON object"));
    }

    #[test]
    fn every_syntax_error_is_reported_and_the_reason_is_one_line() {
        let p = PolicySet::from_sources(
            &[
                (
                    "a.rego".into(),
                    "package behavry.authz\nallow if {\n".into(),
                ),
                ("b.rego".into(), "package behavry.authz\ndeny if {\n".into()),
            ],
            TIMEOUT,
        );
        assert_eq!(p.diagnostics().len(), 2);
        let reason = &p.decide(&json!({})).reasons[0];
        assert!(
            !reason.contains('\n')
                && reason.contains("a.rego:3:1")
                && reason.contains("b.rego:3:1"),
            "{reason}"
        );
        assert!(p.error_report().expect("report").contains("^"));
    }

    #[test]
    fn only_true_holds() {
        for (rules, want) in [
            ("allow := \"yes\"", Decision::Deny),
            ("allow := 1", Decision::Deny),
            ("allow contains 1", Decision::Deny),
            ("allow := true", Decision::Allow),
            ("allow := true\ndeny := false", Decision::Allow),
            ("allow := true\ndeny := \"no\"", Decision::Allow),
            ("allow := true\nescalate := {}", Decision::Allow),
        ] {
            let p = set(&format!("package behavry.authz\nimport rego.v1\n{rules}\n"));
            assert!(p.error().is_none(), "{rules}: {:?}", p.error());
            assert_eq!(p.decide(&json!({})).decision, want, "{rules}");
        }
    }

    #[test]
    fn the_input_converts_as_regorus_reads_json() {
        let table = [
            json!(null),
            json!(true),
            json!(-3),
            json!(18446744073709551615u64),
            json!(1.5),
            json!(1e300),
            json!("x\u{1b}[2J"),
            json!([]),
            json!({}),
            sample_input(),
            json!({"a": [1, {"b": [null, false, "c"]}], "": {"z": 0.1, "y": -0.0}}),
        ];
        for value in table {
            assert_eq!(
                to_rego(&value),
                regorus::Value::from(value.clone()),
                "{value}"
            );
        }
    }

    #[test]
    fn hash_depends_on_names_and_contents() {
        let a = PolicySet::from_sources(&[("a".into(), "bc".into())], TIMEOUT).hash;
        let b = PolicySet::from_sources(&[("ab".into(), "c".into())], TIMEOUT).hash;
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
    }
}
