//! The processes behavry knows as agents, and whether a terminal is driven by one of them: the
//! approver's guard against an agent approving its own calls (`script -qfec 'behavry approve'`
//! with keys piped in).
//!
//! Agents behavry knows: the Claude Code process each `behavry hook` runs under (recorded in
//! `<data dir>/agents/`), the client of every wrapper holding a call (the wrapper's parent), and
//! any process whose environment says Claude Code started it (`CLAUDECODE=1`, set in the shells
//! its Bash tool runs). A terminal is driven by an agent when the approver itself, or a process
//! holding the master side of its pseudo-terminal, descends from one. Linux only (`/proc`);
//! elsewhere nothing is found and the approver runs.

use std::path::{Path, PathBuf};

use crate::audit::store::Owner;

/// Shells the hook command may run under between Claude Code and behavry (`sh -c '…'`).
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "fish", "ksh", "env"];

/// More ancestors than any real process tree has; a loop in `/proc` ends here.
const MAX_DEPTH: usize = 128;

/// `/proc/<pid>/stat`: parent pid, command name, start time.
#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    pub ppid: u32,
    pub comm: String,
    pub start: i64,
}

pub fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name may hold spaces and parentheses: it ends at the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    Some(Stat {
        ppid: fields.get(1)?.parse().ok()?,
        comm,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// `pid` and its ancestors, nearest first, up to (not including) pid 1 and 0.
pub fn ancestry(pid: u32) -> Vec<Owner> {
    let mut chain = Vec::new();
    let mut pid = pid;
    while pid > 1 && chain.len() < MAX_DEPTH {
        let Some(s) = stat(pid) else { break };
        chain.push(Owner {
            pid,
            start: s.start,
        });
        pid = s.ppid;
    }
    chain
}

/// The agent a hook runs for: the first ancestor above the hook that is not a shell.
pub fn hook_agent() -> Option<Owner> {
    // SAFETY: getppid cannot fail.
    let parent = unsafe { libc::getppid() } as u32;
    let mut pid = parent;
    for _ in 0..MAX_DEPTH {
        let s = stat(pid)?;
        if !SHELLS.contains(&s.comm.as_str()) {
            return (pid > 1).then_some(Owner {
                pid,
                start: s.start,
            });
        }
        pid = s.ppid;
    }
    None
}

/// The directory where hooks record their agents.
pub fn registry(data_dir: &Path) -> PathBuf {
    data_dir.join("agents")
}

/// Records `agent` (once: an existing entry costs one `stat`).
pub fn register(dir: &Path, agent: Owner) -> std::io::Result<()> {
    let entry = dir.join(format!("{}-{}", agent.pid, agent.start));
    if entry.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(entry, b"")
}

/// The recorded agents still running; entries of agents that exited are removed.
pub fn registered(dir: &Path) -> Vec<Owner> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut alive = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((pid, start)) = name.to_str().and_then(|n| n.split_once('-')) else {
            continue;
        };
        let (Ok(pid), Ok(start)) = (pid.parse(), start.parse()) else {
            continue;
        };
        let agent = Owner { pid, start };
        if agent.is_alive() {
            alive.push(agent);
        } else {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    alive
}

/// The parent of each wrapper (`owners` of held calls): the client that launched it.
pub fn clients_of(owners: &[Owner]) -> Vec<Owner> {
    owners
        .iter()
        .filter(|o| o.is_alive())
        .filter_map(|o| stat(o.pid))
        .filter(|s| s.ppid > 1)
        .filter_map(|s| {
            stat(s.ppid).map(|p| Owner {
                pid: s.ppid,
                start: p.start,
            })
        })
        .collect()
}

/// The pseudo-terminal on fd 0 of this process: the `N` of `/dev/pts/N`.
pub fn own_pts() -> Option<u32> {
    let target = std::fs::read_link("/proc/self/fd/0").ok()?;
    target.to_str()?.strip_prefix("/dev/pts/")?.parse().ok()
}

/// Processes holding the master side of `/dev/pts/<index>` (the terminal emulator, tmux, or
/// `script` run by whoever drives it), found through `/proc/*/fdinfo` `tty-index`.
pub fn pty_masters(index: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for proc_entry in procs.flatten() {
        let Some(pid) = proc_entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            let is_ptmx = std::fs::read_link(fd.path())
                .is_ok_and(|t| t == Path::new("/dev/ptmx") || t == Path::new("/dev/pts/ptmx"));
            is_ptmx
                && std::fs::read_to_string(proc_entry.path().join("fdinfo").join(fd.file_name()))
                    .is_ok_and(|info| tty_index(&info) == Some(index))
        });
        if holds {
            found.push(pid);
        }
    }
    found
}

fn tty_index(fdinfo: &str) -> Option<u32> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("tty-index:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether Claude Code started this process: its Bash tool sets `CLAUDECODE=1`.
fn started_by_claude_code(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == b"CLAUDECODE=1"))
}

/// Why the approver must not run: which process drives its terminal and which agent it
/// descends from.
#[derive(Debug, Clone, PartialEq)]
pub struct Driven {
    /// The approver, or a process holding its terminal's master side.
    pub via: u32,
    pub via_name: String,
    /// The agent it descends from (itself, possibly).
    pub agent: u32,
    pub agent_name: String,
    pub how: &'static str,
}

impl std::fmt::Display for Driven {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "this terminal is driven by {} (pid {}), which descends from {} (pid {}), {}",
            crate::display::escape(&self.via_name),
            self.via,
            crate::display::escape(&self.agent_name),
            self.agent,
            self.how
        )
    }
}

/// Checks the approver (`me`) and the processes behind its terminal against `agents`.
pub fn driven_by_agent(me: u32, agents: &[Owner]) -> Option<Driven> {
    let mut drivers = vec![me];
    if let Some(index) = own_pts() {
        drivers.extend(pty_masters(index));
    }
    for via in drivers {
        for ancestor in ancestry(via) {
            let how = if agents.contains(&ancestor) {
                "an agent behavry governs"
            } else if started_by_claude_code(ancestor.pid) {
                "a process Claude Code started (CLAUDECODE=1)"
            } else {
                continue;
            };
            let name = |pid| stat(pid).map(|s| s.comm).unwrap_or_else(|| "?".into());
            return Some(Driven {
                via,
                via_name: name(via),
                agent: ancestor.pid,
                agent_name: name(ancestor.pid),
                how,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_awkward_names() {
        let line =
            "4242 (my (odd) cmd) S 4200 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                ppid: 4200,
                comm: "my (odd) cmd".into(),
                start: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(tty_index("pos:\t0\nflags:\t02\ntty-index:\t7\n"), Some(7));
        assert_eq!(tty_index("pos:\t0\n"), None);
    }

    #[test]
    fn this_process_has_an_ancestry_and_the_registry_forgets_the_dead() {
        let me = Owner::current();
        let chain = ancestry(me.pid);
        assert_eq!(chain.first(), Some(&me));
        let dir = tempfile::tempdir().unwrap();
        register(dir.path(), me).unwrap();
        register(dir.path(), me).unwrap();
        let dead = Owner {
            pid: me.pid,
            start: me.start + 1,
        };
        register(dir.path(), dead).unwrap();
        std::fs::write(dir.path().join("not-an-entry"), "").unwrap();
        assert_eq!(registered(dir.path()), vec![me]);
        assert!(!dir
            .path()
            .join(format!("{}-{}", dead.pid, dead.start))
            .exists());
    }

    #[test]
    fn an_agent_among_the_ancestors_is_found() {
        let me = Owner::current();
        let found = driven_by_agent(me.pid, &[me]).expect("itself is an agent");
        assert_eq!(found.agent, me.pid);
        assert!(found.to_string().contains("an agent behavry governs"));
    }
}
