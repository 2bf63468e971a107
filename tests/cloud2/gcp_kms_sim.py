#!/usr/bin/env python3
"""A strict Cloud KMS (REST v1) simulator for tests, on loopback.

Written from the Cloud KMS REST reference (cloudkms.googleapis.com/v1) for the
methods flowvault uses: keyRings.create/get, cryptoKeys.create/get,
cryptoKeyVersions.get, cryptoKeyVersions.getPublicKey and
cryptoKeyVersions.asymmetricDecrypt, plus the two places a Google client gets
an access token:
  - the OAuth 2.0 token endpoint (POST /token, the JWT bearer grant of a
    service-account key, RS256 signature checked), on the HTTPS port;
  - the metadata server (GET /computeMetadata/v1/instance/service-accounts/
    default/token with "Metadata-Flavor: Google"), plain HTTP on its own port.

Keys are real RSA keys in memory (python3-cryptography); decryption is real
RSA-OAEP with SHA-256. Requests are validated as the real service does:
unknown JSON fields and query parameters, a non-JSON content type, a missing
or unknown bearer token and bad CRC32C checksums are refused with Google's
error shape {"error": {"code", "message", "status"}}.

    gcp_kms_sim.py --port P --cert C --key K [--metadata-port M]
                   [--sa-json FILE] [--static-token FILE] [--token-ttl S]
                   [--key-ring projects/p/locations/l/keyRings/r]
"""
import argparse
import base64
import datetime
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse

import crcmod.predefined
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sim_common  # noqa: E402

crc32c = crcmod.predefined.mkCrcFun("crc-32c")

SCOPES = {"https://www.googleapis.com/auth/cloud-platform",
          "https://www.googleapis.com/auth/cloudkms"}
AUDIENCE = "cloudkms"

PURPOSE = {"CRYPTO_KEY_PURPOSE_UNSPECIFIED": 0, "ENCRYPT_DECRYPT": 1, "ASYMMETRIC_SIGN": 5,
           "ASYMMETRIC_DECRYPT": 6, "RAW_ENCRYPT_DECRYPT": 7, "MAC": 9}
ALGORITHM = {"CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED": 0, "GOOGLE_SYMMETRIC_ENCRYPTION": 1,
             "RSA_DECRYPT_OAEP_2048_SHA256": 8, "RSA_DECRYPT_OAEP_3072_SHA256": 9,
             "RSA_DECRYPT_OAEP_4096_SHA256": 10, "RSA_DECRYPT_OAEP_4096_SHA512": 17,
             "RSA_DECRYPT_OAEP_2048_SHA1": 37, "RSA_SIGN_PSS_2048_SHA256": 2,
             "RSA_SIGN_PKCS1_2048_SHA256": 5, "EC_SIGN_P256_SHA256": 12}
PROTECTION = {"PROTECTION_LEVEL_UNSPECIFIED": 0, "SOFTWARE": 1, "HSM": 2, "EXTERNAL": 3,
              "EXTERNAL_VPC": 4}
VERSION_STATE = {"CRYPTO_KEY_VERSION_STATE_UNSPECIFIED": 0, "PENDING_GENERATION": 5, "ENABLED": 1,
         "DISABLED": 2, "DESTROYED": 3}
# Algorithms this simulator can generate: RSA-OAEP with SHA-256.
RSA_BITS = {"RSA_DECRYPT_OAEP_2048_SHA256": 2048, "RSA_DECRYPT_OAEP_3072_SHA256": 3072,
            "RSA_DECRYPT_OAEP_4096_SHA256": 4096}

CRYPTO_KEY_FIELDS = {"name", "primary", "purpose", "createTime", "nextRotationTime",
                     "rotationPeriod", "versionTemplate", "labels", "importOnly",
                     "destroyScheduledDuration", "cryptoKeyBackend",
                     "keyAccessJustificationsPolicy"}
TEMPLATE_FIELDS = {"protectionLevel", "algorithm"}
DECRYPT_FIELDS = {"ciphertext", "ciphertextCrc32c"}
KEY_RING_FIELDS = {"name", "createTime"}
STANDARD_QUERY = {"$alt", "alt", "prettyPrint", "$prettyPrint", "fields", "$fields"}


class ApiError(Exception):
    HTTP = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "UNAUTHENTICATED": 401,
            "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
            "RESOURCE_EXHAUSTED": 429, "INTERNAL": 500, "UNAVAILABLE": 503}

    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.code = self.HTTP[status]
        self.message = message
        self.headers = headers or {}


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def enum_in(table, value, field):
    """A proto3 JSON enum: its name or its number."""
    if isinstance(value, str) and value in table:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        for name, number in table.items():
            if number == value:
                return name
    raise ApiError("INVALID_ARGUMENT",
                   'Invalid value at \'%s\' (type.googleapis.com/google.cloud.kms.v1), %s'
                   % (field, json.dumps(value)))


def check_fields(obj, allowed, where):
    if not isinstance(obj, dict):
        raise ApiError("INVALID_ARGUMENT",
                       "Invalid JSON payload received. Expected an object at '%s'." % where)
    for name in obj:
        if name not in allowed:
            raise ApiError("INVALID_ARGUMENT",
                           'Invalid JSON payload received. Unknown name "%s"%s: Cannot find field.'
                           % (name, " at '%s'" % where if where else ""))


def int64_in(value, field):
    """A proto3 JSON Int64Value: a decimal string or a number."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int):
        return value
    raise ApiError("INVALID_ARGUMENT",
                   "Invalid value at '%s' (type.googleapis.com/google.protobuf.Int64Value), %s"
                   % (field, json.dumps(value)))


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.key_rings = {}       # name -> createTime
        self.crypto_keys = {}     # name -> dict
        self.versions = {}        # name -> {"key": RSAPrivateKey, ...}
        self.tokens = sim_common.Tokens(args.token_ttl, args.token_log)
        self.faults = sim_common.Faults()
        self.sa = None            # (client_email, public key) for the JWT grant
        self.token_uri = "https://127.0.0.1:%d/token" % args.port
        self.metadata_email = "flowvault-test@sim-project.iam.gserviceaccount.com"
        self.pending_reads = args.pending_reads
        self.key_pool = sim_common.KeyPool()
        for ring in args.key_ring or []:
            self.key_rings[ring] = now_rfc3339()


STATE = None  # the simulator's State, set by main()


def version_json(v, numeric):
    def e(table, name):
        return table[name] if numeric else name
    out = {"name": v["name"], "state": e(VERSION_STATE, v["state"]),
           "protectionLevel": e(PROTECTION, v["protectionLevel"]),
           "algorithm": e(ALGORITHM, v["algorithm"]), "createTime": v["createTime"]}
    if v["state"] == "ENABLED":
        out["generateTime"] = v["createTime"]
    return out


def key_json(k, numeric):
    def e(table, name):
        return table[name] if numeric else name
    out = {"name": k["name"], "purpose": e(PURPOSE, k["purpose"]), "createTime": k["createTime"],
           "versionTemplate": {"protectionLevel": e(PROTECTION, k["protectionLevel"]),
                               "algorithm": e(ALGORITHM, k["algorithm"])},
           "destroyScheduledDuration": "2592000s"}
    if k["labels"]:
        out["labels"] = k["labels"]
    return out


class KmsHandler(sim_common.Handler):
    def route(self, method):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/token":
            return self.token_endpoint()
        try:
            query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
            numeric = any("enum-encoding=int" in v for v in query.get("$alt", []))
            if not url.path.startswith("/v1/"):
                raise ApiError("NOT_FOUND", "The requested URL %s was not found on this server."
                               % url.path)
            self.authenticate()
            self.faults.count("api_requests")
            if self.faults.delay_ms:
                time.sleep(self.faults.delay_ms / 1000.0)
            fault = self.faults.take()
            if fault == "throttle":
                raise ApiError("RESOURCE_EXHAUSTED",
                               "Quota exceeded for quota metric 'Cryptographic requests' and limit "
                               "'Cryptographic requests per minute' of service 'cloudkms.googleapis.com'.")
            if fault == "5xx":
                raise ApiError("UNAVAILABLE", "The service is currently unavailable.")
            body = self.read_json(method)
            self.api(method, urllib.parse.unquote(url.path[4:]), query, body, numeric)
        except ApiError as err:
            self.reply(err.code, {"error": {"code": err.code, "message": err.message,
                                            "status": err.status}}, err.headers)

    # ---- Requests ----

    def authenticate(self):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise ApiError("UNAUTHENTICATED",
                           "Request is missing required authentication credential. Expected OAuth 2 "
                           "access token, login cookie or other valid authentication credential. See "
                           "https://developers.google.com/identity/sign-in/web/devconsole-project.",
                           {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        subject, why = STATE.tokens.check(auth[7:].strip(), AUDIENCE)
        if not subject:
            self.faults.count("bad_tokens")
            raise ApiError("UNAUTHENTICATED",
                           "Request had invalid authentication credentials. Expected OAuth 2 access "
                           "token, login cookie or other valid authentication credential. See "
                           "https://developers.google.com/identity/sign-in/web/devconsole-project.",
                           {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", '
                                                'error="invalid_token"'})

    def read_json(self, method):
        data = self.read_body()
        if method == "GET":
            if data:
                raise ApiError("INVALID_ARGUMENT", "GET requests must not have a body.")
            return None
        ctype = self.headers.get("Content-Type", "")
        if ctype.split(";")[0].strip().lower() != "application/json":
            raise ApiError("INVALID_ARGUMENT",
                           "Invalid JSON payload received. Content-Type '%s' is not supported; "
                           "send application/json." % ctype)
        try:
            doc = json.loads(data.decode("utf-8")) if data else {}
        except (UnicodeDecodeError, ValueError) as err:
            raise ApiError("INVALID_ARGUMENT", "Invalid JSON payload received. %s" % err)
        # An empty message: proto3 JSON null, or "" as Google's REST
        # transport sends for a message with no fields set.
        return {} if doc is None or doc == "" else doc

    def check_query(self, query, allowed):
        for name in query:
            if name not in allowed and name not in STANDARD_QUERY:
                raise ApiError("INVALID_ARGUMENT",
                               'Invalid JSON payload received. Unknown name "%s": Cannot bind query '
                               'parameter. Field \'%s\' could not be found in request message.'
                               % (name, name))

    def api(self, method, path, query, body, numeric):
        parts = path.split("/")
        # keyRings.create: POST projects/P/locations/L/keyRings?keyRingId=ID
        if method == "POST" and len(parts) == 5 and parts[4] == "keyRings" and \
                parts[0] == "projects" and parts[2] == "locations":
            self.check_query(query, {"keyRingId"})
            check_fields(body, KEY_RING_FIELDS, "")
            ring_id = query.get("keyRingId", [""])[0]
            if not ring_id:
                raise ApiError("INVALID_ARGUMENT", "key_ring_id is required")
            name = path + "/" + ring_id
            with STATE.lock:
                if name in STATE.key_rings:
                    raise ApiError("ALREADY_EXISTS", "KeyRing %s already exists." % name)
                STATE.key_rings[name] = now_rfc3339()
                return self.reply(200, {"name": name, "createTime": STATE.key_rings[name]})
        if method == "GET" and len(parts) == 6 and parts[4] == "keyRings":
            self.check_query(query, set())
            with STATE.lock:
                if path not in STATE.key_rings:
                    raise ApiError("NOT_FOUND", "KeyRing %s not found." % path)
                return self.reply(200, {"name": path, "createTime": STATE.key_rings[path]})
        # cryptoKeys.create: POST <ring>/cryptoKeys?cryptoKeyId=ID
        if method == "POST" and len(parts) == 7 and parts[6] == "cryptoKeys":
            return self.create_key("/".join(parts[:6]), query, body, numeric)
        if method == "GET" and len(parts) == 8 and parts[6] == "cryptoKeys":
            self.check_query(query, set())
            with STATE.lock:
                key = STATE.crypto_keys.get(path)
                if not key:
                    raise ApiError("NOT_FOUND", "CryptoKey %s not found." % path)
                return self.reply(200, key_json(key, numeric))
        if len(parts) == 10 and parts[6] == "cryptoKeys" and parts[8] == "cryptoKeyVersions":
            last = parts[9]
            if method == "POST" and last.endswith(":asymmetricDecrypt"):
                return self.decrypt(path[:-len(":asymmetricDecrypt")], query, body, numeric)
            if method == "GET" and ":" not in last:
                self.check_query(query, set())
                return self.reply(200, version_json(self.version(path, need_enabled=False), numeric))
        if len(parts) == 11 and parts[10] == "publicKey" and method == "GET":
            self.check_query(query, {"publicKeyFormat"})
            return self.public_key("/".join(parts[:10]), numeric)
        raise ApiError("NOT_FOUND", "The requested URL /v1/%s was not found on this server." % path)

    def version(self, name, need_enabled=True):
        with STATE.lock:
            v = STATE.versions.get(name)
            if not v:
                raise ApiError("NOT_FOUND", "CryptoKeyVersion %s not found." % name)
            # Asymmetric versions are generated asynchronously: the first
            # reads after create see PENDING_GENERATION.
            if v["state"] == "PENDING_GENERATION" and v["key"] is not None:
                if v["pending_reads"] > 0:
                    v["pending_reads"] -= 1
                else:
                    v["state"] = "ENABLED"
            if need_enabled and v["state"] != "ENABLED":
                raise ApiError("FAILED_PRECONDITION",
                               "%s is not enabled, current state is: %s." % (name, v["state"]))
            return v

    def create_key(self, ring, query, body, numeric):
        self.check_query(query, {"cryptoKeyId", "skipInitialVersionCreation"})
        check_fields(body, CRYPTO_KEY_FIELDS, "")
        key_id = query.get("cryptoKeyId", [""])[0]
        if not key_id:
            raise ApiError("INVALID_ARGUMENT", "crypto_key_id is required")
        if not all(c.isalnum() or c in "-_" for c in key_id) or len(key_id) > 63:
            raise ApiError("INVALID_ARGUMENT",
                           "crypto_key_id must match the regular expression [a-zA-Z0-9_-]{1,63}.")
        purpose = enum_in(PURPOSE, body.get("purpose", 0), "crypto_key.purpose")
        template = body.get("versionTemplate", {})
        check_fields(template, TEMPLATE_FIELDS, "crypto_key.version_template")
        algorithm = enum_in(ALGORITHM, template.get("algorithm", 0),
                            "crypto_key.version_template.algorithm")
        protection = enum_in(PROTECTION, template.get("protectionLevel", "SOFTWARE"),
                             "crypto_key.version_template.protection_level")
        if protection == "PROTECTION_LEVEL_UNSPECIFIED":
            protection = "SOFTWARE"
        labels = body.get("labels", {})
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise ApiError("INVALID_ARGUMENT", "Invalid value at 'crypto_key.labels'")
        if purpose == "CRYPTO_KEY_PURPOSE_UNSPECIFIED":
            raise ApiError("INVALID_ARGUMENT", "The request must specify a purpose.")
        if purpose != "ASYMMETRIC_DECRYPT":
            raise ApiError("INVALID_ARGUMENT",
                           "This simulator creates ASYMMETRIC_DECRYPT keys only, not %s." % purpose)
        if algorithm not in RSA_BITS:
            raise ApiError("INVALID_ARGUMENT",
                           "Algorithm %s is not compatible with purpose ASYMMETRIC_DECRYPT." % algorithm)
        if protection not in ("SOFTWARE", "HSM"):
            raise ApiError("INVALID_ARGUMENT", "Unsupported protection level %s." % protection)
        skip = query.get("skipInitialVersionCreation", ["false"])[0] == "true"
        name = ring + "/cryptoKeys/" + key_id
        with STATE.lock:
            if ring not in STATE.key_rings:
                raise ApiError("NOT_FOUND", "KeyRing %s not found." % ring)
            if name in STATE.crypto_keys:
                raise ApiError("ALREADY_EXISTS", "CryptoKey %s already exists." % name)
            key = {"name": name, "purpose": purpose, "algorithm": algorithm,
                   "protectionLevel": protection, "labels": labels, "createTime": now_rfc3339()}
            STATE.crypto_keys[name] = key
        if not skip:
            vname = name + "/cryptoKeyVersions/1"
            version = {"name": vname, "key": None, "state": "PENDING_GENERATION",
                       "pending_reads": STATE.pending_reads, "algorithm": algorithm,
                       "protectionLevel": protection, "createTime": key["createTime"]}
            with STATE.lock:
                STATE.versions[vname] = version

            # As Cloud KMS: the key material is made after create answers.
            def generate():
                private = STATE.key_pool.take(RSA_BITS[algorithm])
                with STATE.lock:
                    version["key"] = private
            threading.Thread(target=generate, daemon=True).start()
        self.faults.count("keys_created")
        self.reply(200, key_json(key, numeric))

    def public_key(self, name, numeric):
        v = self.version(name)
        pem = v["key"].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        self.faults.count("public_keys")
        out = {"pem": pem, "algorithm": ALGORITHM[v["algorithm"]] if numeric else v["algorithm"],
               "pemCrc32c": str(crc32c(pem.encode())), "name": name,
               "protectionLevel": PROTECTION[v["protectionLevel"]] if numeric else v["protectionLevel"]}
        self.reply(200, out)

    def decrypt(self, name, query, body, numeric):
        self.check_query(query, set())
        check_fields(body, DECRYPT_FIELDS, "")
        if "ciphertext" not in body:
            raise ApiError("INVALID_ARGUMENT", "ciphertext is required.")
        ciphertext = sim_common.b64decode_strict(body["ciphertext"])
        if ciphertext is None:
            ciphertext = sim_common.b64decode_strict(body["ciphertext"], urlsafe=True)
        if ciphertext is None:
            raise ApiError("INVALID_ARGUMENT",
                           "Invalid value at 'ciphertext' (TYPE_BYTES), Base64 decoding failed for "
                           "%s" % json.dumps(body["ciphertext"])[:40])
        verified = False
        if "ciphertextCrc32c" in body:
            if int64_in(body["ciphertextCrc32c"], "ciphertext_crc32c") != crc32c(ciphertext):
                raise ApiError("INVALID_ARGUMENT",
                               "The checksum in field ciphertext_crc32c did not match the data in "
                               "field ciphertext.")
            verified = True
        v = self.version(name)
        if v["algorithm"] not in RSA_BITS:
            raise ApiError("FAILED_PRECONDITION",
                           "%s has algorithm %s, which is not an asymmetric decryption algorithm."
                           % (name, v["algorithm"]))
        self.faults.count("decrypts")
        try:
            plaintext = v["key"].decrypt(ciphertext, padding.OAEP(
                mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
        except ValueError:
            raise ApiError("INVALID_ARGUMENT", "Decryption failed: the ciphertext is invalid.")
        self.reply(200, {
            "plaintext": base64.b64encode(plaintext).decode(),
            "plaintextCrc32c": str(crc32c(plaintext)),
            "verifiedCiphertextCrc32c": verified,
            "protectionLevel": PROTECTION[v["protectionLevel"]] if numeric else v["protectionLevel"]})

    # ---- OAuth 2.0 token endpoint: the JWT bearer grant (RFC 7523) ----

    def token_error(self, status, error, description):
        self.reply(status, {"error": error, "error_description": description})

    def token_endpoint(self):
        if self.command != "POST":
            return self.token_error(405, "invalid_request", "POST only")
        body = self.read_body()
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return self.token_error(400, "invalid_request", "Bad Request")
        form = urllib.parse.parse_qs(body.decode("ascii", "replace"))
        grant = form.get("grant_type", [""])[0]
        if grant != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self.token_error(400, "unsupported_grant_type", "Invalid grant_type: " + grant)
        assertion = form.get("assertion", [""])[0]
        pieces = assertion.split(".")
        if len(pieces) != 3 or not STATE.sa:
            return self.token_error(400, "invalid_grant", "Invalid JWT: Token must be a short-lived "
                                    "token (60 minutes) and in a reasonable timeframe.")
        try:
            header = json.loads(sim_common.b64decode_strict(pieces[0], urlsafe=True))
            claims = json.loads(sim_common.b64decode_strict(pieces[1], urlsafe=True))
            signature = sim_common.b64decode_strict(pieces[2], urlsafe=True)
        except (TypeError, ValueError):
            return self.token_error(400, "invalid_grant", "Invalid JWT Signature.")
        email, public, key_id = STATE.sa
        if header.get("alg") != "RS256" or header.get("kid", key_id) != key_id:
            return self.token_error(400, "invalid_grant", "Invalid JWT Signature.")
        try:
            public.verify(signature, (pieces[0] + "." + pieces[1]).encode(),
                          padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            self.faults.count("bad_assertions")
            return self.token_error(400, "invalid_grant", "Invalid JWT Signature.")
        now = time.time()
        if claims.get("iss") != email:
            return self.token_error(400, "invalid_grant", "Invalid JWT: unknown issuer.")
        if claims.get("aud") != STATE.token_uri:
            return self.token_error(400, "invalid_grant", "Invalid JWT: aud must be the token URI.")
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int) or iat > now + 300 or \
                exp < now or exp - iat > 3600:
            return self.token_error(400, "invalid_grant", "Invalid JWT: Token must be a short-lived "
                                    "token (60 minutes) and in a reasonable timeframe. Check your "
                                    "iat and exp values in the JWT claim.")
        scopes = set(str(claims.get("scope", "")).split())
        if not scopes & SCOPES:
            return self.token_error(400, "invalid_scope", "Invalid OAuth scope or ID token audience "
                                    "provided.")
        token = STATE.tokens.issue("ya29.sim-", email, AUDIENCE)
        self.faults.count("tokens_issued")
        self.reply(200, {"access_token": token, "expires_in": STATE.tokens.ttl,
                         "token_type": "Bearer"})


class MetadataHandler(sim_common.Handler):
    """The GCE metadata server: plain HTTP, "Metadata-Flavor: Google" both ways."""

    def route(self, method):
        url = urllib.parse.urlsplit(self.path)
        headers = {"Metadata-Flavor": "Google"}
        if self.headers.get("Metadata-Flavor") != "Google" or "X-Forwarded-For" in self.headers:
            return self.reply(403, b"Missing required header: Metadata-Flavor\n", headers,
                              "text/html; charset=UTF-8")
        base = "/computeMetadata/v1/instance/service-accounts/default/"
        if method != "GET":
            return self.reply(405, b"Method not allowed\n", headers, "text/plain")
        if url.path == base + "token":
            token = STATE.tokens.issue("ya29.md-", STATE.metadata_email, AUDIENCE)
            self.faults.count("tokens_issued")
            return self.reply(200, {"access_token": token, "expires_in": STATE.tokens.ttl,
                                    "token_type": "Bearer"}, headers)
        if url.path == base + "email":
            return self.reply(200, STATE.metadata_email.encode(), headers, "application/text")
        if url.path in ("/", "/computeMetadata/v1/", "/computeMetadata/v1"):
            return self.reply(200, b"instance/\nproject/\n", headers, "application/text")
        if url.path == "/computeMetadata/v1/project/project-id":
            return self.reply(200, b"sim-project", headers, "application/text")
        return self.reply(404, b"Not Found\n", headers, "text/html; charset=UTF-8")


def write_service_account(path, port):
    """A service-account key file as the console downloads it; the simulator
    keeps the public half to check JWT assertions."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_id = secrets.token_hex(20)
    email = "flowvault-test@sim-project.iam.gserviceaccount.com"
    doc = {"type": "service_account", "project_id": "sim-project", "private_key_id": key_id,
           "private_key": private.private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()).decode(),
           "client_email": email, "client_id": "100000000000000000001",
           "auth_uri": "https://accounts.google.com/o/oauth2/auth",
           "token_uri": "https://127.0.0.1:%d/token" % port,
           "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
           "universe_domain": "googleapis.com"}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    return email, private.public_key(), key_id


def main():
    global STATE
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--metadata-port", type=int)
    ap.add_argument("--sa-json", help="write a service-account key file here")
    ap.add_argument("--static-token", help="file whose content is a valid access token")
    ap.add_argument("--token-ttl", type=int, default=3600)
    ap.add_argument("--key-ring", action="append")
    ap.add_argument("--pending-reads", type=int, default=1,
                    help="reads of a new version that still see PENDING_GENERATION")
    ap.add_argument("--token-log", help="append every token issued to this file")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    STATE = State(args)
    if args.sa_json:
        STATE.sa = write_service_account(args.sa_json, args.port)
    if args.static_token:
        with open(args.static_token) as f:
            STATE.tokens.add_static(f.read().strip(), "static", AUDIENCE)
    faults = sim_common.Faults()
    faults.tokens = STATE.tokens
    STATE.faults = faults
    KmsHandler.faults = faults
    MetadataHandler.faults = faults
    sim_common.serve(KmsHandler, args.port, "gcp-kms", args.cert, args.key, args.verbose)
    if args.metadata_port:
        sim_common.serve(MetadataHandler, args.metadata_port, "gce-metadata", verbose=args.verbose)
    sim_common.wait_forever()


if __name__ == "__main__":
    main()
