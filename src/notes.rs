//! Diagnostic notes on stderr, written by a thread of their own so that a client that never reads
//! behavry's stderr cannot stall the proxy.
//!
//! [`note!`](crate::note) puts a line on a bounded queue and returns at once; one writer thread
//! writes the queue to stderr, blocking there if it must. When the queue is full, notes are counted
//! and dropped, and the count is reported (`behavry: N notes dropped: stderr was not being read`)
//! as soon as a write gets through again. On exit the queue is flushed (bounded: the client may
//! never read), so the last notes before exit appear.
//!
//! This module must never write to stdout: in `wrap`, stdout carries MCP frames.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Notes queued before new ones are dropped. Notes are short; a burst past this means nobody is
/// reading them anyway.
pub const CAPACITY: usize = 1024;

/// How long exit waits for queued notes to reach stderr. Claude Code kills a server about 1.3 s
/// after asking it to stop; a reader that has not drained stderr by then never will.
pub const EXIT_FLUSH: Duration = Duration::from_millis(500);

/// A queue of notes and the thread writing them to a sink.
pub struct Notes {
    queue: SyncSender<String>,
    progress: Arc<Progress>,
}

/// What the writer thread has done, for [`Notes::flush`] to wait on.
#[derive(Default)]
struct Progress {
    /// Notes accepted onto the queue.
    queued: AtomicU64,
    /// Notes dropped since the last report of drops.
    dropped: AtomicU64,
    /// Notes the writer is finished with (written, or failed to write).
    done: Mutex<u64>,
    wrote: Condvar,
}

impl Notes {
    /// Starts a writer thread that writes notes to `sink`, one line each.
    pub fn start(sink: impl Write + Send + 'static, capacity: usize) -> Notes {
        let (queue, rx) = mpsc::sync_channel::<String>(capacity);
        let progress = Arc::new(Progress::default());
        let shared = progress.clone();
        // Without a thread the receiver is dropped, so every note counts as dropped: nothing
        // better is possible, and the caller never blocks.
        let _ = std::thread::Builder::new()
            .name("behavry-notes".into())
            .spawn(move || {
                let mut sink = sink;
                for line in rx {
                    // A failed write (stderr closed) loses only this note.
                    let _ = writeln!(sink, "{line}").and_then(|()| sink.flush());
                    let dropped = shared.dropped.swap(0, Ordering::SeqCst);
                    if dropped > 0 {
                        let _ = writeln!(
                            sink,
                            "behavry: {dropped} {} dropped: stderr was not being read",
                            if dropped == 1 { "note" } else { "notes" }
                        )
                        .and_then(|()| sink.flush());
                    }
                    let mut done = shared.done.lock().unwrap_or_else(|p| p.into_inner());
                    *done += 1;
                    shared.wrote.notify_all();
                }
            });
        Notes { queue, progress }
    }

    /// Queues `line`; never blocks. A full queue drops it (and counts it).
    pub fn push(&self, line: String) {
        match self.queue.try_send(line) {
            Ok(()) => {
                self.progress.queued.fetch_add(1, Ordering::SeqCst);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.progress.dropped.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Waits until every note queued so far is written, or `limit` passes; whether they were.
    pub fn flush(&self, limit: Duration) -> bool {
        let target = self.progress.queued.load(Ordering::SeqCst);
        let deadline = Instant::now() + limit;
        let mut done = self.progress.done.lock().unwrap_or_else(|p| p.into_inner());
        while *done < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            done = match self.progress.wrote.wait_timeout(done, left) {
                Ok((done, _)) => done,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }

    /// Notes dropped and not yet reported.
    pub fn dropped(&self) -> u64 {
        self.progress.dropped.load(Ordering::SeqCst)
    }
}

static STDERR: OnceLock<Notes> = OnceLock::new();

/// The process's notes, written to stderr; started on first use, flushed at exit.
fn stderr() -> &'static Notes {
    STDERR.get_or_init(|| {
        extern "C" fn flush_at_exit() {
            if let Some(notes) = STDERR.get() {
                notes.flush(EXIT_FLUSH);
            }
        }
        // SAFETY: registers a plain function with no arguments; it runs on `exit` (and on return
        // from `main`), reads a static that is never torn down, and never unwinds.
        unsafe {
            libc::atexit(flush_at_exit);
        }
        Notes::start(std::io::stderr(), CAPACITY)
    })
}

/// Queues a line for stderr. Use [`note!`](crate::note).
pub fn note(args: std::fmt::Arguments) {
    stderr().push(format!("behavry: {args}"));
}

/// Waits (at most `limit`) until every note queued so far reached stderr.
pub fn flush(limit: Duration) -> bool {
    STDERR.get().is_none_or(|notes| notes.flush(limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::Receiver;

    /// A sink whose first write blocks until the test lets it through, like a pipe nobody reads.
    struct Stuck {
        entered: SyncSender<()>,
        release: Receiver<()>,
        stuck: bool,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if !self.stuck {
                self.stuck = true;
                let _ = self.entered.send(());
                let _ = self.release.recv();
            }
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_sink_never_blocks_the_caller_and_drops_are_reported() {
        let (entered, entered_rx) = mpsc::sync_channel(1);
        let (release, release_rx) = mpsc::channel();
        let out = Arc::new(Mutex::new(Vec::new()));
        let notes = Notes::start(
            Stuck {
                entered,
                release: release_rx,
                stuck: false,
                out: out.clone(),
            },
            4,
        );
        notes.push("first".into());
        entered_rx.recv().unwrap();
        // The writer is stuck on "first": four fit in the queue, the other six are dropped, and
        // none of these calls blocks.
        for i in 0..10 {
            notes.push(format!("n{i}"));
        }
        assert_eq!(notes.dropped(), 6);
        assert!(!notes.flush(Duration::from_millis(10)), "still stuck");
        release.send(()).unwrap();
        assert!(notes.flush(Duration::from_secs(20)));
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "first\nbehavry: 6 notes dropped: stderr was not being read\nn0\nn1\nn2\nn3\n"
        );
        assert_eq!(notes.dropped(), 0);
    }

    #[test]
    fn flush_waits_for_every_queued_note() {
        let out = Arc::new(Mutex::new(Vec::new()));
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let notes = Notes::start(Shared(out.clone()), 64);
        for i in 0..50 {
            notes.push(format!("n{i}"));
        }
        assert!(notes.flush(Duration::from_secs(20)));
        assert_eq!(
            out.lock().unwrap().iter().filter(|&&b| b == b'\n').count(),
            50
        );
    }
}
