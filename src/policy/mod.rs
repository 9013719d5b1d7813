//! Policy: the input a governed request presents to the rules ([`input`], pure), the files a policy
//! set is made of ([`source`]), the regorus engine that decides ([`engine`]), hot reload
//! ([`watch`]), and the tooling behind `behavry policy` ([`inspect`], [`testing`]). Nothing here
//! does I/O on the proxy path: reading and compiling happen at start and on the watcher's thread.

pub mod diagnostic;
pub mod engine;
pub mod input;
pub mod inspect;
pub mod source;
pub mod testing;
pub mod watch;

pub use diagnostic::Diagnostic;
pub use engine::{Decision, PolicySet, Verdict};
pub use watch::Live;
