//! Tells the user and the audit trail about policy reloads: a note on stderr (never stdout, the
//! MCP channel) and a `policy_reload` / `policy_reload_failed` record in the audit journal.

use serde_json::json;

use crate::audit::chain::Kind;
use crate::audit::AuditHandle;
use crate::display;
use crate::note;
use crate::policy::watch::Reload;
use crate::policy::PolicySet;

/// The callback the policy watcher calls after each reload.
pub(super) fn reporter(
    audit: AuditHandle,
    session_id: String,
    server: String,
) -> impl FnMut(Reload<'_>) + Send + 'static {
    move |reload| {
        let (kind, policy_hash, detail) = match reload {
            Reload::BundleActivated { set, bundle } => {
                note!(
                    "team bundle {} revision {} in force (hash {})",
                    display::escape(bundle.name()),
                    display::escape(bundle.revision()),
                    short(&set.hash)
                );
                let detail = json!({
                    "bundle": bundle.name(),
                    "revision": bundle.revision(),
                    "sha256": bundle.sha256(),
                    "etag": bundle.etag,
                    "signer": bundle.bundle.signer,
                });
                audit.bundle_activation(&session_id, &server, &set.hash, detail, false);
                return;
            }
            Reload::BundleRefused {
                name,
                revision,
                sha256,
                etag,
                errors,
                kept,
            } => {
                note!(
                    "team bundle {} refused; the policies in force (hash {}) stay: {}",
                    display::escape(name),
                    short(&kept.hash),
                    display::escape(&errors.join("; "))
                );
                let detail = json!({
                    "bundle": name, "revision": revision, "sha256": sha256, "etag": etag,
                    "errors": errors,
                });
                audit.bundle_activation(&session_id, &server, &kept.hash, detail, true);
                return;
            }
            Reload::BundleUnreachable { name, error } => {
                match error {
                    Some(e) => note!(
                        "team bundle {} could not be downloaded (retrying; the policies in force stay): {}",
                        display::escape(name),
                        display::escape(e)
                    ),
                    None => note!("team bundle {} can be downloaded again", display::escape(name)),
                }
                return;
            }
            Reload::Applied { set } => {
                note!(
                    "policies reloaded: {} in force (hash {})",
                    count(set),
                    short(&set.hash)
                );
                (
                    Kind::PolicyReload,
                    Some(set.hash.clone()),
                    json!({ "files": files(set) }),
                )
            }
            Reload::Rejected { failed, kept } => {
                let errors: Vec<String> = failed
                    .diagnostics()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                let report = failed.error_report().unwrap_or_default();
                match kept {
                    Some(kept) => note!(
                        "policy reload failed; the previous policies (hash {}) stay in force:\n{report}",
                        short(&kept.hash)
                    ),
                    None => note!(
                        "policy reload failed; every governed call stays denied until the policies compile:\n{report}"
                    ),
                }
                (
                    Kind::PolicyReloadFailed,
                    kept.map(|k| k.hash.clone()),
                    json!({ "errors": errors, "rejected_hash": failed.hash, "files": files(failed) }),
                )
            }
        };
        audit.policy_reload(
            &session_id,
            &server,
            policy_hash.as_deref(),
            detail,
            kind == Kind::PolicyReloadFailed,
        );
    }
}

fn files(set: &PolicySet) -> Vec<String> {
    set.files
        .iter()
        .chain(&set.data_files)
        .map(|f| f.display().to_string())
        .collect()
}

fn count(set: &PolicySet) -> String {
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    match set.data_files.len() {
        0 => plural(set.files.len(), "policy file"),
        n => format!(
            "{} and {}",
            plural(set.files.len(), "policy file"),
            plural(n, "data document")
        ),
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}
