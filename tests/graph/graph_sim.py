#!/usr/bin/env python3
"""A WhatsApp Business Graph API simulator for flowvault's tests (HTTPS, threaded).

It serves what `flowvault register` and `flowvault status` use and enforces what
the real API enforces:

  POST /{version}/{phone-number-id}/whatsapp_business_encryption
       Authorization: Bearer <token>, application/x-www-form-urlencoded body with
       exactly one field, business_public_key = an RSA-2048 SPKI PEM with real
       newlines (else error code 100). Answers {"success": true}.
  GET  /{version}/{phone-number-id}/whatsapp_business_encryption[?fields=...]
       {"data": [{"business_public_key": PEM,
                  "business_public_key_signature_status": "VALID"}]}
       or {"data": []} when no key is stored ("bare" numbers answer without
       the data wrapper).
  GET  /{version}/{waba-id}/phone_numbers?fields=...&limit=N[&after=CURSOR]
       cursor paging; paging.next is absent on the last page.

Control endpoints (plain JSON, no token, for the test only):
  POST /_sim/config  merge settings: token, api_version, latency_ms,
                     numbers {id: {status, key, bare}}, wabas {id: {count,
                     first_id, page_size, ids, next_origin}}, faults [rule...]
  POST /_sim/reset   forget keys, faults and the request log
  GET  /_sim/log     {"requests": [{method, path, kind, phone, status, fault,
                     authorization_ok, user_agent, query}]}
  GET  /_sim/state   {"numbers": {id: {"key": PEM|null, "status": ...}}}

A fault rule: {"method": "POST"|"GET", "phone": ID, "kind":
"encryption"|"phone_numbers", "times": N (default 1), "fault": F}; the first
rule matching a request (absent keys match anything) is used and its `times`
counted down. F is one of
  {"type": "http", "status": 503}                      plain HTTP error page
  {"type": "error", "code": 4, "status": 400, "subcode": 0, "transient": true}
  {"type": "stall", "seconds": 3}                      answer late
  {"type": "reset"}                                    TCP reset, no answer
  {"type": "truncated"}                                body shorter than promised
  {"type": "malformed"}                                200 with broken JSON
  {"type": "usage", "minutes": 0.02}                   normal answer + header
and any F may carry "usage_minutes": M to add X-Business-Use-Case-Usage.

Usage:
  graph_sim.py serve --cert CERT --key KEY [--port 0] [--port-file F]
                     [--token T] [--api-version v25.0] [--latency-ms 0]
  graph_sim.py ctl --url https://127.0.0.1:PORT --ca CA METHOD PATH [JSON]
"""
import argparse
import base64
import http.server
import json
import os
import secrets
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
import urllib.request

ENCRYPTION = "whatsapp_business_encryption"
GET_FIELDS = {"business_public_key", "business_public_key_signature_status"}
RSA_OID = bytes.fromhex("2a864886f70d010101")


# ---- A tiny DER reader: enough to check an RSA SubjectPublicKeyInfo ----

def der_read(buf, pos):
    """Return (tag, content_start, content_end) of the element at pos."""
    if pos + 2 > len(buf):
        raise ValueError("truncated")
    tag = buf[pos]
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(buf):
            raise ValueError("bad length")
        length = int.from_bytes(buf[pos:pos + n], "big")
        pos += n
    if pos + length > len(buf):
        raise ValueError("truncated")
    return tag, pos, pos + length


def rsa_spki_bits(der):
    """Modulus size in bits of an RSA SPKI, or raise ValueError."""
    tag, s, e = der_read(der, 0)
    if tag != 0x30 or e != len(der):
        raise ValueError("not a SEQUENCE")
    tag, a_s, a_e = der_read(der, s)
    if tag != 0x30:
        raise ValueError("no AlgorithmIdentifier")
    tag, o_s, o_e = der_read(der, a_s)
    if tag != 0x06 or der[o_s:o_e] != RSA_OID:
        raise ValueError("not rsaEncryption")
    tag, b_s, b_e = der_read(der, a_e)
    if tag != 0x03 or der[b_s] != 0:
        raise ValueError("no BIT STRING")
    tag, k_s, _ = der_read(der, b_s + 1)
    if tag != 0x30:
        raise ValueError("no RSAPublicKey")
    tag, n_s, n_e = der_read(der, k_s)
    if tag != 0x02:
        raise ValueError("no modulus")
    modulus = der[n_s:n_e].lstrip(b"\x00")
    return len(modulus) * 8 - (8 - modulus[0].bit_length()) if modulus else 0


def check_public_key_pem(pem):
    """None when pem is an RSA-2048 SPKI PEM with real newlines, else why not."""
    head, tail = "-----BEGIN PUBLIC KEY-----\n", "-----END PUBLIC KEY-----"
    if not pem.startswith(head) or pem.rstrip("\n")[-len(tail):] != tail:
        return "not a PEM public key (-----BEGIN PUBLIC KEY----- with newlines)"
    body = pem[len(head):pem.rstrip("\n").rfind(tail)]
    try:
        der = base64.b64decode("".join(body.split("\n")), validate=True)
        bits = rsa_spki_bits(der)
    except (ValueError, IndexError) as e:
        return "not an RSA public key (%s)" % e
    if bits != 2048:
        return "RSA key of %d bits; RSA-2048 is required" % bits
    return None


# ---- State ----

class State:
    def __init__(self, token, api_version, latency_ms):
        self.lock = threading.Lock()
        self.token = token
        self.api_version = api_version
        self.latency_ms = latency_ms
        self.numbers = {}   # id -> {"key", "status", "bare"}
        self.wabas = {}
        self.faults = []
        self.log = []

    def reset(self):
        with self.lock:
            self.numbers, self.wabas, self.faults, self.log = {}, {}, [], []

    def configure(self, cfg):
        with self.lock:
            for name in ("token", "api_version", "latency_ms"):
                if name in cfg:
                    setattr(self, name, cfg[name])
            for pid, spec in cfg.get("numbers", {}).items():
                self.numbers.setdefault(pid, {"key": None, "status": None, "bare": False})
                self.numbers[pid].update(spec)
            self.wabas.update(cfg.get("wabas", {}))
            for rule in cfg.get("faults", []):
                rule = dict(rule)
                rule.setdefault("times", 1)
                self.faults.append(rule)

    def take_fault(self, method, kind, phone):
        with self.lock:
            for rule in self.faults:
                if rule["times"] <= 0:
                    continue
                if rule.get("method") not in (None, method):
                    continue
                if rule.get("kind") not in (None, kind):
                    continue
                if rule.get("phone") not in (None, phone):
                    continue
                rule["times"] -= 1
                return rule["fault"]
        return None


def waba_ids(spec):
    if "ids" in spec:
        return [str(i) for i in spec["ids"]]
    first = int(spec.get("first_id", 100000000000000))
    return [str(first + i) for i in range(int(spec.get("count", 0)))]


DEFAULT_STATUS = {190: 401, 10: 403, 100: 400, 1: 500, 2: 503}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GraphSim/1.0"

    def log_message(self, fmt, *args):  # quiet: the request log is at /_sim/log
        pass

    def handle(self):
        try:
            super().handle()
        except (OSError, ssl.SSLError, ValueError):
            pass

    # -- answers --

    def send_json(self, status, obj, headers=None, raw=None):
        body = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        return status

    def graph_error(self, code, message, status=None, subcode=None, transient=None,
                    user_msg=None, headers=None):
        err = {"message": message, "type": "OAuthException", "code": code,
               "fbtrace_id": "Sim" + secrets.token_hex(8)}
        if subcode:
            err["error_subcode"] = subcode
        if transient is not None:
            err["is_transient"] = transient
        if user_msg:
            err["error_user_msg"] = user_msg
        return self.send_json(status or DEFAULT_STATUS.get(code, 400), {"error": err},
                              headers)

    # -- dispatch --

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def dispatch(self, method):
        st = self.server.state
        url = urllib.parse.urlsplit(self.path)
        body = self.read_body()
        if url.path.startswith("/_sim/"):
            return self.control(method, url.path, body)
        parts = [p for p in url.path.split("/") if p]
        kind = parts[2] if len(parts) == 3 else None
        phone = parts[1] if kind == ENCRYPTION else None
        entry = {"method": method, "path": url.path, "query": url.query, "kind": kind,
                 "phone": phone, "fault": None, "status": None,
                 "authorization_ok": self.headers.get("Authorization") == "Bearer " + st.token,
                 "user_agent": self.headers.get("User-Agent"),
                 "content_type": self.headers.get("Content-Type"), "t": time.time()}
        with st.lock:
            st.log.append(entry)
        if st.latency_ms:
            time.sleep(st.latency_ms / 1000.0)
        fault = st.take_fault(method, kind, phone)
        usage = None
        if fault:
            entry["fault"] = fault.get("type")
            if "usage_minutes" in fault or fault.get("type") == "usage":
                minutes = fault.get("usage_minutes", fault.get("minutes", 1))
                usage = {"X-Business-Use-Case-Usage": json.dumps({
                    "102290129340398": [{"type": "whatsapp_business_management",
                                         "call_count": 100, "total_cputime": 1,
                                         "total_time": 1,
                                         "estimated_time_to_regain_access": minutes}]})}
            entry["status"] = self.apply_fault(fault, usage)
            if entry["status"] is not None:
                return
        entry["status"] = self.api(method, url, parts, kind, phone, body, usage)

    def apply_fault(self, fault, usage):
        """Answer per the fault and return the HTTP status (0: none sent), or
        None to go on with the normal answer."""
        t = fault.get("type")
        if t == "http":
            page = b"<html><body>Service temporarily unavailable</body></html>"
            self.send_response(fault.get("status", 503))
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            for k, v in (usage or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(page)
            return fault.get("status", 503)
        if t == "error":
            return self.graph_error(fault["code"], fault.get("message",
                                    "(#%d) simulated error" % fault["code"]),
                                    fault.get("status"), fault.get("subcode"),
                                    fault.get("transient"), fault.get("user_msg"), usage)
        if t == "stall":
            time.sleep(fault.get("seconds", 5))
            return None
        if t == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return 0
        if t == "truncated":
            body = b'{"success": true, "padding": "' + b"x" * 50
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) + 200))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return 200
        if t == "malformed":
            return self.send_json(200, None, raw=b'{"data": [{"business_public_key": "-----BEGIN')
        if t == "usage":
            return None
        raise ValueError("unknown fault type %r" % t)

    def api(self, method, url, parts, kind, phone, body, usage):
        st = self.server.state
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        auth = self.headers.get("Authorization")
        if "access_token" in query:
            return self.graph_error(100, "(#100) the access token must be sent in the "
                                    "Authorization header, not the URL (simulator rule)")
        if not auth:
            return self.graph_error(2500, "An active access token must be used to query "
                                    "information about the current user.", 400)
        if auth != "Bearer " + st.token:
            return self.graph_error(190, "Invalid OAuth access token - Cannot parse access "
                                    "token", 401, headers=usage)
        if len(parts) != 3 or not parts[1].isdigit():
            return self.graph_error(2500, "Unknown path components: %s" % url.path, 400)
        if parts[0] != st.api_version:
            return self.graph_error(2500, "Unknown path components: /%s (this server "
                                    "speaks %s)" % (parts[0], st.api_version), 400)
        if kind == ENCRYPTION:
            return self.encryption(method, phone, query, body, usage)
        if kind == "phone_numbers" and method == "GET":
            return self.phone_numbers(parts[1], query, usage)
        return self.graph_error(100, "(#100) Unsupported %s request. Object with ID '%s' "
                                "does not support this operation" % (method.lower(), parts[1]))

    def encryption(self, method, phone, query, body, usage):
        st = self.server.state
        if method == "POST":
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype != "application/x-www-form-urlencoded":
                return self.graph_error(100, "(#100) the body must be form-encoded, got %r"
                                        % ctype)
            try:
                form = urllib.parse.parse_qs(body.decode("ascii"), keep_blank_values=True,
                                             strict_parsing=True)
            except (ValueError, UnicodeDecodeError):
                return self.graph_error(100, "(#100) malformed form body")
            if set(form) != {"business_public_key"} or len(form["business_public_key"]) != 1:
                return self.graph_error(100, "(#100) expected exactly one field, "
                                        "business_public_key; got %s" % sorted(form))
            pem = form["business_public_key"][0]
            why = check_public_key_pem(pem)
            if why:
                return self.graph_error(100, "(#100) Invalid parameter", user_msg=
                                        "business_public_key: " + why)
            with st.lock:
                n = st.numbers.setdefault(phone, {"key": None, "status": None, "bare": False})
                n["key"] = pem
            return self.send_json(200, {"success": True}, usage)
        if method == "GET":
            fields = query.get("fields", [",".join(sorted(GET_FIELDS))])[0].split(",")
            if not set(fields) <= GET_FIELDS:
                return self.graph_error(100, "(#100) Tried accessing nonexisting field (%s)"
                                        % ",".join(sorted(set(fields) - GET_FIELDS)))
            with st.lock:
                n = dict(st.numbers.get(phone) or {"key": None, "status": None, "bare": False})
            if not n.get("key"):
                return self.send_json(200, {} if n.get("bare") else {"data": []}, usage)
            obj = {}
            if "business_public_key" in fields:
                obj["business_public_key"] = n["key"]
            if "business_public_key_signature_status" in fields:
                obj["business_public_key_signature_status"] = n.get("status") or "VALID"
            return self.send_json(200, obj if n.get("bare") else {"data": [obj]}, usage)
        return self.graph_error(100, "(#100) Unsupported %s request" % method.lower())

    def phone_numbers(self, waba, query, usage):
        st = self.server.state
        with st.lock:
            spec = st.wabas.get(waba)
        if spec is None:
            return self.graph_error(100, "(#100) Unsupported get request. Object with ID "
                                    "'%s' does not exist, cannot be loaded due to missing "
                                    "permissions, or does not support this operation" % waba)
        ids = waba_ids(spec)
        try:
            limit = int(query.get("limit", ["25"])[0])
            start = int(base64.b64decode(query["after"][0]).decode()) if "after" in query else 0
        except (ValueError, UnicodeDecodeError):
            return self.graph_error(100, "(#100) bad limit or cursor")
        size = max(1, min(limit, int(spec.get("page_size", 100)), 100))
        page = ids[start:start + size]
        data = [{"id": i, "display_phone_number": "+1 555 01%s" % i[-4:],
                 "verified_name": "Sim Business", "status": "CONNECTED"} for i in page]
        enc = lambda n: base64.b64encode(str(n).encode()).decode()
        out = {"data": data, "paging": {"cursors": {"before": enc(start),
                                                    "after": enc(start + len(page))}}}
        if start + len(page) < len(ids):
            origin = spec.get("next_origin") or "https://%s" % self.headers.get("Host")
            q = {k: v[0] for k, v in query.items()}
            q["after"] = enc(start + len(page))
            # As the real Graph API does: the token the request used, in the link.
            q["access_token"] = st.token
            out["paging"]["next"] = "%s/%s/%s/phone_numbers?%s" % (
                origin, st.api_version, waba, urllib.parse.urlencode(q))
        return self.send_json(200, out, usage)

    def control(self, method, path, body):
        st = self.server.state
        if path == "/_sim/config" and method == "POST":
            st.configure(json.loads(body or b"{}"))
            return self.send_json(200, {"ok": True})
        if path == "/_sim/reset" and method == "POST":
            st.reset()
            return self.send_json(200, {"ok": True})
        if path == "/_sim/log" and method == "GET":
            with st.lock:
                return self.send_json(200, {"requests": list(st.log)})
        if path == "/_sim/state" and method == "GET":
            with st.lock:
                return self.send_json(200, {"numbers": st.numbers})
        return self.send_json(404, {"error": "unknown control endpoint"})


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address, tls, state):
        super().__init__(address, Handler)
        self.tls = tls
        self.state = state

    def finish_request(self, request, client_address):
        # The TLS handshake runs in the connection's own thread, so a slow or
        # failing client does not hold up the others.
        try:
            # Headers and body go out as separate writes: without NODELAY,
            # Nagle and delayed ACKs add ~40 ms to every answer.
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            super().finish_request(request, client_address)
        finally:
            try:
                request.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        pass  # clients that go away (timeouts, refused certificates) are expected


def serve(args):
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(args.cert, args.key)
    state = State(args.token, args.api_version, args.latency_ms)
    server = Server(("127.0.0.1", args.port), tls, state)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % server.server_address[1])
        os.rename(tmp, args.port_file)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


def ctl(args):
    ctx = ssl.create_default_context(cafile=args.ca)
    data = args.json.encode() if args.json is not None else None
    req = urllib.request.Request(args.url.rstrip("/") + args.path, data=data,
                                 method=args.method)
    with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
        sys.stdout.write(r.read().decode() + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--cert", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--port-file")
    s.add_argument("--token", default="sim-token")
    s.add_argument("--api-version", default="v25.0")
    s.add_argument("--latency-ms", type=int, default=0)
    c = sub.add_parser("ctl")
    c.add_argument("--url", required=True)
    c.add_argument("--ca", required=True)
    c.add_argument("method")
    c.add_argument("path")
    c.add_argument("json", nargs="?")
    args = p.parse_args()
    serve(args) if args.cmd == "serve" else ctl(args)


if __name__ == "__main__":
    main()
