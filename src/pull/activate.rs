//! A policy set from the team's bundles and the local policy files, as `local` says: `tighten`
//! (the bundle decides; local files run in a second engine whose `deny` and `escalate` count and
//! whose `allow` is ignored), `off` (the bundle alone) or `merge` (one set, refused when a local
//! package or data key falls under a bundle root). Pure but for compiling: the watcher decides
//! whether the result is put in force.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::verify::Verified;
use crate::bundle::{self, root_covers};
use crate::policy::source::{hash_pairs, Kind, SourceFile, Sources};
use crate::policy::{Diagnostic, PolicySet};
use crate::team::{BundleConfig, Local};

/// The team's bundles as this wrapper knows them: the configuration, the last good revision of
/// each, and why one is missing.
#[derive(Debug, Clone)]
pub struct Bundles {
    pub configs: BTreeMap<String, BundleConfig>,
    pub local: Local,
    /// The last good revision of each bundle (the one in force).
    pub active: BTreeMap<String, Verified>,
    /// The last download error of a bundle not active yet.
    pub errors: BTreeMap<String, String>,
}

impl Bundles {
    /// Changes whenever [`Bundles::compose`] would give another set for the same local files.
    pub fn fingerprint(&self) -> String {
        let active: Vec<String> = self
            .active
            .values()
            .map(|b| format!("{}={}", b.name(), b.sha256()))
            .collect();
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(n, e)| format!("{n}={e}"))
            .collect();
        hash_pairs([
            ("active", active.join("\n").as_str()),
            ("errors", errors.join("\n").as_str()),
        ])
    }

    /// `{"NAME": {"revision", "sha256"}}`, as each decision row records it.
    pub fn recorded(&self) -> String {
        let map: Map<String, Value> = self
            .active
            .values()
            .map(|b| {
                (
                    b.name().to_owned(),
                    json!({"revision": b.revision(), "sha256": b.sha256()}),
                )
            })
            .collect();
        Value::Object(map).to_string()
    }

    /// The set these bundles and the `local` files make. Never fails: a set that cannot be built
    /// carries the reason as its error (and the watcher keeps the last good one).
    pub fn compose(&self, local: Sources, eval_timeout: Duration) -> PolicySet {
        let recorded = self.recorded();
        let finish = |mut set: PolicySet, local_hash: &str| {
            set.hash = hash_pairs([
                ("policies", set.hash.as_str()),
                ("local", local_hash),
                ("bundles", recorded.as_str()),
            ]);
            set.bundles = Some(recorded.clone());
            set
        };
        let refused = |why: String| {
            PolicySet::from_scan(
                Sources {
                    files: Vec::new(),
                    problems: vec![Diagnostic::new(None, why)],
                },
                eval_timeout,
            )
        };
        let missing: Vec<&String> = self
            .configs
            .iter()
            .filter(|(name, c)| c.required && !self.active.contains_key(*name))
            .map(|(name, _)| name)
            .collect();
        if let Some(name) = missing.first() {
            let why = self
                .errors
                .get(*name)
                .map_or("no download has finished yet", String::as_str);
            let mut set = PolicySet::from_scan(Sources::default(), eval_timeout);
            set.unavailable = Some(format!(
                "the team policy bundle is not downloaded yet: {why}"
            ));
            return finish(set, "");
        }
        if self.active.is_empty() {
            // Configured but not required, and nothing downloaded yet: the local files decide
            // (the wrapper says so on stderr; the rows record no bundle).
            let mut set = PolicySet::from_scan(local, eval_timeout);
            set.bundles = None;
            return set;
        }
        if let Err(why) = disjoint(&self.active) {
            return refused(why);
        }
        let mut files: Vec<SourceFile> = Vec::new();
        for bundle in self.active.values() {
            files.extend(bundle_files(bundle));
        }
        let local_hash = local.hash();
        match self.local {
            Local::Off => finish(
                PolicySet::from_scan(
                    Sources {
                        files,
                        problems: Vec::new(),
                    },
                    eval_timeout,
                ),
                "",
            ),
            Local::Merge => {
                // Local files that cannot join the bundle deny every call, saying why, beside the
                // bundle's revision. Refusing the whole set instead would keep the previous team
                // revision in force for as long as a local file (the user's, and so an agent's, to
                // write) stays wrong.
                let problem = outside_roots(&local, &self.active).err().or_else(|| {
                    let alone = PolicySet::from_scan(local.clone(), eval_timeout);
                    alone.error().map(|e| {
                        format!(
                            "local policy files (local = \"merge\"): {}",
                            e.replace('\n', "; ")
                        )
                    })
                });
                if let Some(why) = problem {
                    let mut set = PolicySet::from_scan(
                        Sources {
                            files,
                            problems: Vec::new(),
                        },
                        eval_timeout,
                    );
                    set.tighten = Some(Arc::new(PolicySet::refused(why)));
                    return finish(set, &local_hash);
                }
                files.extend(local.files);
                finish(
                    PolicySet::from_scan(
                        Sources {
                            files,
                            problems: local.problems,
                        },
                        eval_timeout,
                    ),
                    "",
                )
            }
            Local::Tighten => {
                let mut local_set = PolicySet::from_scan(local, eval_timeout);
                if let Some(e) = local_set.error() {
                    // A broken local file must not silently stop restricting: it denies every
                    // call, saying why. Refusing the set instead would keep the previous team
                    // revision in force while the file stays broken.
                    local_set = PolicySet::refused(format!(
                        "local policy files (local = \"tighten\"): {}",
                        e.replace('\n', "; ")
                    ));
                }
                let mut set = PolicySet::from_scan(
                    Sources {
                        files,
                        problems: Vec::new(),
                    },
                    eval_timeout,
                );
                set.tighten = Some(Arc::new(local_set));
                finish(set, &local_hash)
            }
        }
    }
}

/// A bundle's modules (tests left out) and data as policy files. The data is already placed as
/// OPA places it (`a/b/data.json` at `data.a.b`): one document merged at the root, the way local
/// data is merged.
fn bundle_files(verified: &Verified) -> Vec<SourceFile> {
    let bundle = &verified.bundle;
    let prefix = format!("bundle:{}", bundle.name);
    let mut files: Vec<SourceFile> = bundle
        .modules
        .iter()
        .filter(|m| !m.is_test())
        .map(|m| SourceFile {
            path: PathBuf::from(format!("{prefix}/{}", m.name)),
            kind: Kind::Rego,
            text: m.text.clone(),
        })
        .collect();
    if bundle.data.as_object().is_some_and(|d| !d.is_empty()) {
        files.push(SourceFile {
            path: PathBuf::from(format!("{prefix}/data.json")),
            kind: Kind::Data,
            text: bundle.data.to_string(),
        });
    }
    files
}

/// Two bundles may not share a root (one covering the other), as in OPA.
fn disjoint(active: &BTreeMap<String, Verified>) -> Result<(), String> {
    let all: Vec<&bundle::Bundle> = active.values().map(|v| &v.bundle).collect();
    bundle::check_disjoint(&all).map_err(|e| e.to_string())
}

/// With `local = "merge"`: no local package or data key may fall under (or over) a bundle root.
fn outside_roots(local: &Sources, active: &BTreeMap<String, Verified>) -> Result<(), String> {
    for file in &local.files {
        let paths: Vec<String> = match file.kind {
            // As the engine parses it: a text scan misses `package a["b"]` or a tab.
            Kind::Rego => vec![bundle::package_of(&file.name(), &file.text)
                .map_err(|e| format!("{} (local = \"merge\" needs its package)", e))?],
            Kind::Data => serde_json::from_str::<Map<String, Value>>(&file.text)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
        };
        for path in paths {
            for b in active.values().map(|v| &v.bundle) {
                let roots = &b.manifest.roots;
                // Over a root, too: a local `data.team` document would reach into root `team/x`.
                let over = roots
                    .iter()
                    .any(|r| root_covers(std::slice::from_ref(&path), r));
                if root_covers(roots, &path) || over {
                    return Err(format!(
                        "{}: {} overlaps the roots {roots:?} of bundle {} (local = \"merge\" keeps local files out of bundle roots; use local = \"tighten\" to restrict the bundle instead)",
                        file.name(),
                        path.replace('/', "."),
                        b.name
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Decision;

    const T: Duration = Duration::from_secs(1);

    fn config(required: bool) -> BundleConfig {
        toml::from_str(&format!(
            "url = \"file:///b.tar.gz\"\nrequired = {required}"
        ))
        .unwrap()
    }

    fn bundle(name: &str, root: &str, rego: &str) -> Verified {
        Verified {
            bundle: bundle::Bundle {
                name: name.into(),
                manifest: bundle::Manifest {
                    revision: "r1".into(),
                    roots: vec![root.into()],
                    ..Default::default()
                },
                modules: vec![bundle::Module {
                    name: "p.rego".into(),
                    text: rego.into(),
                    package: "behavry/authz".into(),
                }],
                data: json!({"behavry": {"limits": {"max": 3}}}),
                sha256: format!("sha-{name}"),
                signer: None,
                files: Vec::new(),
            },
            etag: None,
        }
    }

    fn local(rego: &str) -> Sources {
        Sources {
            files: vec![SourceFile {
                path: "local.rego".into(),
                kind: Kind::Rego,
                text: rego.into(),
            }],
            problems: Vec::new(),
        }
    }

    fn bundles(mode: Local, active: Vec<Verified>) -> Bundles {
        Bundles {
            configs: active
                .iter()
                .map(|b| (b.name().to_owned(), config(false)))
                .collect(),
            local: mode,
            active: active
                .into_iter()
                .map(|b| (b.name().to_owned(), b))
                .collect(),
            errors: BTreeMap::new(),
        }
    }

    const TEAM: &str = "package behavry.authz\nimport rego.v1\nallow if input.action.type == \"read\"\nallow if data.behavry.limits.max == input.n\n";
    const LOCAL_ALLOW_ALL: &str = "package behavry.authz\nimport rego.v1\nallow := true\n";
    const LOCAL_OTHER_PACKAGE: &str = "package local.rules\nimport rego.v1\nx := 1\n";

    fn decide(set: &PolicySet, input: Value) -> Decision {
        set.decide(&input).decision
    }

    #[test]
    fn tighten_never_widens_off_ignores_local_merge_refuses_overlap() {
        let read = json!({"action": {"type": "read"}});
        let write = json!({"action": {"type": "write"}});
        let placed = json!({"action": {"type": "write"}, "n": 3});
        let team = || vec![bundle("org", "behavry", TEAM)];

        let tighten = bundles(Local::Tighten, team()).compose(local(LOCAL_ALLOW_ALL), T);
        assert!(tighten.error().is_none(), "{:?}", tighten.error());
        assert_eq!(decide(&tighten, read.clone()), Decision::Allow);
        assert_eq!(
            decide(&tighten, write.clone()),
            Decision::Deny,
            "a local allow never widens"
        );
        assert_eq!(
            decide(&tighten, placed.clone()),
            Decision::Allow,
            "data at data.behavry.limits"
        );
        let deny_reads =
            "package behavry.authz\nimport rego.v1\ndeny if input.action.type == \"read\"\n";
        let tighter = bundles(Local::Tighten, team()).compose(local(deny_reads), T);
        assert_eq!(
            decide(&tighter, read.clone()),
            Decision::Deny,
            "a local deny counts"
        );
        assert_eq!(
            tighter.bundles.as_deref(),
            Some(r#"{"org":{"revision":"r1","sha256":"sha-org"}}"#)
        );

        let off = bundles(Local::Off, team()).compose(local(deny_reads), T);
        assert_eq!(
            decide(&off, read.clone()),
            Decision::Allow,
            "local files ignored"
        );

        let merge = bundles(Local::Merge, team()).compose(local(LOCAL_ALLOW_ALL), T);
        let verdict = merge.decide(&read);
        assert_eq!(verdict.decision, Decision::Deny);
        assert!(
            verdict.reasons[0]
                .contains("behavry.authz overlaps the roots [\"behavry\"] of bundle org"),
            "{:?}",
            verdict.reasons
        );
        // A local package beside the bundle's root merges.
        let merged = bundles(Local::Merge, team()).compose(local(LOCAL_OTHER_PACKAGE), T);
        assert!(merged.error().is_none(), "{:?}", merged.error());
        assert_eq!(decide(&merged, read.clone()), Decision::Allow);
    }

    /// Rego spells a package many ways; each is refused under a bundle root, as the parser reads it.
    #[test]
    fn merge_refuses_every_spelling_of_a_package_under_a_root() {
        let write = json!({"action": {"type": "write"}});
        for text in [
            "package behavry[\"authz\"]\nimport rego.v1\nallow := true\n",
            "package\tbehavry.authz\nimport rego.v1\nallow := true\n",
            "package\nbehavry.authz\nimport rego.v1\nallow := true\n",
            "# package local.rules\npackage  behavry.authz\nimport rego.v1\nallow := true\n",
        ] {
            let set =
                bundles(Local::Merge, vec![bundle("org", "behavry", TEAM)]).compose(local(text), T);
            let verdict = set.decide(&write);
            assert_eq!(verdict.decision, Decision::Deny, "{text:?}");
            assert!(
                verdict.reasons[0].contains("overlaps the roots"),
                "{text:?}: {:?}",
                verdict.reasons
            );
        }
    }

    /// Local files are the user's to write, and so an agent's: a broken or misplaced one must not
    /// keep a new team revision out. The revision goes in force; every call is denied, saying why.
    #[test]
    fn broken_local_files_deny_every_call_but_never_keep_a_team_revision_out() {
        let read = json!({"action": {"type": "read"}});
        let broken = "package behavry.authz\nallow if {\n";
        for (mode, text, why) in [
            (
                Local::Tighten,
                broken,
                "local policy files (local = \"tighten\")",
            ),
            (Local::Merge, broken, "local = \"merge\""),
            (Local::Merge, LOCAL_ALLOW_ALL, "overlaps the roots"),
        ] {
            let set = bundles(mode, vec![bundle("org", "behavry", TEAM)]).compose(local(text), T);
            assert_eq!(
                set.error(),
                None,
                "{mode:?} {text:?}: the revision goes in force"
            );
            assert_eq!(
                set.bundles.as_deref(),
                Some(r#"{"org":{"revision":"r1","sha256":"sha-org"}}"#)
            );
            let verdict = set.decide(&read);
            assert_eq!(verdict.decision, Decision::Deny, "{mode:?} {text:?}");
            assert!(
                verdict.reasons.iter().any(|r| r.contains(why)),
                "{mode:?} {text:?}: {:?}",
                verdict.reasons
            );
        }
    }

    #[test]
    fn overlapping_bundles_are_refused_and_required_ones_deny_until_downloaded() {
        let two = bundles(
            Local::Off,
            vec![
                bundle("a", "behavry", TEAM),
                bundle("b", "behavry/authz", TEAM),
            ],
        );
        let err = two
            .compose(Sources::default(), T)
            .error()
            .unwrap_or_default()
            .to_owned();
        assert!(
            err.contains("bundles `a` (root \"behavry\") and `b`"),
            "{err}"
        );

        let mut waiting = bundles(Local::Tighten, Vec::new());
        waiting.configs.insert("org".into(), config(true));
        waiting
            .errors
            .insert("org".into(), "GET http://127.0.0.1:1/b: refused".into());
        let set = waiting.compose(local(LOCAL_ALLOW_ALL), T);
        let verdict = set.decide(&json!({}));
        assert_eq!(verdict.decision, Decision::Deny);
        assert_eq!(
            verdict.reasons,
            ["the team policy bundle is not downloaded yet: GET http://127.0.0.1:1/b: refused"]
        );

        // Not required: the local files decide meanwhile.
        let optional = bundles(Local::Tighten, Vec::new());
        let set = optional.compose(local(LOCAL_ALLOW_ALL), T);
        assert_eq!(decide(&set, json!({})), Decision::Allow);
        assert_eq!(set.bundles, None);
    }

    #[test]
    fn the_hash_covers_the_bundle_digest() {
        let a = bundles(Local::Off, vec![bundle("org", "behavry", TEAM)]);
        let mut b = a.clone();
        if let Some(org) = b.active.get_mut("org") {
            org.bundle.sha256 = "other".into();
        }
        let (sa, sb) = (
            a.compose(Sources::default(), T),
            b.compose(Sources::default(), T),
        );
        assert_ne!(sa.hash, sb.hash);
    }
}
