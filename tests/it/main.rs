//! behavry's integration tests: one binary (one link, shared helpers), one module per concern.
//! Each drives the real `behavry` binary (see [`common`]) in a temporary `BEHAVRY_HOME`.

mod approve;
mod approve_tui;
mod attacks;
mod audit;
mod bundle;
mod claude_code;
mod claude_hook;
mod common;
mod e2e;
mod elicit;
mod export;
mod fuzz_smoke;
mod go_server;
mod hook;
mod launch;
mod managed;
mod messages_api;
mod oci;
mod paths;
mod policy;
mod pull;
mod rollout;
mod setup;
mod stderr;
mod team;
mod transparent;
mod wrap;
