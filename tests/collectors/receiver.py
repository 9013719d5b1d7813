"""A collector stand-in for behavry's decision-log tests: an HTTP server on 127.0.0.1 that
decodes each POST with the sink's own format and appends what it got to a JSON-lines file.

    python3 opa.py|otlp.py --port P --out FILE [--control FILE]

Prints "listening PORT" once bound (P = 0 picks a free port). Each request appends one line:
{"t": unix time, "path", "status": the answer given, "events": [decoded events]}.

The control file, read at every request, makes it misbehave: {"status": 503, "retry_after":
"3", "times": 2} answers 503 (with Retry-After) to the next 2 requests (every request without
"times"); {"hang": true} records the request and never answers.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(decode):
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--control")
    args = parser.parse_args()
    lock = threading.Lock()
    served = {}  # control text -> failures answered under it

    def control():
        if not args.control:
            return None
        try:
            with open(args.control) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        return text, json.loads(text)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            try:
                events = decode(self.path, dict(self.headers.items()), body)
                status, headers = 200, {}
            except Exception as e:  # a body the sink's format cannot read: 400, as a collector
                events, status, headers = [], 400, {}
                print(f"cannot decode: {e}", file=sys.stderr, flush=True)
            hang = False
            with lock:
                ctl = control()
                if ctl and status == 200:
                    text, c = ctl
                    hang = bool(c.get("hang"))
                    times = c.get("times")
                    if "status" in c and (times is None or served.get(text, 0) < times):
                        served[text] = served.get(text, 0) + 1
                        status = c["status"]
                        if "retry_after" in c:
                            headers["Retry-After"] = str(c["retry_after"])
                line = {"t": time.time(), "path": self.path, "status": "hang" if hang else status,
                        "events": events}
                with open(args.out, "a") as f:
                    f.write(json.dumps(line) + "\n")
            if hang:
                while True:
                    time.sleep(3600)
            payload = b"{}" if status == 200 else b"injected failure"
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()
