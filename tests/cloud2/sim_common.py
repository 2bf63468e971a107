"""Pieces both cloud simulators share: an HTTPS (or plain HTTP) threaded
server on loopback, JSON replies, fault injection and counters.

Fault injection and counters live under /_sim/ on the service's own port;
the real services have no such paths, and the plugins never call them.
  POST /_sim/faults  {"throttle": N, "error5xx": N, "delay_ms": MS, "reset": true,
                      "revoke_tokens": true}
      the next N requests to the API answer 429 (throttle) or 503 (error5xx);
      every API request waits delay_ms first; revoke_tokens invalidates every
      token issued so far (not the static one), as a revocation would
  GET  /_sim/stats   {"tokens_issued": N, "api_requests": N, "decrypts": N, ...}
"""
import base64
import json
import queue
import secrets
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.throttle = 0
        self.error5xx = 0
        self.delay_ms = 0
        self.stats = {}
        self.tokens = None  # the simulator's Tokens, for revoke_tokens

    def count(self, name, n=1):
        with self.lock:
            self.stats[name] = self.stats.get(name, 0) + n

    def take(self):
        """The fault for the next API request: 'throttle', '5xx' or None."""
        with self.lock:
            if self.throttle > 0:
                self.throttle -= 1
                return "throttle"
            if self.error5xx > 0:
                self.error5xx -= 1
                return "5xx"
            return None

    def configure(self, spec):
        with self.lock:
            if spec.get("reset"):
                self.throttle = self.error5xx = self.delay_ms = 0
                self.stats = {}
            self.throttle = int(spec.get("throttle", self.throttle))
            self.error5xx = int(spec.get("error5xx", self.error5xx))
            self.delay_ms = int(spec.get("delay_ms", self.delay_ms))
        if spec.get("revoke_tokens") and self.tokens:
            self.tokens.revoke()


class Tokens:
    """Opaque bearer tokens with an expiry, as an authorization server hands
    them out; `subject` says who the token was issued to."""

    def __init__(self, ttl, log_path=None):
        self.ttl = ttl
        self.lock = threading.Lock()
        self.live = {}
        self.log_path = log_path  # every token issued, one a line: tests grep logs for them

    def issue(self, prefix, subject, audience):
        token = prefix + secrets.token_urlsafe(32)
        with self.lock:
            self.live[token] = (subject, audience, time.time() + self.ttl)
            if self.log_path:
                with open(self.log_path, "a") as f:
                    f.write(token + "\n")
        return token

    def add_static(self, token, subject, audience):
        with self.lock:
            self.live[token] = (subject, audience, time.time() + 10 * 365 * 86400)
            self.static = token

    def revoke(self):
        with self.lock:
            self.live = {t: v for t, v in self.live.items() if t == getattr(self, "static", None)}

    def check(self, token, audience):
        """(subject, None) or (None, reason)."""
        with self.lock:
            entry = self.live.get(token)
        if not entry:
            return None, "unknown token"
        subject, aud, expiry = entry
        if time.time() >= expiry:
            return None, "expired token"
        if aud != audience:
            return None, "token for another audience"
        return subject, None


class KeyPool:
    """RSA-2048 keys made ahead by a background thread: on a loaded machine
    making one in a request can take seconds, which would test the load, not
    the client."""

    def __init__(self, ready=3):
        from cryptography.hazmat.primitives.asymmetric import rsa
        self.rsa = rsa
        self.keys = queue.Queue(maxsize=ready)
        threading.Thread(target=self.fill, daemon=True).start()

    def fill(self):
        while True:
            self.keys.put(self.rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def take(self, bits=2048, exponent=65537):
        if bits == 2048 and exponent == 65537:
            return self.keys.get()
        return self.rsa.generate_private_key(public_exponent=exponent, key_size=bits)


def b64decode_strict(text, urlsafe=False):
    """Decode base64 (standard or URL-safe, padding optional for the latter);
    None when the text is not valid base64."""
    if not isinstance(text, str):
        return None
    try:
        if urlsafe:
            if any(c in text for c in "+/"):
                return None
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text, validate=True)
    except Exception:
        return None


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Handler(BaseHTTPRequestHandler):
    """Base request handler: subclasses implement route(method)."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, delayed ACKs
    # add 40 ms to every answer on a keep-alive connection.
    disable_nagle_algorithm = True
    faults = None  # set on the subclass

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("%s: %s\n" % (self.server.name, fmt % args))

    def read_body(self):
        """The request body, read once: dispatch() reads it before anything
        can answer, so that a refusal never leaves it unread on a
        keep-alive connection."""
        if getattr(self, "_body", None) is None:
            self._body = self._read_body()
        return self._body

    def _read_body(self):
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(length)) if length else b""

    def reply(self, status, body=None, headers=None, content_type="application/json; charset=UTF-8"):
        data = b""
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def control(self):
        """The /_sim/ endpoints; True when the request was one."""
        if not self.path.startswith("/_sim/"):
            return False
        if self.path == "/_sim/faults" and self.command == "POST":
            self.faults.configure(json.loads(self.read_body() or b"{}"))
            self.reply(200, {"ok": True})
        elif self.path == "/_sim/stats" and self.command == "GET":
            with self.faults.lock:
                self.reply(200, dict(self.faults.stats))
        else:
            self.reply(404, {"error": "no such control endpoint"})
        return True

    def dispatch(self):
        try:
            self._body = None
            self.read_body()
            if self.control():
                return
            self.route(self.command)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = dispatch


def serve(handler_cls, port, name, cert=None, key=None, verbose=False, port_file=None):
    """Run a threaded server on 127.0.0.1:port (TLS when cert is given) in a
    daemon thread; returns the server."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler_cls)
    server.daemon_threads = True
    server.name = name
    server.verbose = verbose
    if cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


def wait_forever():
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
