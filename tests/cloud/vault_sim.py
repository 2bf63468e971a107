#!/usr/bin/env python3
"""A strict HashiCorp Vault / OpenBao simulator (Transit, AppRole and
Kubernetes auth) on loopback, for the vault-transit plugin's tests.

Written from Vault's HTTP API documentation: "Transit Secrets Engine (API)"
(create/read/rotate/config keys, encrypt, decrypt), "AppRole Auth Method
(API)" and "Kubernetes Auth Method (API)" login, "Token Auth Method"
lookup-self, and the API overview: requests under /v1/, the token in
X-Vault-Token (or Authorization: Bearer), the namespace in
X-Vault-Namespace, JSON bodies (or form-encoded ones with that content
type), errors as {"errors": [...]} with 400 (bad request), 403 (missing or
invalid token, denied), 404 (no such key: {"errors": []}), 405, 5xx.
Like Vault, parameters an endpoint does not know are not refused but
reported under "warnings" ("Endpoint ignored these unrecognized
parameters: [...]").

RSA keys decrypt with OAEP, SHA-256 for the hash and MGF1, empty label
(Vault's behaviour); a server that takes "padding_scheme" and
"hash_algorithm" on encrypt/decrypt is simulated unless --legacy is given,
which simulates an older server that ignores them with a warning.
Checked against hvac by tests/cloud/vendor_hvac.py.

Usage: vault_sim.py --port P --cert C --key K --token-file F
          [--mount transit] [--namespace NS] [--approle ROLE_ID:SECRET_ID_FILE]
          [--k8s ROLE:JWT_FILE] [--login-ttl S] [--read-only-token-file F] [--legacy]
Control (not Vault): POST /_sim/faults, GET /_sim/stats,
GET /_sim/public/<key> (DER of the latest version's public key).
"""
import argparse
import base64
import hmac
import json
import re
import secrets
import threading
import time
import urllib.parse
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import simlib

RSA_TYPES = {"rsa-2048": 2048, "rsa-3072": 3072, "rsa-4096": 4096}
KEY_TYPES = set(RSA_TYPES) | {"aes128-gcm96", "aes256-gcm96", "chacha20-poly1305",
                              "ed25519", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521"}
HASHES = {"sha1": hashes.SHA1, "sha2-224": hashes.SHA224, "sha2-256": hashes.SHA256,
          "sha2-384": hashes.SHA384, "sha2-512": hashes.SHA512}
NAME_RE = r"\w(?:[\w.-]*\w)?"

# Parameters each endpoint knows (the API reference's "Parameters").
CREATE_PARAMS = {"type", "exportable", "allow_plaintext_backup", "derived", "convergent_encryption",
                 "auto_rotate_period", "key_size", "managed_key_name", "managed_key_id", "context"}
CONFIG_PARAMS = {"min_decryption_version", "min_encryption_version", "deletion_allowed",
                 "exportable", "allow_plaintext_backup", "auto_rotate_period"}
ENCRYPT_PARAMS = {"plaintext", "associated_data", "context", "key_version", "nonce", "reference",
                  "batch_input", "type", "convergent_encryption", "partial_failure_response_code"}
DECRYPT_PARAMS = {"ciphertext", "associated_data", "context", "nonce", "reference", "batch_input",
                  "partial_failure_response_code"}
RSA_CHOICE_PARAMS = {"padding_scheme", "hash_algorithm"}


class VaultError(Exception):
    def __init__(self, status, errors):
        super().__init__(errors)
        self.status, self.errors = status, errors


def denied():
    return VaultError(403, ["permission denied"])


class Key:
    def __init__(self, name, type_, exportable, backup):
        self.name, self.type = name, type_
        self.exportable, self.backup = exportable, backup
        self.versions = {}
        self.created = {}
        self.min_decryption_version = 1
        self.deletion_allowed = False
        self.rotate()

    def rotate(self):
        v = len(self.versions) + 1
        bits = RSA_TYPES.get(self.type)
        self.versions[v] = rsa.generate_private_key(65537, bits) if bits else secrets.token_bytes(32)
        self.created[v] = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
        return v

    @property
    def latest(self):
        return max(self.versions)

    def public_pem(self, v):
        return self.versions[v].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def info(self):
        rsa_key = self.type in RSA_TYPES
        if rsa_key:
            keys = {str(v): {"creation_time": self.created[v], "name": self.type,
                             "public_key": self.public_pem(v)} for v in self.versions}
        else:
            keys = {str(v): int(time.time()) for v in self.versions}
        return {"name": self.name, "type": self.type, "keys": keys,
                "latest_version": self.latest, "min_available_version": 0,
                "min_decryption_version": self.min_decryption_version,
                "min_encryption_version": 0, "deletion_allowed": self.deletion_allowed,
                "derived": False, "exportable": self.exportable,
                "allow_plaintext_backup": self.backup, "auto_rotate_period": 0,
                "imported_key": False, "supports_encryption": True,
                "supports_decryption": True, "supports_derivation": not rsa_key,
                "supports_signing": rsa_key}


class VaultHandler(simlib.Handler):
    # ---- plumbing ----
    def reply(self, status, data=None, auth=None, warnings=None):
        if status == 204:
            return self.send(204, b"", None)
        body = {"request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False,
                "lease_duration": 0, "data": data, "wrap_info": None,
                "warnings": warnings or None, "auth": auth}
        self.send(status, body)

    def fail(self, e):
        self.send(e.status, {"errors": e.errors})

    def params(self, body):
        if not body:
            return {}
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype == "application/x-www-form-urlencoded":
            return {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise VaultError(400, ["failed to parse JSON input: %s" % e])
        if not isinstance(doc, dict):
            raise VaultError(400, ["failed to parse JSON input: not an object"])
        return doc

    def token(self):
        tok = self.headers.get("X-Vault-Token")
        auth = self.headers.get("Authorization", "")
        if tok is None and auth.startswith("Bearer "):
            tok = auth[7:]
        return tok

    def check_token(self, write=True):
        tok = self.token()
        srv = self.server
        if tok is None:
            raise denied()
        with srv.lock:
            now = time.time()
            if hmac.compare_digest(tok, srv.root_token):
                return
            if srv.read_only_token and hmac.compare_digest(tok, srv.read_only_token):
                if write:
                    raise denied()
                return
            exp = srv.tokens.get(tok)
            if exp is None or exp < now:
                raise VaultError(403, ["permission denied", "invalid token"]
                                 if exp is not None else ["permission denied"])

    def check_namespace(self, path):
        ns = (self.headers.get("X-Vault-Namespace") or "").strip("/")
        if ns != self.server.namespace:
            raise VaultError(404, ["no handler for route \"%s\". route entry not found." % path])

    @staticmethod
    def unknown(params, known):
        extra = sorted(k for k in params if k not in known)
        return ["Endpoint ignored these unrecognized parameters: [%s]" % " ".join(extra)] if extra else []

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("POST")  # Vault treats PUT as POST

    def do_DELETE(self):
        self.dispatch("DELETE")

    def extra_sim(self, body):
        m = re.fullmatch(r"/_sim/public/(%s)" % NAME_RE, self.path)
        key = self.server.keys.get(m.group(1)) if m else None
        if not key or key.type not in RSA_TYPES:
            return self.send(404, {"error": "no such key"})
        der = key.versions[key.latest].public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.send(200, der, "application/octet-stream")

    def dispatch(self, method):
        if self.handle_sim():
            return
        body = self.read_body()
        path = urllib.parse.urlsplit(self.path).path
        faults = self.server.faults
        try:
            if not path.startswith("/v1/"):
                raise VaultError(404, ["no handler for route"])
            route = path[4:]
            fault, delay = faults.take()
            self.apply_delay(delay)
            if fault == "throttle":
                raise VaultError(429, ["request path \"%s\": rate limit quota exceeded" % route])
            if fault == "fail":
                raise VaultError(faults.fail_status, ["local node not active but active cluster node not found"]
                                 if faults.fail_status == 503 else ["internal error"])
            params = self.params(body)
            self.route(method, route, params)
        except VaultError as e:
            self.fail(e)

    # ---- routes ----
    def route(self, method, route, params):
        srv = self.server
        if route == "sys/health":
            return self.send(200, {"initialized": True, "sealed": False, "standby": False,
                                   "version": "1.17.0+sim", "cluster_name": "sim"})
        if route == "auth/token/lookup-self" and method == "GET":
            self.check_token(write=False)
            return self.reply(200, {"id": "", "policies": ["default"], "ttl": 0})
        m = re.fullmatch(r"auth/(%s)/login" % NAME_RE, route)
        if m and method == "POST":
            return self.login(m.group(1), params)
        mount = srv.mount
        if not (route == mount or route.startswith(mount + "/")):
            raise VaultError(404, ["no handler for route \"%s\". route entry not found." % route])
        self.check_namespace(route)
        rest = route[len(mount) + 1:]
        for pattern, handler in (
                (r"keys/(%s)" % NAME_RE, self.key_endpoint),
                (r"keys/(%s)/rotate" % NAME_RE, self.rotate),
                (r"keys/(%s)/config" % NAME_RE, self.config),
                (r"encrypt/(%s)" % NAME_RE, self.encrypt),
                (r"decrypt/(%s)" % NAME_RE, self.decrypt)):
            m = re.fullmatch(pattern, rest)
            if m:
                return handler(method, m.group(1), params)
        raise VaultError(404, ["no handler for route \"%s\". route entry not found." % route])

    def login(self, mount, params):
        srv = self.server
        srv.faults.count("login-" + mount)
        if mount == srv.approle_mount and srv.approle:
            warn = self.unknown(params, {"role_id", "secret_id"})
            if not params.get("role_id"):
                raise VaultError(400, ["missing role_id"])
            role_id, secret_id = srv.approle
            if not (hmac.compare_digest(str(params.get("role_id")), role_id) and
                    hmac.compare_digest(str(params.get("secret_id", "")), secret_id)):
                raise VaultError(400, ["invalid role or secret ID"])
            meta = {"role_name": "flows"}
        elif mount == srv.k8s_mount and srv.k8s:
            warn = self.unknown(params, {"role", "jwt"})
            if not params.get("role"):
                raise VaultError(400, ["missing role"])
            if not params.get("jwt"):
                raise VaultError(400, ["missing jwt"])
            role, jwt = srv.k8s
            if params["role"] != role:
                raise VaultError(400, ["invalid role name \"%s\"" % params["role"]])
            if not hmac.compare_digest(str(params["jwt"]), jwt):
                raise denied()
            meta = {"role": role, "service_account_name": "flowvault",
                    "service_account_namespace": "flows"}
        else:
            raise VaultError(404, ["no handler for route \"auth/%s/login\". route entry not found." % mount])
        tok = "hvs." + secrets.token_urlsafe(24)
        with srv.lock:
            srv.tokens[tok] = time.time() + srv.login_ttl
        auth = {"client_token": tok, "accessor": secrets.token_urlsafe(12),
                "policies": ["default", "flows"], "token_policies": ["default", "flows"],
                "metadata": meta, "lease_duration": srv.login_ttl, "renewable": True,
                "entity_id": str(uuid.uuid4()), "token_type": "service", "orphan": True}
        self.reply(200, None, auth, warn)

    def find_key(self, name):
        key = self.server.keys.get(name)
        if not key:
            raise VaultError(400, ["encryption key not found"])
        return key

    def key_endpoint(self, method, name, params):
        srv = self.server
        if method == "GET":
            self.check_token(write=False)
            srv.faults.count("read")
            key = srv.keys.get(name)
            if not key:
                raise VaultError(404, [])
            return self.reply(200, key.info())
        if method != "POST":
            raise VaultError(405, ["1 error occurred:\n\t* unsupported operation\n\n"])
        self.check_token()
        srv.faults.count("create")
        warn = self.unknown(params, CREATE_PARAMS)
        type_ = params.get("type", "aes256-gcm96")
        if type_ not in KEY_TYPES:
            raise VaultError(400, ["unknown key type %s" % type_])
        if type_ not in RSA_TYPES and type_ != "aes256-gcm96":
            raise VaultError(400, ["this simulator makes RSA and aes256-gcm96 keys only"])
        with srv.lock:
            if name not in srv.keys:
                srv.keys[name] = Key(name, type_, bool(params.get("exportable")),
                                     bool(params.get("allow_plaintext_backup")))
            key = srv.keys[name]
        self.reply(200, key.info(), None, warn)

    def rotate(self, method, name, params):
        self.check_token()
        key = self.find_key(name)
        key.rotate()
        self.reply(200, key.info())

    def config(self, method, name, params):
        self.check_token()
        key = self.find_key(name)
        warn = self.unknown(params, CONFIG_PARAMS)
        if "exportable" in params:
            if key.exportable and not params["exportable"]:
                raise VaultError(400, ["export cannot be disabled on a key that has it enabled"])
            key.exportable = bool(params["exportable"])
        if "allow_plaintext_backup" in params:
            key.backup = bool(params["allow_plaintext_backup"])
        if "min_decryption_version" in params:
            key.min_decryption_version = int(params["min_decryption_version"])
        if "deletion_allowed" in params:
            key.deletion_allowed = bool(params["deletion_allowed"])
        self.reply(200, key.info(), None, warn)

    def rsa_choice(self, params):
        """OAEP hash and padding, as a newer server reads them."""
        if self.server.legacy:
            return "oaep", hashes.SHA256
        scheme = params.get("padding_scheme", "oaep")
        if scheme not in ("oaep", "pkcs1v15"):
            raise VaultError(400, ["invalid padding scheme: %s" % scheme])
        alg = params.get("hash_algorithm", "sha2-256")
        if alg not in HASHES:
            raise VaultError(400, ["unsupported hash algorithm %s" % alg])
        return scheme, HASHES[alg]

    def known(self, base):
        return base if self.server.legacy else base | RSA_CHOICE_PARAMS

    def encrypt(self, method, name, params):
        self.check_token()
        self.server.faults.count("encrypt")
        warn = self.unknown(params, self.known(ENCRYPT_PARAMS))
        key = self.find_key(name)
        if key.type not in RSA_TYPES:
            raise VaultError(400, ["this simulator encrypts with RSA keys only"])
        try:
            plain = base64.b64decode(params.get("plaintext", ""), validate=True)
        except ValueError:
            raise VaultError(400, ["failed to base64-decode plaintext"])
        v = int(params.get("key_version") or key.latest)
        if v not in key.versions:
            raise VaultError(400, ["invalid key version"])
        scheme, h = self.rsa_choice(params)
        pad = padding.PKCS1v15() if scheme == "pkcs1v15" else \
            padding.OAEP(mgf=padding.MGF1(h()), algorithm=h(), label=None)
        ct = key.versions[v].public_key().encrypt(plain, pad)
        self.reply(200, {"ciphertext": "vault:v%d:%s" % (v, base64.b64encode(ct).decode()),
                         "key_version": v}, None, warn)

    def decrypt(self, method, name, params):
        self.check_token()
        self.server.faults.count("decrypt")
        warn = self.unknown(params, self.known(DECRYPT_PARAMS))
        ciphertext = params.get("ciphertext")
        if not ciphertext:
            raise VaultError(400, ["missing ciphertext to decrypt"])
        key = self.find_key(name)
        m = re.fullmatch(r"vault:v(\d+):(.*)", ciphertext, re.S)
        if not m:
            raise VaultError(400, ["invalid ciphertext: no prefix"])
        v = int(m.group(1))
        if v > key.latest:
            raise VaultError(400, ["invalid ciphertext: version is too new"])
        if v < key.min_decryption_version:
            raise VaultError(400, ["ciphertext or signature version is disallowed by policy (too old)"])
        if key.type not in RSA_TYPES:
            raise VaultError(400, ["this simulator decrypts with RSA keys only"])
        try:
            blob = base64.b64decode(m.group(2), validate=True)
        except ValueError:
            raise VaultError(400, ["invalid ciphertext: could not decode"])
        scheme, h = self.rsa_choice(params)
        pad = padding.PKCS1v15() if scheme == "pkcs1v15" else \
            padding.OAEP(mgf=padding.MGF1(h()), algorithm=h(), label=None)
        try:
            plain = key.versions[v].decrypt(blob, pad)
        except ValueError:
            raise VaultError(400, ["failed to RSA decrypt the ciphertext: crypto/rsa: decryption error"])
        self.reply(200, {"plaintext": base64.b64encode(plain).decode()}, None, warn)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--read-only-token-file")
    ap.add_argument("--mount", default="transit")
    ap.add_argument("--namespace", default="")
    ap.add_argument("--approle", help="ROLE_ID:SECRET_ID_FILE")
    ap.add_argument("--approle-mount", default="approle")
    ap.add_argument("--k8s", help="ROLE:JWT_FILE")
    ap.add_argument("--k8s-mount", default="kubernetes")
    ap.add_argument("--login-ttl", type=int, default=3600)
    ap.add_argument("--legacy", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()

    def read(path):
        with open(path) as f:
            return f.read().strip()

    def setup(srv):
        srv.lock = threading.Lock()
        srv.root_token = read(a.token_file)
        srv.read_only_token = read(a.read_only_token_file) if a.read_only_token_file else None
        srv.tokens = {}
        srv.keys = {}
        srv.mount = a.mount.strip("/")
        srv.namespace = a.namespace.strip("/")
        srv.legacy = a.legacy
        srv.login_ttl = a.login_ttl
        srv.approle_mount, srv.k8s_mount = a.approle_mount, a.k8s_mount
        srv.approle = None
        srv.k8s = None
        if a.approle:
            rid, path = a.approle.split(":", 1)
            srv.approle = (rid, read(path))
        if a.k8s:
            role, path = a.k8s.split(":", 1)
            srv.k8s = (role, read(path))

    simlib.serve(VaultHandler, a.port, a.cert, a.key, a.verbose, setup)


if __name__ == "__main__":
    main()
