//! What a compiled policy set contains — its modules, their packages and rules — read from
//! regorus's syntax tree, for `behavry policy check`, `list` and `test`.
//!
//! regorus exposes the tree only as `regorus::unstable`; this module is the one place that touches
//! it, so an upgrade that changes the tree breaks here and nowhere else.

use regorus::unstable::{Parser, Rule as AstRule, RuleHead};
use serde_json::Value;

use super::diagnostic::Diagnostic;
use super::engine::DECISION_FILE;

/// One loaded `.rego` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub file: String,
    /// The package's components (`["behavry", "authz"]`).
    pub package: Vec<String>,
    /// Rules in source order, each name once (incremental definitions share a name).
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The rule's path inside its package: `allow`, or `a.b` for a ref head.
    pub name: String,
    /// The line of its first definition.
    pub line: u32,
    /// Takes arguments (`f(x) := …`): not a document, cannot be evaluated on its own.
    pub function: bool,
}

impl Module {
    /// `data.behavry.authz`.
    pub fn package_path(&self) -> String {
        data_path(&self.package)
    }

    /// `data.<package>.<rule>`, for `eval_rule`.
    pub fn rule_path(&self, rule: &str) -> String {
        let mut parts = self.package.clone();
        parts.extend(rule.split('.').map(str::to_owned));
        data_path(&parts)
    }
}

/// `data.a.b`, with bracketed strings for components that are not identifiers.
fn data_path(parts: &[String]) -> String {
    let mut path = String::from("data");
    for part in parts {
        let ident = part
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ident {
            path.push('.');
            path.push_str(part);
        } else {
            path.push_str(&format!("[{}]", Value::String(part.clone())));
        }
    }
    path
}

/// The user's modules in `engine` (behavry's own decision module left out), in load order.
pub fn modules(engine: &regorus::Engine) -> Vec<Module> {
    // `get_modules` wants `&mut`; a clone is cheap (the modules are shared).
    let mut engine = engine.clone();
    let packages = engine.get_policy_package_components().unwrap_or_default();
    let asts = engine.get_modules();
    asts.iter()
        .zip(packages)
        .filter(|(_, p)| p.source_file != DECISION_FILE)
        .map(|(module, package)| {
            let mut rules: Vec<Rule> = Vec::new();
            for rule in &module.policy {
                let Some(found) = describe(rule) else {
                    continue;
                };
                if !rules.iter().any(|r| r.name == found.name) {
                    rules.push(found);
                }
            }
            Module {
                file: package.source_file,
                package: package.components,
                rules,
            }
        })
        .collect()
}

fn describe(rule: &AstRule) -> Option<Rule> {
    let (refr, function) = match rule {
        AstRule::Spec { head, .. } => match head {
            RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } => (refr, false),
            RuleHead::Func { refr, args, .. } => (refr, !args.is_empty()),
        },
        AstRule::Default { refr, args, .. } => (refr, !args.is_empty()),
    };
    let parts = Parser::get_path_ref_components(refr).ok()?;
    let name: Vec<&str> = parts.iter().map(|s| s.text()).collect();
    Some(Rule {
        name: name.join("."),
        line: rule.span().line,
        function,
    })
}

/// Evaluates every rule that is a document (not a function) in every module once against
/// `input`, returning the errors: unknown functions and conflicting definitions that the decision
/// rules do not reach are otherwise only found when some call finally reaches them.
pub fn evaluate_every_rule(engine: &regorus::Engine, input: &Value) -> Vec<Diagnostic> {
    let mut engine = engine.clone();
    engine.set_input(regorus::Value::from(input.clone()));
    let mut errors: Vec<Diagnostic> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for module in modules(&engine) {
        for rule in module.rules.iter().filter(|r| !r.function) {
            // `a.b` and `a.c` are both evaluated by evaluating `a`.
            let top = rule.name.split('.').next().unwrap_or(&rule.name);
            let path = module.rule_path(top);
            if !seen.insert(path.clone()) {
                continue;
            }
            if let Err(e) = engine.eval_rule(path) {
                let d = Diagnostic::from_regorus(&e.to_string(), Some(&module.file));
                if !errors.contains(&d) {
                    errors.push(d);
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySet;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn lists_packages_and_rules() {
        let set = PolicySet::from_sources(
            &[(
                "p.rego".into(),
                "package behavry.authz\nimport rego.v1\n\ndefault allow := false\nallow if input.a\nallow if input.b\n\
                 deny if is_prod(input.resource.path)\nis_prod(p) if startswith(p, \"/prod/\")\nreasons contains \"r\" if input.c\n\
                 a.b := 1\n"
                    .into(),
            )],
            Duration::from_secs(1),
        );
        let modules = modules(set.engine().expect("compiles"));
        assert_eq!(modules.len(), 1);
        let m = &modules[0];
        assert_eq!(m.file, "p.rego");
        assert_eq!(m.package_path(), "data.behavry.authz");
        let names: Vec<(&str, u32, bool)> = m
            .rules
            .iter()
            .map(|r| (r.name.as_str(), r.line, r.function))
            .collect();
        assert_eq!(
            names,
            [
                ("allow", 4, false),
                ("deny", 7, false),
                ("is_prod", 8, true),
                ("reasons", 9, false),
                ("a.b", 10, false)
            ]
        );
        assert_eq!(m.rule_path("test_x"), "data.behavry.authz.test_x");
        assert_eq!(data_path(&["a".into(), "b.c".into()]), "data.a[\"b.c\"]");
    }

    #[test]
    fn finds_errors_in_rules_the_decision_does_not_reach() {
        let set = PolicySet::from_sources(
            &[(
                "p.rego".into(),
                "package behavry.authz\nimport rego.v1\nallow if input.a\nhelper if nosuch.fn(1)\n"
                    .into(),
            )],
            Duration::from_secs(1),
        );
        let errors = evaluate_every_rule(set.engine().expect("compiles"), &json!({}));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].location.as_deref(), Some("p.rego:4:20"));
        assert!(errors[0].message.contains("nosuch.fn"), "{errors:?}");
    }
}
