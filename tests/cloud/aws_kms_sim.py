#!/usr/bin/env python3
"""A strict AWS KMS simulator on loopback, for the aws-kms plugin's tests.

Written from the AWS KMS API Reference (CreateKey, CreateAlias, DescribeKey,
GetPublicKey, Decrypt, ScheduleKeyDeletion; "Common Errors") and the AWS
JSON 1.1 protocol: POST / with Content-Type application/x-amz-json-1.1 and
X-Amz-Target: TrentService.<Operation>; errors are HTTP 4xx/5xx with
{"__type": ..., "message": ...}. Every request must carry a SigV4
signature, which is checked by recomputing it with botocore's own signer
from the secret key of the access key id named in the Credential scope.
RSA keys live in memory and decrypt with python3-cryptography (OAEP with
SHA-1 or SHA-256, MGF1 with the same hash, as KMS does).

Checked against boto3 by tests/cloud/vendor_boto3.py.

Usage: aws_kms_sim.py --port P --cert C --key K --identities FILE
           [--region R] [--account 111122223333]
FILE is JSON: [{"access_key": ..., "secret_key": ..., "token": ... or null}]
Control (not KMS): POST /_sim/faults, GET /_sim/stats,
GET /_sim/public/<key-id-or-alias> (DER of the public key).
"""
import argparse
import base64
import datetime
import hmac
import json
import re
import threading
import time
import uuid

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import simlib

JSON_TYPE = "application/x-amz-json-1.1"
RSA_SPECS = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}
OAEP = {"RSAES_OAEP_SHA_1": hashes.SHA1, "RSAES_OAEP_SHA_256": hashes.SHA256}
MAX_SKEW = datetime.timedelta(minutes=5)
AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/,]+)/(\d{8})/([^/,]+)/([^/,]+)/aws4_request,\s*"
    r"SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$")

# The members each operation accepts (API Reference, "Request Syntax"),
# with their JSON types; anything else is refused.
SHAPES = {
    "CreateKey": {"Policy": str, "Description": str, "KeyUsage": str,
                  "CustomerMasterKeySpec": str, "KeySpec": str, "Origin": str,
                  "CustomKeyStoreId": str, "BypassPolicyLockoutSafetyCheck": bool,
                  "Tags": list, "MultiRegion": bool, "XksKeyId": str},
    "CreateAlias": {"AliasName": str, "TargetKeyId": str},
    "DescribeKey": {"KeyId": str, "GrantTokens": list},
    "GetPublicKey": {"KeyId": str, "GrantTokens": list},
    "Decrypt": {"CiphertextBlob": str, "EncryptionContext": dict, "GrantTokens": list,
                "KeyId": str, "EncryptionAlgorithm": str, "DryRun": bool,
                "Recipient": dict},
    "ScheduleKeyDeletion": {"KeyId": str, "PendingWindowInDays": int},
}
REQUIRED = {
    "CreateAlias": ["AliasName", "TargetKeyId"],
    "DescribeKey": ["KeyId"],
    "GetPublicKey": ["KeyId"],
    "Decrypt": ["CiphertextBlob"],
    "ScheduleKeyDeletion": ["KeyId"],
}


class KmsError(Exception):
    def __init__(self, status, type_, message=None):
        super().__init__(type_)
        self.status, self.type, self.message = status, type_, message


class State:
    def __init__(self, region, account, identities):
        self.region, self.account = region, account
        self.identities = {i["access_key"]: i for i in identities}
        self.keys = {}      # key id -> dict
        self.aliases = {}   # "alias/x" -> key id
        self.lock = threading.Lock()

    def arn(self, kind, name):
        return "arn:aws:kms:%s:%s:%s/%s" % (self.region, self.account, kind, name)

    def find(self, key_id):
        """A key by id, key ARN, alias name or alias ARN (KMS's KeyId forms)."""
        with self.lock:
            kid = key_id
            if key_id.startswith("arn:aws:kms:"):
                parts = key_id.split(":", 5)
                if len(parts) != 6 or parts[3] != self.region or parts[4] != self.account:
                    raise KmsError(400, "NotFoundException", "Invalid arn %s" % key_id)
                kid = parts[5]
                if kid.startswith("key/"):
                    kid = kid[4:]
            if kid.startswith("alias/"):
                if kid not in self.aliases:
                    raise KmsError(400, "NotFoundException",
                                   "Alias %s is not found." % self.arn("alias", kid[6:]))
                kid = self.aliases[kid]
            key = self.keys.get(kid)
            if not key:
                raise KmsError(400, "NotFoundException",
                               "Key '%s' does not exist" % self.arn("key", kid))
            return key


def metadata(state, key):
    return {
        "AWSAccountId": state.account, "KeyId": key["id"], "Arn": key["arn"],
        "CreationDate": key["created"], "Enabled": key["state"] == "Enabled",
        "Description": key["description"], "KeyUsage": "ENCRYPT_DECRYPT",
        "KeyState": key["state"], "Origin": "AWS_KMS", "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": key["spec"], "KeySpec": key["spec"],
        "EncryptionAlgorithms": sorted(OAEP), "MultiRegion": False,
    }


def usable(key):
    if key["state"] != "Enabled":
        raise KmsError(400, "KMSInvalidStateException",
                       "%s is pending deletion." % key["arn"])


def op_create_key(state, req):
    spec = req.get("KeySpec", req.get("CustomerMasterKeySpec", "SYMMETRIC_DEFAULT"))
    usage = req.get("KeyUsage", "ENCRYPT_DECRYPT")
    if spec not in RSA_SPECS or usage != "ENCRYPT_DECRYPT":
        raise KmsError(400, "ValidationException",
                       "this simulator makes RSA ENCRYPT_DECRYPT keys only")
    if req.get("Origin", "AWS_KMS") != "AWS_KMS":
        raise KmsError(400, "UnsupportedOperationException", "Origin must be AWS_KMS here")
    for tag in req.get("Tags", []):
        if not isinstance(tag, dict) or set(tag) != {"TagKey", "TagValue"}:
            raise KmsError(400, "TagException", "Tags must have TagKey and TagValue")
    kid = str(uuid.uuid4())
    key = {"id": kid, "arn": state.arn("key", kid), "spec": spec,
           "description": req.get("Description", ""), "tags": req.get("Tags", []),
           "created": time.time(), "state": "Enabled",
           "private": rsa.generate_private_key(65537, RSA_SPECS[spec])}
    with state.lock:
        state.keys[kid] = key
    return {"KeyMetadata": metadata(state, key)}


def op_create_alias(state, req):
    name = req["AliasName"]
    if not re.fullmatch(r"alias/[a-zA-Z0-9/_-]{1,250}", name):
        raise KmsError(400, "ValidationException",
                       "1 validation error detected: Value '%s' at 'aliasName' failed to satisfy constraint" % name)
    if name.startswith("alias/aws/"):
        raise KmsError(400, "NotAuthorizedException", "Cannot create alias with prefix 'alias/aws/'")
    key = state.find(req["TargetKeyId"])
    with state.lock:
        if name in state.aliases:
            raise KmsError(400, "AlreadyExistsException",
                           "An alias with the name %s already exists" % state.arn("alias", name[6:]))
        state.aliases[name] = key["id"]
    return None  # KMS answers 200 with an empty body


def op_describe_key(state, req):
    return {"KeyMetadata": metadata(state, state.find(req["KeyId"]))}


def op_get_public_key(state, req):
    key = state.find(req["KeyId"])
    usable(key)
    der = key["private"].public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"KeyId": key["arn"], "PublicKey": base64.b64encode(der).decode(),
            "CustomerMasterKeySpec": key["spec"], "KeySpec": key["spec"],
            "KeyUsage": "ENCRYPT_DECRYPT", "EncryptionAlgorithms": sorted(OAEP)}


def op_decrypt(state, req):
    if "KeyId" not in req:
        # Asymmetric ciphertexts carry no key id: KMS needs it.
        raise KmsError(400, "InvalidCiphertextException")
    key = state.find(req["KeyId"])
    usable(key)
    alg = req.get("EncryptionAlgorithm", "SYMMETRIC_DEFAULT")
    if alg not in OAEP:
        raise KmsError(400, "InvalidKeyUsageException",
                       "%s key usage is ENCRYPT_DECRYPT which is not compatible with KMS.Decrypt with %s"
                       % (key["arn"], alg))
    if req.get("EncryptionContext"):
        raise KmsError(400, "InvalidCiphertextException")
    try:
        blob = base64.b64decode(req["CiphertextBlob"], validate=True)
    except ValueError:
        raise KmsError(400, "SerializationException", "CiphertextBlob is not base64")
    h = OAEP[alg]
    try:
        plain = key["private"].decrypt(
            blob, padding.OAEP(mgf=padding.MGF1(algorithm=h()), algorithm=h(), label=None))
    except ValueError:
        raise KmsError(400, "InvalidCiphertextException")
    return {"KeyId": key["arn"], "Plaintext": base64.b64encode(plain).decode(),
            "EncryptionAlgorithm": alg}


def op_schedule_key_deletion(state, req):
    key = state.find(req["KeyId"])
    days = req.get("PendingWindowInDays", 30)
    if not 7 <= days <= 30:
        raise KmsError(400, "ValidationException", "PendingWindowInDays must be 7 to 30")
    key["state"] = "PendingDeletion"
    with state.lock:
        for a in [a for a, k in state.aliases.items() if k == key["id"]]:
            del state.aliases[a]
    return {"KeyId": key["arn"], "DeletionDate": time.time() + days * 86400,
            "KeyState": "PendingDeletion", "PendingWindowInDays": days}


OPS = {"CreateKey": op_create_key, "CreateAlias": op_create_alias,
       "DescribeKey": op_describe_key, "GetPublicKey": op_get_public_key,
       "Decrypt": op_decrypt, "ScheduleKeyDeletion": op_schedule_key_deletion}


def verify_sigv4(state, handler, body):
    """Check the request's SigV4 signature as KMS does; KmsError if not."""
    auth = handler.headers.get("Authorization")
    if not auth:
        raise KmsError(400, "MissingAuthenticationTokenException", "Missing Authentication Token")
    m = AUTH_RE.match(auth)
    if not m:
        raise KmsError(400, "IncompleteSignatureException",
                       "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.")
    akid, day, region, service, signed, signature = m.groups()
    ident = state.identities.get(akid)
    if not ident:
        raise KmsError(400, "UnrecognizedClientException",
                       "The security token included in the request is invalid.")
    if region != state.region or service != "kms":
        raise KmsError(400, "InvalidSignatureException",
                       "Credential should be scoped to a valid region, not '%s'." % region)
    amz_date = handler.headers.get("X-Amz-Date", "")
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
    except ValueError:
        raise KmsError(400, "IncompleteSignatureException", "X-Amz-Date is missing or malformed")
    if amz_date[:8] != day:
        raise KmsError(400, "InvalidSignatureException", "Date in Credential scope does not match X-Amz-Date")
    if abs(datetime.datetime.utcnow() - when) > MAX_SKEW:
        raise KmsError(400, "InvalidSignatureException",
                       "Signature expired: %s is now earlier than the allowed time." % amz_date)
    names = signed.split(";")
    if "host" not in names:
        raise KmsError(400, "InvalidSignatureException", "'Host' must be a signed header")
    headers = {}
    for n in names:
        values = handler.headers.get_all(n)
        if values is None:
            raise KmsError(400, "InvalidSignatureException",
                           "The request signature we calculated does not match the signature you provided.")
        headers[n] = ",".join(values)
    req = AWSRequest(method=handler.command, url="https://%s%s" % (headers["host"], handler.path),
                     data=body, headers=headers)
    req.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(akid, ident["secret_key"], ident.get("token")), "kms", region)
    canonical = signer.canonical_request(req)
    expected = signer.signature(signer.string_to_sign(req, canonical), req)
    if not hmac.compare_digest(expected, signature):
        raise KmsError(400, "InvalidSignatureException",
                       "The request signature we calculated does not match the signature you provided. "
                       "Check your AWS Secret Access Key and signing method. Consult the service "
                       "documentation for details.")
    token = handler.headers.get("X-Amz-Security-Token")
    if ident.get("token") is not None or token is not None:
        if token is None or ident.get("token") is None or not hmac.compare_digest(token, ident["token"]):
            raise KmsError(400, "UnrecognizedClientException",
                           "The security token included in the request is invalid.")


def check_shape(op, req):
    if not isinstance(req, dict):
        raise KmsError(400, "SerializationException", "Start of structure expected")
    shape = SHAPES[op]
    for name, value in req.items():
        if name not in shape:
            raise KmsError(400, "SerializationException",
                           "Unrecognized field \"%s\" for %s" % (name, op))
        t = shape[name]
        if not isinstance(value, t) or (t is int and isinstance(value, bool)):
            raise KmsError(400, "SerializationException",
                           "Unexpected value for %s.%s" % (op, name))
    for name in REQUIRED.get(op, []):
        if name not in req:
            raise KmsError(400, "ValidationException",
                           "1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null"
                           % (name[0].lower() + name[1:]))


class KmsHandler(simlib.Handler):
    def error(self, e):
        body = {"__type": e.type}
        if e.message:
            body["message"] = e.message
        self.send(e.status, body, JSON_TYPE, {"x-amzn-RequestId": str(uuid.uuid4())})

    def do_GET(self):
        if not self.handle_sim():
            self.read_body()
            self.error(KmsError(404, "UnknownOperationException"))

    def extra_sim(self, body):
        if self.path.startswith("/_sim/public/"):
            try:
                key = self.server.state.find(self.path[len("/_sim/public/"):])
            except KmsError:
                return self.send(404, {"error": "no such key"})
            der = key["private"].public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            return self.send(200, der, "application/octet-stream")
        return self.send(404, {"error": "no such control"})

    def do_POST(self):
        if self.handle_sim():
            return
        body = self.read_body()
        state = self.server.state
        faults = self.server.faults
        try:
            if self.path != "/":
                raise KmsError(404, "UnknownOperationException")
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            target = self.headers.get("X-Amz-Target", "")
            op = target[len("TrentService."):] if target.startswith("TrentService.") else None
            if ctype != JSON_TYPE or op not in OPS:
                raise KmsError(400, "UnknownOperationException")
            verify_sigv4(state, self, body)
            faults.count(op)
            fault, delay = faults.take()
            self.apply_delay(delay)
            if fault == "throttle":
                raise KmsError(400, "ThrottlingException", "Rate exceeded")
            if fault == "fail":
                raise KmsError(faults.fail_status, "KMSInternalException",
                               "The request was rejected because an internal exception occurred.")
            try:
                req = json.loads(body or b"{}")
            except ValueError:
                raise KmsError(400, "SerializationException", "Request body is not valid JSON")
            check_shape(op, req)
            answer = OPS[op](state, req)
        except KmsError as e:
            return self.error(e)
        headers = {"x-amzn-RequestId": str(uuid.uuid4())}
        if answer is None:
            return self.send(200, b"", JSON_TYPE, headers)
        self.send(200, answer, JSON_TYPE, headers)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--identities", required=True)
    ap.add_argument("--region", default="eu-west-1")
    ap.add_argument("--account", default="111122223333")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    with open(a.identities) as f:
        identities = json.load(f)

    def setup(srv):
        srv.state = State(a.region, a.account, identities)

    simlib.serve(KmsHandler, a.port, a.cert, a.key, a.verbose, setup)


if __name__ == "__main__":
    main()
