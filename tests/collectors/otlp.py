"""An OTLP/HTTP logs receiver (`POST /v1/logs`, protobuf or JSON), decoding with PyPI's
opentelemetry-proto; each LogRecord becomes one event: {event_name, severity, body,
attributes, resource}. See receiver.py."""

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from receiver import serve


def value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def attributes(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


def decode(path, headers, body):
    if path != "/v1/logs":
        raise ValueError(f"OTLP logs go to /v1/logs, not {path}")
    lower = {k.lower(): v for k, v in headers.items()}
    request = ExportLogsServiceRequest()
    if lower.get("content-type") == "application/json":
        json_format.Parse(body, request)
    else:
        request.ParseFromString(body)
    events = []
    for rl in request.resource_logs:
        resource = attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                events.append({
                    "event_name": r.event_name,
                    "severity": r.severity_text,
                    "time_unix_nano": r.time_unix_nano,
                    "body": value(r.body),
                    "attributes": attributes(r.attributes),
                    "resource": resource,
                    "scope": sl.scope.name,
                })
    return events


if __name__ == "__main__":
    serve(decode)
