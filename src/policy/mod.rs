//! Policy: the input a governed request presents to the rules ([`input`], pure), the canonical
//! form of the paths it names ([`canon`]: lexical and pure, then symlink resolution, the one
//! part that reads the file system), and the regorus engine that decides it ([`engine`]).

pub mod canon;
pub mod engine;
pub mod input;

pub use engine::{Decision, PolicySet, Verdict};
