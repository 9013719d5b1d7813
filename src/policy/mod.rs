//! Policy: the input a governed request presents to the rules ([`input`], pure) and the regorus
//! engine that decides it ([`engine`]). Nothing here does I/O on the proxy path.

pub mod engine;
pub mod input;

pub use engine::{Decision, PolicySet, Verdict};
