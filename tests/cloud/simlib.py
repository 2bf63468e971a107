"""Shared plumbing of the cloud service simulators (loopback only).

An HTTP/1.1 server with keep-alive (so clients can reuse connections, as
with the real services), TLS from a certificate the test made, and a small
control surface under /_sim/ that tests use to inject faults and read
counters. /_sim/ is not part of any service's API; clients never see it
unless they ask for it.
"""
import http.server
import json
import socketserver
import ssl
import sys
import threading
import time


class Faults:
    """Faults the next requests get: throttle, errors, delay."""

    def __init__(self):
        self.lock = threading.Lock()
        self.throttle = 0
        self.fail = 0
        self.fail_status = 500
        self.delay_ms = 0
        self.delay_count = 0
        self.counts = {}
        self.connections = 0

    def set(self, doc):
        with self.lock:
            self.throttle = int(doc.get("throttle", self.throttle))
            self.fail = int(doc.get("fail", self.fail))
            self.fail_status = int(doc.get("fail_status", self.fail_status))
            self.delay_ms = int(doc.get("delay_ms", self.delay_ms))
            self.delay_count = int(doc.get("delay_count", self.delay_count))
            if doc.get("reset_counts"):
                self.counts = {}
                self.connections = 0

    def take(self):
        """Which fault, if any, the current request gets."""
        with self.lock:
            delay = 0
            if self.delay_count > 0:
                self.delay_count -= 1
                delay = self.delay_ms
            if self.throttle > 0:
                self.throttle -= 1
                return "throttle", delay
            if self.fail > 0:
                self.fail -= 1
                return "fail", delay
            return None, delay

    def count(self, name):
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def snapshot(self):
        with self.lock:
            return {"counts": dict(self.counts), "connections": self.connections}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sim"
    sys_version = ""

    def setup(self):
        super().setup()
        with self.server.faults.lock:
            self.server.faults.connections += 1

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def read_body(self):
        n = self.headers.get("Content-Length")
        if n is None:
            return b""
        return self.rfile.read(int(n))

    def send(self, status, body, content_type="application/json", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        if body or content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def handle_sim(self):
        """/_sim/faults (POST JSON), /_sim/stats (GET). True when handled."""
        if not self.path.startswith("/_sim/"):
            return False
        body = self.read_body()
        if self.path == "/_sim/faults" and self.command == "POST":
            self.server.faults.set(json.loads(body or b"{}"))
            self.send(200, {"ok": True})
        elif self.path == "/_sim/stats":
            self.send(200, self.server.faults.snapshot())
        else:
            self.extra_sim(body)
        return True

    def extra_sim(self, body):
        self.send(404, {"error": "no such control"})

    def apply_delay(self, delay_ms):
        if delay_ms:
            time.sleep(delay_ms / 1000.0)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(handler_cls, port, cert=None, key=None, verbose=False, setup=None):
    srv = Server(("127.0.0.1", port), handler_cls)
    srv.faults = Faults()
    srv.verbose = verbose
    if setup:
        setup(srv)
    if cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        # Handshake in the handler thread, not in accept().
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True,
                                     do_handshake_on_connect=False)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
