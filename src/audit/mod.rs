//! The audit trail: a SQLite store shared by every wrapper and reader ([`store`]), and the thread
//! that owns a wrapper's connection so blocking SQLite calls stay off the async workers
//! ([`writer`]); the exporter's cursors and lease ([`export`]).

pub mod bundles;
pub mod chain;
pub mod export;
pub mod inputs;
pub mod monitor;
pub mod pins;
pub mod store;
pub mod writer;

pub use store::{
    DecisionRow, EventEntry, EventFilter, LogEntry, LogFilter, Outcome, RefusedFrame,
    SessionRecord, Store, StoreError,
};
pub use writer::AuditHandle;
