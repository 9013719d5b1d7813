//! `filter_denied_tools`: which of a server's tools the policies deny for every call, so they can
//! be left out of the `tools/list` answers the client sees (the model then does not spend turns
//! calling them). Pure.
//!
//! A tool is hidden only when an explicit `deny` rule fires for it with no arguments and no
//! paths in the input: the tool alone (its name, type and annotations) is enough to deny it, so
//! no arguments could make the call pass. A default deny (no rule allowed it) is not enough: some
//! arguments might be allowed. Nothing is hidden while the policies fail to compile.

use serde_json::{json, Value};

use super::input::{self, Context, Facts, Governed};
use super::PolicySet;

/// The reasons `policy` denies every call to `tool` (a definition from `tools/list`), or `None`
/// if some call to it might pass.
pub fn always_denied(ctx: &Context, tool: &Value, policy: &PolicySet) -> Option<Vec<String>> {
    if policy.error().is_some() {
        return None;
    }
    let name = tool.get("name").and_then(Value::as_str)?;
    let governed = Governed::ToolCall {
        name: name.to_owned(),
        arguments: json!({}),
    };
    let facts = Facts {
        annotations: tool.get("annotations"),
        ..Facts::default()
    };
    let mut built = input::build(ctx, &governed, &facts).input;
    // The tool alone: what the call would say is absent, so a rule that reads it cannot fire.
    if let Some(action) = built.get_mut("action").and_then(Value::as_object_mut) {
        action.remove("arguments");
    }
    built["resource"] = json!({"server": ctx.server});
    let verdict = policy.decide(&built);
    (verdict.deny && verdict.decision == super::Decision::Deny).then_some(verdict.reasons)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::input::BehavryDirs;
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::Duration;

    fn ctx() -> Context {
        Context {
            server: "fs".into(),
            agent_id: None,
            agent_name: None,
            role: "developer".into(),
            risk_tier: "low".into(),
            requester_id: "alice".into(),
            session_id: "s".into(),
            project_dir: None,
            cwd: PathBuf::from("/"),
            home: None,
            action_types: BTreeMap::new(),
            behavry: BehavryDirs::default(),
        }
    }

    #[test]
    fn only_tools_denied_whatever_their_arguments_are_hidden() {
        let policy = PolicySet::from_sources(
            &[(
                "p.rego".into(),
                "package behavry.authz\nimport rego.v1\n\
                 allow if input.action.type == \"read\"\n\
                 deny if input.action.name == \"delete_file\"\n\
                 deny if input.action.type == \"execute\"\n\
                 deny if startswith(input.resource.path, \"/prod/\")\n\
                 deny if input.action.arguments.force == true\n\
                 reasons contains \"no deletes\" if input.action.name == \"delete_file\"\n"
                    .into(),
            )],
            Duration::from_millis(500),
        );
        let tool =
            |name: &str, annotations: Value| json!({"name": name, "annotations": annotations});
        let hidden = |t: &Value| always_denied(&ctx(), t, &policy);
        assert_eq!(
            hidden(&tool("delete_file", json!({}))),
            Some(vec!["no deletes".to_owned()])
        );
        assert!(hidden(&tool("run_command", json!({}))).is_some());
        // Denied only for some paths or arguments, or not allowed by default: kept.
        assert_eq!(hidden(&tool("write_file", json!({}))), None);
        assert_eq!(
            hidden(&tool("read_file", json!({"readOnlyHint": true}))),
            None
        );
        assert_eq!(hidden(&json!({"title": "no name"})), None);

        let broken = PolicySet::from_sources(
            &[("p.rego".into(), "package behavry.authz\ndeny if {".into())],
            Duration::from_millis(500),
        );
        assert_eq!(
            always_denied(&ctx(), &tool("delete_file", json!({})), &broken),
            None
        );
    }
}
