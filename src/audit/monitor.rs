//! Which servers run in monitor mode, as the people reading the store must be told: their calls
//! are forwarded whatever the policy decides, and nothing of theirs is ever held for approval.

use super::LogEntry;

/// The servers whose latest session among `rows` ran in monitor mode (decided a call without
/// enforcing it: in monitor mode only what no policy could allow is still enforced).
pub fn monitored_servers(rows: &[LogEntry]) -> Vec<String> {
    // Server → its latest session, and whether that session left an unenforced row.
    let mut latest: Vec<(&str, &str, bool)> = Vec::new();
    for row in rows {
        match latest.iter_mut().find(|(s, _, _)| *s == row.server) {
            Some(seen) if seen.1 == row.session_id => seen.2 |= !row.enforced,
            Some(seen) => *seen = (&row.server, &row.session_id, !row.enforced),
            None => latest.push((&row.server, &row.session_id, !row.enforced)),
        }
    }
    let mut servers: Vec<String> = latest
        .into_iter()
        .filter(|(_, _, monitored)| *monitored)
        .map(|(s, _, _)| s.to_owned())
        .collect();
    servers.sort();
    servers
}

/// The warning line shown above held calls when `servers` run in monitor mode; `None` if none do.
pub fn banner(servers: &[String]) -> Option<String> {
    if servers.is_empty() {
        return None;
    }
    let names = servers
        .iter()
        .map(|s| crate::display::escape(s).into_owned())
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "MONITOR mode ({names}): calls are forwarded unenforced, never held here"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(server: &str, session: &str, enforced: bool) -> LogEntry {
        LogEntry {
            id: 1,
            ts: String::new(),
            session_id: session.into(),
            server: server.into(),
            tool: "t".into(),
            method: "tools/call".into(),
            action_type: "read".into(),
            resource_path: None,
            paths: vec![],
            decision: "allow".into(),
            resolution: None,
            reasons: vec![],
            arguments: serde_json::json!({}),
            agent: String::new(),
            requester: String::new(),
            channel: String::new(),
            request_id: "1".into(),
            outcome: None,
            duration_ms: None,
            policy_hash: String::new(),
            resolved_by: None,
            resolved_at: None,
            enforced,
            bundles: None,
        }
    }

    #[test]
    fn the_latest_session_of_each_server_says_whether_it_is_monitored() {
        let rows = [
            row("fs", "1", false),
            row("gh", "2", true),
            row("fs", "3", true),
            row("gh", "2", false),
            // A refusal no policy could lift is enforced even in monitor mode.
            row("gh", "2", true),
            row("db", "4", false),
        ];
        assert_eq!(monitored_servers(&rows), ["db", "gh"]);
        assert_eq!(monitored_servers(&rows[..3]), Vec::<String>::new());
        assert_eq!(banner(&[]), None);
        let line = banner(&["gh".into()]).unwrap_or_default();
        assert!(line.starts_with("MONITOR mode (gh)"), "{line}");
    }
}
