//! Replay: what a policy set would have decided about calls already recorded. Every decision
//! keeps the exact policy input it was made on (redacted as its arguments are), so a candidate
//! set can be evaluated against last week's real traffic before it is installed
//! (`behavry policy replay`, `behavry policy add`). Pure: the recorded inputs come in, the
//! differences go out.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::PolicySet;

/// A recorded decision and the input it was made on.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub id: i64,
    pub ts: String,
    pub server: String,
    pub tool: String,
    /// What was decided then.
    pub decision: String,
    #[serde(skip)]
    pub input: Value,
}

/// A recorded call the candidate set decides differently.
#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    #[serde(flatten)]
    pub recorded: Recorded,
    /// What the candidate set decides.
    pub now: String,
    /// The candidate set's reasons.
    pub reasons: Vec<String>,
}

/// The result of a replay.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub replayed: usize,
    pub changed: Vec<Changed>,
}

impl Report {
    /// How many calls moved from one decision to another: `(from, to) → count`.
    pub fn counts(&self) -> BTreeMap<(&str, &str), usize> {
        let mut counts = BTreeMap::new();
        for c in &self.changed {
            *counts
                .entry((c.recorded.decision.as_str(), c.now.as_str()))
                .or_insert(0) += 1;
        }
        counts
    }

    /// `allow → deny: 3, escalate → allow: 12`, or `no decision changes`.
    pub fn summary(&self) -> String {
        let counts = self.counts();
        if counts.is_empty() {
            return format!("no decision changes over {} recorded calls", self.replayed);
        }
        let parts: Vec<String> = counts
            .iter()
            .map(|((from, to), n)| format!("{from} → {to}: {n}"))
            .collect();
        format!(
            "{} of {} recorded calls would be decided differently: {}",
            self.changed.len(),
            self.replayed,
            parts.join(", ")
        )
    }
}

/// Evaluates `policy` against every recorded input and keeps the calls it decides differently.
pub fn replay(policy: &PolicySet, recorded: Vec<Recorded>) -> Report {
    let replayed = recorded.len();
    let changed = recorded
        .into_iter()
        .filter_map(|recorded| {
            let verdict = policy.decide(&recorded.input);
            let now = verdict.decision.as_str();
            (now != recorded.decision).then(|| Changed {
                now: now.to_owned(),
                reasons: verdict.reasons,
                recorded,
            })
        })
        .collect();
    Report { replayed, changed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn set(text: &str) -> PolicySet {
        PolicySet::from_sources(
            &[("p.rego".into(), text.into())],
            Duration::from_millis(500),
        )
    }

    fn recorded(id: i64, tool: &str, decision: &str) -> Recorded {
        Recorded {
            id,
            ts: "2026-11-25T10:00:00.000Z".into(),
            server: "fs".into(),
            tool: tool.into(),
            decision: decision.into(),
            input: json!({"action": {"name": tool, "tool": format!("fs/{tool}")},
                          "resource": {"paths": []}}),
        }
    }

    #[test]
    fn counts_the_calls_a_candidate_decides_differently() {
        let before = vec![
            recorded(1, "read", "allow"),
            recorded(2, "read", "allow"),
            recorded(3, "write", "deny"),
            recorded(4, "delete", "escalate"),
        ];
        let candidate = set("package behavry.authz\nimport rego.v1\n\
            allow if input.action.name in {\"read\", \"delete\"}\n\
            deny if input.action.name == \"read\"\n\
            reasons contains \"no reads today\" if input.action.name == \"read\"\n");
        let report = replay(&candidate, before);
        assert_eq!(report.replayed, 4);
        let counts: Vec<_> = report.counts().into_iter().collect();
        assert_eq!(counts, [(("allow", "deny"), 2), (("escalate", "allow"), 1)]);
        assert_eq!(report.changed[0].reasons, ["no reads today"]);
        assert!(
            report.summary().contains("allow → deny: 2"),
            "{}",
            report.summary()
        );
        let same = replay(&candidate, vec![recorded(5, "write", "deny")]);
        assert!(same.changed.is_empty());
        assert!(same.summary().starts_with("no decision changes"));
    }
}
