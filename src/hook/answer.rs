//! What the hook tells Claude Code, from a verdict. Pure.

use serde_json::json;

use super::Escalate;
use crate::policy::{Decision, Verdict};

/// The hook's answer to a `PreToolUse` event.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A rule allowed it: Claude Code skips its own permission prompt.
    Allow(String),
    /// Blocked; the model reads the reason.
    Deny(String),
    /// Claude Code asks the person, showing the reason (in `claude -p` this is a deny).
    Ask(String),
    /// Held until `behavry approve` resolves it (`[hook] escalate = "approve"`).
    Hold(String),
    /// No output: Claude Code's own permissions decide.
    NoOpinion,
}

/// What a verdict becomes. Only an explicit allow is answered `allow` (it skips Claude Code's
/// prompt); a call no rule allowed and no rule denied gets no answer, so Claude Code's own
/// permissions apply, never fewer of them.
pub fn answer(verdict: &Verdict, escalate: Escalate) -> Answer {
    let reason = reason(&verdict.reasons);
    match verdict.decision {
        Decision::Deny if verdict.deny => Answer::Deny(reason),
        Decision::Deny => Answer::NoOpinion,
        Decision::Escalate => match escalate {
            Escalate::Ask => Answer::Ask(reason),
            Escalate::Approve => Answer::Hold(reason),
        },
        Decision::Allow if verdict.reasons.is_empty() => {
            Answer::Allow("behavry: a policy rule allows this call".into())
        }
        Decision::Allow => Answer::Allow(reason),
    }
}

/// The reason line Claude Code shows (and the model reads on a deny).
pub fn reason(reasons: &[String]) -> String {
    if reasons.is_empty() {
        "behavry policy".to_owned()
    } else {
        format!("behavry: {}", reasons.join("; "))
    }
}

/// The JSON line printed for an answer; `None` for no opinion (nothing is printed).
pub fn render(answer: &Answer) -> Option<String> {
    let (decision, reason) = match answer {
        Answer::Allow(r) => ("allow", r),
        Answer::Deny(r) => ("deny", r),
        Answer::Ask(r) | Answer::Hold(r) => ("ask", r),
        Answer::NoOpinion => return None,
    };
    Some(
        json!({"hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": decision,
            "permissionDecisionReason": reason,
        }})
        .to_string(),
    )
}

/// The answer to every failure: Claude Code runs the tool if the hook gives none.
pub fn fail_closed(why: &str) -> String {
    render(&Answer::Deny(format!(
        "behavry could not decide this call, so it is denied: {why}"
    )))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(allow: bool, deny: bool, escalate: bool, reasons: &[&str]) -> Verdict {
        Verdict {
            decision: Decision::combine(allow, deny, escalate),
            allow,
            deny,
            escalate,
            reasons: reasons.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    #[test]
    fn verdicts_become_answers() {
        use Answer::*;
        let table = [
            // (allow, deny, escalate, mode, answer)
            (
                (true, false, false),
                Escalate::Ask,
                Allow("behavry: r".into()),
            ),
            ((false, false, false), Escalate::Ask, NoOpinion),
            (
                (false, true, false),
                Escalate::Ask,
                Deny("behavry: r".into()),
            ),
            (
                (true, true, true),
                Escalate::Approve,
                Deny("behavry: r".into()),
            ),
            ((true, false, true), Escalate::Ask, Ask("behavry: r".into())),
            (
                (false, false, true),
                Escalate::Approve,
                Hold("behavry: r".into()),
            ),
        ];
        for ((a, d, e), mode, want) in table {
            assert_eq!(answer(&verdict(a, d, e, &["r"]), mode), want, "{a} {d} {e}");
        }
        // A refusal before any policy ran is a deny.
        assert_eq!(
            answer(&Verdict::fail_closed("own file"), Escalate::Ask),
            Deny("behavry: own file".into())
        );
    }

    #[test]
    fn rendered_as_claude_code_reads_it() {
        let line = render(&Answer::Ask("behavry: a; b".into())).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["hookSpecificOutput"]["hookEventName"], "PreToolUse");
        assert_eq!(v["hookSpecificOutput"]["permissionDecision"], "ask");
        assert_eq!(
            v["hookSpecificOutput"]["permissionDecisionReason"],
            "behavry: a; b"
        );
        assert_eq!(render(&Answer::NoOpinion), None);
        let v: serde_json::Value = serde_json::from_str(&fail_closed("x")).unwrap();
        assert_eq!(v["hookSpecificOutput"]["permissionDecision"], "deny");
        assert_eq!(reason(&["a".into(), "b".into()]), "behavry: a; b");
    }
}
