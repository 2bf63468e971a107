#!/usr/bin/env python3
"""A strict Azure Key Vault (keys) simulator for tests, on loopback.

Written from the Key Vault REST reference (api-version 7.4 and later) for
the operations flowvault uses: Create Key, Get Key and Decrypt, plus the
places a client gets a token for the vault:
  - the Microsoft identity platform token endpoint (POST
    /{tenant}/oauth2/v2.0/token, client credentials grant), on the HTTPS port
    (the "authority host");
  - the Azure Instance Metadata Service (GET /metadata/identity/oauth2/token
    with "Metadata: true"), plain HTTP on its own port.

Key Vault's bearer challenge is answered as the service does: a request
without a token gets 401 with `WWW-Authenticate: Bearer
authorization="<authority>/<tenant>", resource="<resource>"`. Keys are real
RSA keys in memory (python3-cryptography); decryption is real RSA-OAEP-256.
Unknown JSON members, a non-JSON content type, a missing api-version and an
unknown token are refused with Key Vault's shape {"error": {"code", "message"}}.

    azure_kv_sim.py --port P --cert C --key K [--imds-port M]
                    [--tenant T --client-id C --client-secret-file F]
                    [--static-token FILE] [--resource URL] [--token-ttl S]
"""
import argparse
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sim_common  # noqa: E402

API_VERSIONS = {"7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01"}
KEY_TYPES = {"RSA", "RSA-HSM"}
KEY_OPS = {"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import", "export"}
CREATE_FIELDS = {"kty", "key_size", "public_exponent", "key_ops", "attributes", "tags", "crv",
                 "release_policy"}
ATTRIBUTE_FIELDS = {"enabled", "nbf", "exp", "exportable", "hsmPlatform"}
OPERATION_FIELDS = {"alg", "value", "iv", "aad", "tag"}


class VaultError(Exception):
    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.keys = {}         # name -> [version dicts], newest last
        self.tokens = sim_common.Tokens(args.token_ttl, args.token_log)
        self.resource = args.resource.rstrip("/")
        self.tenant = args.tenant
        self.client_id = args.client_id
        self.client_secret = None
        if args.client_secret_file:
            with open(args.client_secret_file) as f:
                self.client_secret = f.read().strip()
        self.authority = "https://127.0.0.1:%d" % args.port
        self.msi_client_id = args.msi_client_id
        self.key_pool = sim_common.KeyPool()


STATE = None  # the simulator's State, set by main()


def b64url_int(value):
    return sim_common.b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def key_bundle(version, vault):
    numbers = version["key"].public_key().public_numbers()
    out = {"key": {"kid": "%s/keys/%s/%s" % (vault, version["name"], version["id"]),
                   "kty": version["kty"], "key_ops": version["key_ops"],
                   "n": b64url_int(numbers.n), "e": b64url_int(numbers.e)},
           "attributes": dict(version["attributes"])}
    if version["tags"]:
        out["tags"] = version["tags"]
    return out


class VaultHandler(sim_common.Handler):
    def route(self, method):
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            return self.token_endpoint(parts[0])
        try:
            self.vault(method, url, parts)
        except VaultError as err:
            self.reply(err.status, {"error": {"code": err.code, "message": err.message}},
                       err.headers)

    # ---- Key Vault ----

    def challenge(self):
        return {"WWW-Authenticate": 'Bearer authorization="%s/%s", resource="%s"'
                % (STATE.authority, STATE.tenant or "common", STATE.resource)}

    def vault(self, method, url, parts):
        auth = self.headers.get("Authorization", "")
        if not auth:
            self.faults.count("challenges")
            raise VaultError(401, "Unauthorized",
                             "AKV10000: Request is missing a Bearer or PoP token.", self.challenge())
        if not auth.startswith("Bearer "):
            raise VaultError(401, "Unauthorized",
                             "AKV10001: Authorization header is not a Bearer token.", self.challenge())
        subject, why = STATE.tokens.check(auth[7:].strip(), STATE.resource)
        if not subject:
            self.faults.count("bad_tokens")
            raise VaultError(401, "Unauthorized",
                             "AKV10032: Invalid issuer or audience (%s)." % why, self.challenge())
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        for name in query:
            if name != "api-version":
                raise VaultError(400, "BadParameter", "Unknown query parameter '%s'." % name)
        version = query.get("api-version", [""])[0]
        if not version:
            raise VaultError(400, "BadParameter", "The 'api-version' query parameter is missing.")
        if version not in API_VERSIONS:
            raise VaultError(400, "BadParameter",
                             "The specified version (%s) is not recognized. Consider using the "
                             "latest supported version (7.4)." % version)
        self.faults.count("api_requests")
        if self.faults.delay_ms:
            time.sleep(self.faults.delay_ms / 1000.0)
        fault = self.faults.take()
        if fault == "throttle":
            raise VaultError(429, "Throttled",
                             "Request was not processed because too many requests were received. "
                             "Reason: VaultRequestTypeLimitReached", {"Retry-After": "1"})
        if fault == "5xx":
            raise VaultError(503, "ServiceUnavailable", "The service is temporarily unavailable.")
        body = self.read_json(method)
        vault = "https://" + self.headers.get("Host", "127.0.0.1")
        if len(parts) < 2 or parts[0] != "keys":
            raise VaultError(404, "NotFound", "The requested resource was not found.")
        name = parts[1]
        if not name or not all(c.isalnum() or c == "-" for c in name) or len(name) > 127:
            raise VaultError(400, "BadParameter", "The request URI contains an invalid name: " + name)
        if method == "POST" and len(parts) == 3 and parts[2] == "create":
            return self.create(name, body, vault)
        if method == "GET" and len(parts) in (2, 3):
            v = self.find(name, parts[2] if len(parts) == 3 else "")
            self.faults.count("gets")
            return self.reply(200, key_bundle(v, vault))
        if method == "POST" and len(parts) == 4 and parts[3] == "decrypt":
            return self.decrypt(self.find(name, parts[2]), body, vault)
        raise VaultError(404, "NotFound", "The requested resource was not found.")

    def read_json(self, method):
        data = self.read_body()
        if method == "GET":
            return None
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise VaultError(415, "UnsupportedMediaType",
                             "The request content type '%s' is not supported; use application/json."
                             % self.headers.get("Content-Type", ""))
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise VaultError(400, "BadParameter", "The request body is not valid JSON.")
        if not isinstance(doc, dict):
            raise VaultError(400, "BadParameter", "The request body must be a JSON object.")
        return doc

    @staticmethod
    def check_fields(doc, allowed, where):
        for name in doc:
            if name not in allowed:
                raise VaultError(400, "BadParameter",
                                 "Property '%s' is not a member of %s." % (name, where))

    def find(self, name, version_id):
        with STATE.lock:
            versions = STATE.keys.get(name)
            if versions:
                if not version_id:
                    return versions[-1]
                for v in versions:
                    if v["id"] == version_id:
                        return v
        raise VaultError(404, "KeyNotFound",
                         "A key with (name/id) %s%s was not found in this key vault. If you recently "
                         "deleted this key you may be able to recover it using the correct recovery "
                         "command." % (name, "/" + version_id if version_id else ""))

    def create(self, name, body, vault):
        self.check_fields(body, CREATE_FIELDS, "KeyCreateParameters")
        kty = body.get("kty")
        if kty not in KEY_TYPES:
            raise VaultError(400, "BadParameter",
                             "Invalid kty '%s': this vault creates RSA and RSA-HSM keys." % kty)
        size = body.get("key_size", 2048)
        if size not in (2048, 3072, 4096):
            raise VaultError(400, "BadParameter", "Invalid key_size %r for %s." % (size, kty))
        exponent = body.get("public_exponent", 65537)
        if exponent not in (3, 65537):
            raise VaultError(400, "BadParameter", "Invalid public_exponent %r." % exponent)
        ops = body.get("key_ops", sorted(KEY_OPS - {"import", "export"}))
        if not isinstance(ops, list) or not all(op in KEY_OPS for op in ops):
            raise VaultError(400, "BadParameter", "Invalid key_ops %s." % json.dumps(ops))
        attributes = body.get("attributes", {})
        if not isinstance(attributes, dict):
            raise VaultError(400, "BadParameter", "attributes must be an object.")
        self.check_fields(attributes, ATTRIBUTE_FIELDS, "KeyAttributes")
        if attributes.get("exportable"):
            raise VaultError(400, "BadParameter", "An exportable key needs a release_policy.")
        tags = body.get("tags", {})
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise VaultError(400, "BadParameter", "tags must map names to strings.")
        now = int(time.time())
        version = {"name": name, "id": secrets.token_hex(16), "kty": kty, "key_ops": ops,
                   "tags": tags,
                   "key": STATE.key_pool.take(size, exponent),
                   "attributes": {"enabled": attributes.get("enabled", True), "created": now,
                                  "updated": now, "recoveryLevel": "Recoverable+Purgeable",
                                  "recoverableDays": 90, "exportable": False}}
        # As the real service: creating an existing name adds a new version.
        with STATE.lock:
            STATE.keys.setdefault(name, []).append(version)
        self.faults.count("keys_created")
        self.reply(200, key_bundle(version, vault))

    def decrypt(self, version, body, vault):
        self.check_fields(body, OPERATION_FIELDS, "KeyOperationsParameters")
        alg = body.get("alg")
        if alg not in ("RSA-OAEP-256", "RSA-OAEP", "RSA1_5"):
            raise VaultError(400, "BadParameter",
                             "Invalid algorithm '%s' for key type %s." % (alg, version["kty"]))
        if "decrypt" not in version["key_ops"]:
            raise VaultError(403, "Forbidden", "Operation decrypt is not permitted on this key.")
        if not version["attributes"]["enabled"]:
            raise VaultError(403, "Forbidden", "Operation decrypt is not allowed on a disabled key.")
        ciphertext = sim_common.b64decode_strict(body.get("value"), urlsafe=True)
        if ciphertext is None:
            raise VaultError(400, "BadParameter", "Property 'value' is not valid base64url.")
        if alg != "RSA-OAEP-256":
            raise VaultError(400, "BadParameter", "This simulator decrypts RSA-OAEP-256 only.")
        self.faults.count("decrypts")
        try:
            plaintext = version["key"].decrypt(ciphertext, padding.OAEP(
                mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
        except ValueError:
            raise VaultError(400, "BadParameter", "Unable to decrypt specified value.")
        self.reply(200, {"kid": "%s/keys/%s/%s" % (vault, version["name"], version["id"]),
                         "value": sim_common.b64url(plaintext)})

    # ---- Microsoft identity platform: client credentials grant ----

    def token_error(self, status, error, description):
        self.reply(status, {"error": error, "error_description": description,
                            "error_codes": [int(description[6:description.index(":")])]
                            if description.startswith("AADSTS") else []})

    def token_endpoint(self, tenant):
        if self.command != "POST":
            return self.token_error(405, "invalid_request",
                                    "AADSTS900561: The endpoint only accepts POST requests.")
        body = self.read_body()
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return self.token_error(400, "invalid_request",
                                    "AADSTS900144: The request body must contain the following "
                                    "parameter: 'grant_type'.")
        form = urllib.parse.parse_qs(body.decode("ascii", "replace"))
        get = lambda k: form.get(k, [""])[0]  # noqa: E731
        if tenant != STATE.tenant:
            return self.token_error(400, "invalid_request",
                                    "AADSTS90002: Tenant '%s' not found." % tenant)
        if get("grant_type") != "client_credentials":
            return self.token_error(400, "unsupported_grant_type",
                                    "AADSTS70003: The app requested an unsupported grant type.")
        if get("client_id") != STATE.client_id:
            return self.token_error(400, "unauthorized_client",
                                    "AADSTS700016: Application with identifier '%s' was not found "
                                    "in the directory." % get("client_id"))
        if not STATE.client_secret or get("client_secret") != STATE.client_secret:
            self.faults.count("bad_secrets")
            return self.token_error(401, "invalid_client",
                                    "AADSTS7000215: Invalid client secret provided. Ensure the "
                                    "secret being sent in the request is the client secret value, "
                                    "not the client secret ID.")
        scope = get("scope")
        if scope != STATE.resource + "/.default":
            return self.token_error(400, "invalid_scope",
                                    "AADSTS70011: The provided value for the input parameter "
                                    "'scope' is not valid: %s." % scope)
        token = STATE.tokens.issue("eyJ0eXAiOiJKV1QiLCJzaW0iOiJjYyJ9.", get("client_id"),
                                   STATE.resource)
        self.faults.count("tokens_issued")
        self.reply(200, {"token_type": "Bearer", "expires_in": STATE.tokens.ttl,
                         "ext_expires_in": STATE.tokens.ttl, "access_token": token})


class ImdsHandler(sim_common.Handler):
    """Managed identity through IMDS: plain HTTP, "Metadata: true"."""

    def route(self, method):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path != "/metadata/identity/oauth2/token":
            return self.reply(404, {"error": "not_found", "error_description": "Not found"})
        if self.headers.get("Metadata") != "true" or "X-Forwarded-For" in self.headers:
            return self.reply(400, {"error": "invalid_request",
                                    "error_description": "Required metadata header not specified"})
        if method != "GET":
            return self.reply(405, {"error": "invalid_request",
                                    "error_description": "Method not allowed"})
        if not query.get("api-version"):
            return self.reply(400, {"error": "invalid_request",
                                    "error_description": "Required query variable 'api-version' is missing"})
        resource = query.get("resource", [""])[0].rstrip("/")
        if resource != STATE.resource:
            return self.reply(400, {"error": "invalid_resource",
                                    "error_description": "AADSTS500011: The resource principal "
                                    "named %s was not found in the tenant." % resource})
        client_id = query.get("client_id", [""])[0]
        if STATE.msi_client_id and client_id and client_id != STATE.msi_client_id:
            return self.reply(400, {"error": "invalid_request",
                                    "error_description": "Identity not found"})
        token = STATE.tokens.issue("eyJ0eXAiOiJKV1QiLCJzaW0iOiJtaSJ9.", "managed-identity",
                                   STATE.resource)
        self.faults.count("tokens_issued")
        now = int(time.time())
        # IMDS sends the numbers as strings.
        self.reply(200, {"access_token": token, "client_id": STATE.msi_client_id or "msi",
                         "expires_in": str(STATE.tokens.ttl),
                         "expires_on": str(now + STATE.tokens.ttl), "ext_expires_in":
                         str(STATE.tokens.ttl), "not_before": str(now), "resource": STATE.resource,
                         "token_type": "Bearer"})


def main():
    global STATE
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--imds-port", type=int)
    ap.add_argument("--tenant", default="00000000-0000-0000-0000-00000000feed")
    ap.add_argument("--client-id", default="11111111-2222-3333-4444-555555555555")
    ap.add_argument("--client-secret-file")
    ap.add_argument("--msi-client-id")
    ap.add_argument("--static-token", help="file whose content is a valid vault token")
    ap.add_argument("--resource", default="https://vault.azure.net")
    ap.add_argument("--token-ttl", type=int, default=3599)
    ap.add_argument("--token-log", help="append every token issued to this file")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    STATE = State(args)
    if args.static_token:
        with open(args.static_token) as f:
            STATE.tokens.add_static(f.read().strip(), "static", STATE.resource)
    faults = sim_common.Faults()
    faults.tokens = STATE.tokens
    VaultHandler.faults = faults
    ImdsHandler.faults = faults
    sim_common.serve(VaultHandler, args.port, "azure-kv", args.cert, args.key, args.verbose)
    if args.imds_port:
        sim_common.serve(ImdsHandler, args.imds_port, "imds", verbose=args.verbose)
    sim_common.wait_forever()


if __name__ == "__main__":
    main()
