//! The test runner behind `behavry policy test`. regorus has none, so this one finds every
//! `test_*` rule (OPA's convention) and evaluates each on its own clone of the compiled engine
//! with no input: the test supplies it with `with input as {…}`. As in `opa test`, a test passes
//! when its value is defined and not `false`.

use std::time::{Duration, Instant};

use super::diagnostic::Diagnostic;
use super::inspect;

/// One `test_*` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub file: String,
    pub line: u32,
    /// `data.<package>.test_name`.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Pass,
    /// Evaluated to `false`, or was undefined (some expression in its body did not hold).
    Fail {
        value: String,
    },
    /// Evaluation stopped with an error (conflict, timeout, unknown function…).
    Error(Diagnostic),
}

#[derive(Debug, Clone)]
pub struct Report {
    pub case: Case,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

/// Every `test_*` rule in `engine`, by file and line. Functions named `test_*` are helpers, not
/// tests.
pub fn cases(engine: &regorus::Engine) -> Vec<Case> {
    let mut cases: Vec<Case> = inspect::modules(engine)
        .iter()
        .flat_map(|m| {
            m.rules
                .iter()
                .filter(|r| !r.function && r.name.starts_with("test_") && !r.name.contains('.'))
                .map(|r| Case {
                    file: m.file.clone(),
                    line: r.line,
                    path: m.rule_path(&r.name),
                })
        })
        .collect();
    cases.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    // The same test name in two files of one package is one rule.
    let mut seen = std::collections::BTreeSet::new();
    cases.retain(|c| seen.insert(c.path.clone()));
    cases
}

/// Runs one test on a clone of `engine` (so tests never see each other's state).
pub fn run(engine: &regorus::Engine, case: &Case) -> Report {
    let started = Instant::now();
    let mut engine = engine.clone();
    engine.set_input(regorus::Value::Undefined);
    let outcome = match engine.eval_rule(case.path.clone()) {
        Err(e) => Outcome::Error(Diagnostic::from_regorus(&e.to_string(), Some(&case.file))),
        Ok(regorus::Value::Undefined) => Outcome::Fail {
            value: "undefined".into(),
        },
        Ok(regorus::Value::Bool(false)) => Outcome::Fail {
            value: "false".into(),
        },
        Ok(_) => Outcome::Pass,
    };
    Report {
        case: case.clone(),
        outcome,
        elapsed: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySet;

    const POLICY: &str =
        "package behavry.authz\nimport rego.v1\nallow if input.action.type == \"read\"\n";
    const TESTS: &str = r#"package behavry.authz_test
import rego.v1

test_read_allowed if data.behavry.decision.decision == "allow" with input as {"action": {"type": "read"}}
test_write_denied if data.behavry.decision.decision == "deny" with input as {"action": {"type": "write"}}
test_wrong if data.behavry.decision.decision == "allow" with input as {"action": {"type": "write"}}
test_false := false
test_no_input if input.action
test_conflict := 1
test_conflict := 2
test_helper(x) := x
"#;

    #[test]
    fn runs_each_test_rule() {
        let set = PolicySet::from_sources(
            &[
                ("p.rego".into(), POLICY.into()),
                ("p_test.rego".into(), TESTS.into()),
            ],
            Duration::from_secs(5),
        );
        let engine = set.engine().expect("compiles");
        let cases = cases(engine);
        let names: Vec<(&str, u32)> = cases.iter().map(|c| (c.path.as_str(), c.line)).collect();
        assert_eq!(
            names,
            [
                ("data.behavry.authz_test.test_read_allowed", 4),
                ("data.behavry.authz_test.test_write_denied", 5),
                ("data.behavry.authz_test.test_wrong", 6),
                ("data.behavry.authz_test.test_false", 7),
                ("data.behavry.authz_test.test_no_input", 8),
                ("data.behavry.authz_test.test_conflict", 9),
            ]
        );
        let outcomes: Vec<Outcome> = cases.iter().map(|c| run(engine, c).outcome).collect();
        assert_eq!(outcomes[0], Outcome::Pass);
        assert_eq!(outcomes[1], Outcome::Pass);
        assert_eq!(
            outcomes[2],
            Outcome::Fail {
                value: "undefined".into()
            }
        );
        assert_eq!(
            outcomes[3],
            Outcome::Fail {
                value: "false".into()
            }
        );
        assert_eq!(
            outcomes[4],
            Outcome::Fail {
                value: "undefined".into()
            }
        );
        assert!(
            matches!(&outcomes[5], Outcome::Error(d) if d.location.as_deref() == Some("p_test.rego:10:1")),
            "{:?}",
            outcomes[5]
        );
    }
}
