//! Policy: the input a governed request presents to the rules ([`input`], pure), the canonical
//! form of the paths it names ([`canon`]: lexical and pure, then symlink resolution, the one part
//! that reads the file system), the files a policy set is made of ([`source`]), the regorus engine
//! that decides ([`engine`]), hot reload ([`watch`]), and the tooling behind `behavry policy`
//! ([`inspect`], [`testing`]). Reading and compiling policies happen at start and on the watcher's
//! thread, never on the proxy path.

pub mod canon;
pub mod diagnostic;
pub mod engine;
pub mod input;
pub mod inspect;
pub mod replay;
pub mod source;
pub mod testing;
pub mod visible;
pub mod watch;

pub use diagnostic::Diagnostic;
pub use engine::{Decision, PolicySet, Verdict};
pub use watch::Live;
