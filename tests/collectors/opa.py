"""An OPA decision-log receiver (`POST /logs`, a gzip JSON array of events); see receiver.py."""

import gzip
import json

from receiver import serve


def decode(path, headers, body):
    lower = {k.lower(): v for k, v in headers.items()}
    if lower.get("content-encoding") != "gzip":
        raise ValueError("OPA decision logs are gzip-compressed (Content-Encoding: gzip)")
    events = json.loads(gzip.decompress(body))
    if not isinstance(events, list):
        raise ValueError("the body is not a JSON array")
    return events


if __name__ == "__main__":
    serve(decode)
