//! The two sinks: an OPA decision-log receiver (gzip JSON array of OPA's event shape) and an
//! OTLP/HTTP logs endpoint (`http/protobuf` or `http/json`). Each turns a batch of [`Event`]s
//! into one request body; [`post`] sends it and says what the answer means for the cursor.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use serde_json::{json, Map, Value};

use super::event::Event;
use crate::team::{OpaSink, OtlpProtocol, OtlpSink};

/// How long one request may take, end to end. A collector that never answers costs the exporter
/// this much per attempt, and the proxy nothing (it never waits on the exporter).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait between attempts, whatever `Retry-After` asks for.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Who sends: what every event says about the machine it comes from.
#[derive(Debug, Clone)]
pub struct Origin {
    pub instance_id: String,
    pub host_name: String,
    /// `[decision_log] labels`.
    pub labels: BTreeMap<String, String>,
}

/// One configured sink.
#[derive(Debug, Clone)]
pub enum Sink {
    Opa(OpaSink),
    Otlp(OtlpSink),
}

impl Sink {
    /// The name its cursor is kept under.
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Opa(_) => "opa",
            Sink::Otlp(_) => "otlp",
        }
    }

    /// Where batches are POSTed.
    pub fn url(&self) -> String {
        match self {
            Sink::Opa(opa) => opa.url.clone(),
            Sink::Otlp(otlp) => format!("{}/v1/logs", otlp.endpoint.trim_end_matches('/')),
        }
    }

    /// The request body and its headers for a batch.
    pub fn encode(&self, origin: &Origin, events: &[Event]) -> std::io::Result<Request> {
        match self {
            Sink::Opa(opa) => {
                let array: Vec<Value> = events.iter().map(|e| opa_event(opa, origin, e)).collect();
                let json = serde_json::to_vec(&array)?;
                let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
                gz.write_all(&json)?;
                Ok(Request {
                    body: gz.finish()?,
                    headers: vec![
                        ("Content-Type".into(), "application/json".into()),
                        ("Content-Encoding".into(), "gzip".into()),
                    ],
                })
            }
            Sink::Otlp(otlp) => {
                let request = otlp_request(origin, events);
                let (body, content_type) = match otlp.protocol {
                    OtlpProtocol::HttpProtobuf => {
                        (request.encode_to_vec(), "application/x-protobuf")
                    }
                    OtlpProtocol::HttpJson => (serde_json::to_vec(&request)?, "application/json"),
                };
                Ok(Request {
                    body,
                    headers: vec![("Content-Type".into(), content_type.into())],
                })
            }
        }
    }

    /// Headers from `token_file` / `headers_file`, read at each send so a rotated secret is
    /// picked up. An unreadable file is an error: sending without the credential would only be
    /// refused.
    pub fn auth_headers(&self) -> Result<Vec<(String, String)>, String> {
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "cannot read {}: {e}; fix the file or the path in [decision_log]",
                    path.display()
                )
            })
        };
        match self {
            Sink::Opa(opa) => match &opa.token_file {
                Some(path) => Ok(vec![(
                    "Authorization".into(),
                    format!("Bearer {}", read(path)?.trim()),
                )]),
                None => Ok(Vec::new()),
            },
            Sink::Otlp(otlp) => match &otlp.headers_file {
                Some(path) => Ok(read(path)?
                    .lines()
                    .filter_map(|line| line.split_once(':'))
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .filter(|(k, _)| !k.is_empty())
                    .collect()),
                None => Ok(Vec::new()),
            },
        }
    }

    fn ca_file(&self) -> Option<&std::path::Path> {
        match self {
            Sink::Opa(opa) => opa.ca_file.as_deref(),
            Sink::Otlp(otlp) => otlp.ca_file.as_deref(),
        }
    }
}

/// A request body, ready to send.
pub struct Request {
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// What a sink's answer means for the batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// 2xx: the cursor moves past the batch.
    Accepted,
    /// 429/502/503/504, a 5xx or no answer: send the same batch again, after `after` if the
    /// server said (`Retry-After`).
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Any other 4xx: the server will never take this batch; park it and move on.
    Rejected { status: u16, error: String },
}

/// What the status code of an answer means (OTLP's "Failures": retry only 429, 502, 503, 504;
/// other 5xx are retried too, since a decision log is worth more than OTLP's default of
/// dropping it). `retry_after` is the header's value, if any.
pub fn classify(status: u16, retry_after: Option<&str>, detail: &str) -> Delivery {
    match status {
        200..=299 => Delivery::Accepted,
        429 | 500..=599 => Delivery::Retry {
            error: format!("HTTP {status}{detail}"),
            after: retry_after.and_then(parse_retry_after),
        },
        _ => Delivery::Rejected {
            status,
            error: format!("HTTP {status}{detail}"),
        },
    }
}

/// `Retry-After`: delay-seconds or an HTTP date, capped at [`MAX_BACKOFF`].
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let after = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let format = time::format_description::well_known::Rfc2822;
        let at = time::OffsetDateTime::parse(value, &format).ok()?;
        let secs = (at - time::OffsetDateTime::now_utc())
            .whole_seconds()
            .max(0);
        Duration::from_secs(secs as u64)
    };
    Some(after.min(MAX_BACKOFF))
}

/// The wait before attempt `failures + 1`: exponential from 1 s, capped at [`MAX_BACKOFF`], with
/// jitter in [half, all] of it so many laptops behind one collector do not retry in step.
/// `random` is any number (the caller draws it).
pub fn backoff(failures: u32, random: u64) -> Duration {
    let full = Duration::from_secs(1u64 << failures.min(9)).min(MAX_BACKOFF);
    let millis = full.as_millis() as u64;
    let half = millis / 2;
    Duration::from_millis(half + random % (millis - half + 1))
}

/// Decision logs say what agents did, with their arguments: they go over TLS, or over plain HTTP
/// only where they never leave the machine (a local Collector).
pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!(
            "{url} is not an https:// URL; fix it in [decision_log]"
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "refusing to send decision logs to {url} over plain http; use https:// (http:// is \
             only for a loopback address such as 127.0.0.1)"
        ))
    }
}

/// Sends one batch.
pub fn post(sink: &Sink, request: &Request) -> Delivery {
    if let Err(error) = check_url(&sink.url()) {
        return Delivery::Retry { error, after: None };
    }
    let headers = match sink.auth_headers() {
        Ok(headers) => headers,
        Err(error) => return Delivery::Retry { error, after: None },
    };
    let agent = match agent(sink.ca_file()) {
        Ok(agent) => agent,
        Err(error) => return Delivery::Retry { error, after: None },
    };
    let mut builder = agent.post(sink.url());
    for (name, value) in request.headers.iter().chain(&headers) {
        builder = builder.header(name.as_str(), value.as_str());
    }
    match builder.send(&request.body[..]) {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let detail = if (200..300).contains(&status) {
                String::new()
            } else {
                // The first line of what the server said, for `export status`.
                let text = response
                    .body_mut()
                    .with_config()
                    .limit(4096)
                    .read_to_string()
                    .unwrap_or_default();
                let line = text.lines().next().unwrap_or("").trim();
                let line: String = line.chars().take(200).collect();
                if line.is_empty() {
                    String::new()
                } else {
                    format!(": {line}")
                }
            };
            classify(status, retry_after.as_deref(), &detail)
        }
        Err(e) => Delivery::Retry {
            error: format!("cannot reach {}: {e}", sink.url()),
            after: None,
        },
    }
}

fn agent(ca_file: Option<&std::path::Path>) -> Result<ureq::Agent, String> {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .max_redirects(0);
    if let Some(path) = ca_file {
        let roots =
            crate::tls::roots_with(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        config = config.tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build());
    }
    Ok(config.build().new_agent())
}

/// One OPA decision-log event (OPA's fields, plus `instance_id`, `seq`, `hash` and `kind`).
fn opa_event(opa: &OpaSink, origin: &Origin, event: &Event) -> Value {
    let mut labels: Map<String, Value> = origin
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    // OPA's own labels: its instance and version.
    labels.insert("id".into(), json!(origin.instance_id));
    labels.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    json!({
        "decision_id": event.decision_id,
        "labels": labels,
        "bundles": event.bundles,
        "path": opa.path,
        "input": event.input,
        "result": event.result,
        "requested_by": event.requested_by,
        "timestamp": event.ts,
        "metrics": {},
        "erased": event.erased,
        "instance_id": origin.instance_id,
        "seq": event.seq,
        "hash": event.hash,
        "kind": event.kind,
    })
}

fn string(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// A JSON value as an OTLP `AnyValue` (objects as key-value lists).
fn any(value: &Value) -> AnyValue {
    let value = match value {
        Value::Null => None,
        Value::Bool(b) => Some(any_value::Value::BoolValue(*b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or_default()),
        }),
        Value::String(s) => Some(any_value::Value::StringValue(s.clone())),
        Value::Array(items) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().map(any).collect(),
        })),
        Value::Object(map) => Some(any_value::Value::KvlistValue(
            opentelemetry_proto::tonic::common::v1::KeyValueList {
                values: map
                    .iter()
                    .map(|(k, v)| KeyValue {
                        key: k.clone(),
                        value: Some(any(v)),
                        ..Default::default()
                    })
                    .collect(),
            },
        )),
    };
    AnyValue { value }
}

/// OTLP severities: INFO 9, WARN 13, ERROR 17.
fn severity(event: &Event) -> (i32, &'static str) {
    let decision = event.result.get("decision").and_then(Value::as_str);
    match (event.kind.as_str(), decision) {
        ("decision", Some("allow")) => (9, "INFO"),
        ("decision", _) => (13, "WARN"),
        ("export_gap" | "export_rejected" | "policy_reload_failed", _) => (17, "ERROR"),
        (kind, _) if kind.ends_with("_failed") => (17, "ERROR"),
        _ => (9, "INFO"),
    }
}

fn unix_nanos(ts: &str) -> u64 {
    let format = time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(ts, &format)
        .map(|t| t.unix_timestamp_nanos().max(0) as u64)
        .unwrap_or_default()
}

/// The batch as one OTLP `ExportLogsServiceRequest`: one resource (this machine), one scope.
pub fn otlp_request(origin: &Origin, events: &[Event]) -> ExportLogsServiceRequest {
    let mut resource = vec![
        string("service.name", "behavry"),
        string("service.version", env!("CARGO_PKG_VERSION")),
        string("service.instance.id", origin.instance_id.clone()),
        string("host.name", origin.host_name.clone()),
    ];
    resource.extend(origin.labels.iter().map(|(k, v)| string(k, v.clone())));
    let now = unix_nanos(&crate::audit::store::now_rfc3339());
    let records = events
        .iter()
        .map(|event| {
            let (severity_number, severity_text) = severity(event);
            let mut attributes = vec![
                string("behavry.instance_id", origin.instance_id.clone()),
                KeyValue {
                    key: "behavry.seq".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::IntValue(event.seq)),
                    }),
                    ..Default::default()
                },
                string("behavry.hash", event.hash.clone()),
                string("behavry.kind", event.kind.clone()),
            ];
            if let Some(id) = &event.decision_id {
                attributes.push(string("behavry.decision_id", id.clone()));
            }
            for (key, value) in &event.facts {
                attributes.push(KeyValue {
                    key: format!("behavry.{key}"),
                    value: Some(any(value)),
                    ..Default::default()
                });
            }
            if event.kind == "decision" {
                for (key, value) in [
                    ("behavry.input", &event.input),
                    ("behavry.result", &event.result),
                    ("behavry.bundles", &event.bundles),
                ] {
                    attributes.push(string(key, value.to_string()));
                }
            }
            attributes.push(KeyValue {
                key: "behavry.erased".into(),
                value: Some(any(&json!(event.erased))),
                ..Default::default()
            });
            LogRecord {
                time_unix_nano: unix_nanos(&event.ts),
                observed_time_unix_nano: now,
                severity_number,
                severity_text: severity_text.into(),
                // The record's result (a decision's verdict, another record's body) as JSON text:
                // what a person reading the collector's output sees first.
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(event.result.to_string())),
                }),
                attributes,
                event_name: event.name(),
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "behavry".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_what_happens_to_the_batch() {
        let table: &[(u16, Option<&str>, &str)] = &[
            (200, None, "accepted"),
            (204, None, "accepted"),
            (429, Some("7"), "retry 7"),
            (503, None, "retry"),
            (502, Some("Wed, 21 Oct 2015 07:28:00 GMT"), "retry 0"),
            (504, Some("9999"), "retry 300"),
            (500, None, "retry"),
            (400, None, "rejected"),
            (413, Some("5"), "rejected"),
        ];
        for (status, after, want) in table {
            let got = match classify(*status, *after, "") {
                Delivery::Accepted => "accepted".to_owned(),
                Delivery::Retry { after: None, .. } => "retry".to_owned(),
                Delivery::Retry { after: Some(d), .. } => format!("retry {}", d.as_secs()),
                Delivery::Rejected { .. } => "rejected".to_owned(),
            };
            assert_eq!(got, *want, "{status} {after:?}");
        }
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let table = [
            ("https://otel.example.com:4318/v1/logs", true),
            ("http://127.0.0.1:4318/v1/logs", true),
            ("http://localhost/logs", true),
            ("http://[::1]:9000/logs", true),
            ("http://127.9.9.9/logs", true),
            ("http://otel.example.com/v1/logs", false),
            ("http://127.0.0.1.example.com/logs", false),
            ("http://127.0.0.1@evil.example.com/logs", false),
            ("http://10.0.0.1/logs", false),
            ("ftp://127.0.0.1/logs", false),
            ("otel.example.com", false),
        ];
        for (url, ok) in table {
            assert_eq!(check_url(url).is_ok(), ok, "{url}");
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_stays_under_five_minutes() {
        for failures in 0..40 {
            for random in [0, 1, 12345, u64::MAX] {
                let d = backoff(failures, random);
                let full = Duration::from_secs(1u64 << failures.min(9)).min(MAX_BACKOFF);
                assert!(d >= full / 2 && d <= full, "{failures} {random} {d:?}");
            }
        }
        assert!(backoff(3, 0) < backoff(6, 0));
    }
}
