#!/usr/bin/env python3
"""A bundle host for what nginx can't do, driven by tests/it/team.rs.

  serve.py DIR     (prints the port it listens on, 127.0.0.1, then serves until killed)

Every request serves DIR/bundle.tar.gz (ETag: a digest of its bytes; If-None-Match → 304) as
DIR/mode.json says, read at each request:

  {"mode": "ok"}          the archive (200), or 304
  {"mode": "500"}         HTTP 500, no body
  {"mode": "truncated"}   Content-Length of the whole archive, half of it sent, then closed
  {"mode": "slow"}        the archive in 8 pieces, 0.5 s apart
  {"mode": "oversized"}   no Content-Length, 256 MiB sent until the client hangs up
  "bundle_server": true   answer with OPA's bundle content type and honour `Prefer: wait=N`:
                          a request whose If-None-Match is current is held until the archive
                          changes (200) or N seconds pass (304)

Each request is appended to DIR/requests.jsonl when it ends: its If-None-Match and Prefer
headers, the status, the body bytes sent, and whether the client hung up first; a slow body
is also recorded when it starts (status "started").
"""

import hashlib
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIR = sys.argv[1]
LOCK = threading.Lock()
BUNDLE_TYPE = 'application/vnd.openpolicyagent.bundles'


def control():
    try:
        with open(os.path.join(DIR, 'mode.json')) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {'mode': 'ok'}


def archive():
    try:
        with open(os.path.join(DIR, 'bundle.tar.gz'), 'rb') as f:
            body = f.read()
    except OSError:
        return None, None
    return body, '"%s"' % hashlib.sha256(body).hexdigest()[:32]


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def record(self, status, sent, hung_up=False):
        line = {
            'if_none_match': self.headers.get('If-None-Match'),
            'prefer': self.headers.get_all('Prefer') or [],
            'status': status,
            'sent': sent,
            'hung_up': hung_up,
            'at': time.time(),
        }
        with LOCK, open(os.path.join(DIR, 'requests.jsonl'), 'a') as f:
            f.write(json.dumps(line) + '\n')

    def head(self, status, ctl, length=None, etag=None):
        self.send_response(status)
        self.send_header('Content-Type',
                         BUNDLE_TYPE if ctl.get('bundle_server') else 'application/gzip')
        if etag:
            self.send_header('ETag', etag)
        if length is not None:
            self.send_header('Content-Length', str(length))
        else:
            self.send_header('Connection', 'close')
        self.end_headers()

    def do_GET(self):
        ctl = control()
        mode = ctl.get('mode', 'ok')
        if mode == '500':
            self.head(500, ctl, 0)
            return self.record(500, 0)
        body, etag = archive()
        if body is None:
            self.head(404, ctl, 0)
            return self.record(404, 0)
        asked = self.headers.get('If-None-Match')
        wait = re.search(r'wait=(\d+)', ','.join(self.headers.get_all('Prefer') or []))
        if ctl.get('bundle_server') and wait and asked == etag:
            deadline = time.time() + int(wait.group(1))
            while time.time() < deadline and archive()[1] == etag:
                time.sleep(0.05)
            ctl = control()
            body, etag = archive()
        if asked == etag:
            self.head(304, ctl, 0, etag)
            return self.record(304, 0)
        sent = 0
        try:
            if mode == 'truncated':
                self.head(200, ctl, len(body), etag)
                self.wfile.write(body[:len(body) // 2])
                sent = len(body) // 2
                self.wfile.flush()
                self.close_connection = True
            elif mode == 'slow':
                self.head(200, ctl, len(body), etag)
                self.record('started', 0)
                step = max(1, -(-len(body) // 8))
                for i in range(0, len(body), step):
                    self.wfile.write(body[i:i + step])
                    self.wfile.flush()
                    sent += len(body[i:i + step])
                    time.sleep(0.5)
            elif mode == 'oversized':
                self.head(200, ctl, None, etag)
                chunk = b'\0' * 65536
                while sent < 256 << 20:
                    self.wfile.write(chunk)
                    sent += len(chunk)
                self.close_connection = True
            else:
                self.head(200, ctl, len(body), etag)
                self.wfile.write(body)
                sent = len(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return self.record(200, sent, hung_up=True)
        self.record(200, sent)


server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
