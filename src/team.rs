//! Settings for teams: policy bundles pulled from the team's host (`[bundles.NAME]`, `[keys.ID]`,
//! `local`) and decisions pushed to the team's collector (`[decision_log]`).
//!
//! behavry stays local-first: every call is decided, held and journaled on the laptop, offline
//! too. A bundle only replaces (or, with `local = "tighten"`, sits above) the policy files on disk;
//! the exporter only reads what the journal already holds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// `[bundles.NAME]`: one OPA bundle, polled from `url`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleConfig {
    /// `https://…`, `http://` to a loopback host only, `file:///…`, or `oci://registry/repo:tag`.
    pub url: String,
    /// A file holding a bearer token sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// PEM certificates trusted for this host, beside the built-in (Mozilla) roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Polls sleep a random delay in [min, max] seconds, as OPA's do.
    #[serde(default = "default_min_delay")]
    pub min_delay_secs: u64,
    #[serde(default = "default_max_delay")]
    pub max_delay_secs: u64,
    /// Ask the server to hold a poll open this long (`Prefer: wait=N`), used only once the server
    /// has answered with OPA's bundle content type.
    #[serde(default)]
    pub long_poll_secs: Option<u64>,
    /// The largest archive accepted, packed.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// The largest archive accepted, unpacked (all entries together).
    #[serde(default = "default_max_unpacked_bytes")]
    pub max_unpacked_bytes: u64,
    /// The most entries an archive may hold.
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
    /// Until this bundle has been activated once, governed calls are denied.
    #[serde(default)]
    pub required: bool,
    /// With `signing`, an unsigned or badly signed archive is refused.
    #[serde(default)]
    pub signing: Option<Signing>,
}

fn default_min_delay() -> u64 {
    60
}
fn default_max_delay() -> u64 {
    120
}
fn default_max_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_max_unpacked_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_max_entries() -> u64 {
    10_000
}

/// `signing = { keyid = "…", scope = "…" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signing {
    /// The `[keys.ID]` entry that verifies this bundle's signature.
    pub keyid: String,
    /// When set, the signature's `scope` claim must equal it.
    #[serde(default)]
    pub scope: Option<String>,
}

/// `[keys.ID]`: a public key that bundle signatures are checked against.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub algorithm: Algorithm,
    /// A PEM public key (`-----BEGIN PUBLIC KEY-----`).
    pub key_file: PathBuf,
}

/// JWS algorithms a bundle may be signed with. No HS*: a shared secret on every laptop signs
/// nothing, since any of them could sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    ES256,
    ES384,
}

/// `local`: what the policy files on disk do once a bundle is configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Local {
    /// Local files run in a second engine whose `deny` and `escalate` count and whose `allow` is
    /// ignored: they can restrict the team policy, never widen it.
    #[default]
    Tighten,
    /// The bundle alone decides.
    Off,
    /// One policy set; refused if a local package or data key falls under a bundle root.
    Merge,
}

/// `[decision_log]`: where journal records are exported. The journal is the spool.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecisionLogConfig {
    /// `[decision_log.opa]`: an OPA decision-log receiver.
    pub opa: Option<OpaSink>,
    /// `[decision_log.otlp]`: an OpenTelemetry (OTLP/HTTP) logs endpoint.
    pub otlp: Option<OtlpSink>,
    /// Sent with every event (OPA `labels`, OTLP resource attributes).
    pub labels: BTreeMap<String, String>,
    /// How call arguments leave the machine.
    pub arguments: ExportArguments,
    /// Past this many unexported records, or records older than `max_backlog_secs`, the exporter
    /// skips ahead and sends an `export_gap` event naming the records skipped.
    pub max_backlog_rows: u64,
    pub max_backlog_secs: u64,
    /// How often the exporter reads new records.
    pub interval_secs: u64,
}

impl Default for DecisionLogConfig {
    fn default() -> Self {
        DecisionLogConfig {
            opa: None,
            otlp: None,
            labels: BTreeMap::new(),
            arguments: ExportArguments::default(),
            max_backlog_rows: 1_000_000,
            max_backlog_secs: 7 * 24 * 3600,
            interval_secs: 5,
        }
    }
}

/// `[decision_log.opa]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpaSink {
    /// Events are POSTed here, as a gzip JSON array.
    pub url: String,
    /// The `path` of every event (OPA's decision path).
    #[serde(default = "default_opa_path")]
    pub path: String,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_opa_path() -> String {
    "behavry/authz".into()
}

/// `[decision_log.otlp]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpSink {
    /// The collector's base URL; records go to `<endpoint>/v1/logs`.
    pub endpoint: String,
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// A file of `Name: value` lines sent as headers (e.g. an API key).
    #[serde(default)]
    pub headers_file: Option<PathBuf>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "http/json")]
    HttpJson,
}

/// `arguments` in `[decision_log]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportArguments {
    /// As the journal holds them: secret-looking values redacted.
    #[default]
    Redacted,
    /// Not sent.
    Omit,
    /// Replaced by the SHA-256 of their canonical JSON.
    Sha256,
}
