#!/usr/bin/env python3
"""The AWS simulators against AWS's own SDK (boto3/botocore from Debian).

If boto3 cannot create a key, read its public key and decrypt an
OAEP-SHA256 ciphertext through aws_kms_sim.py, or does not recognise its
errors (signature, unknown key, throttling) the way it does AWS's, the
simulator is wrong, not boto3. The same for the credential endpoints of
aws_creds_sim.py (STS web identity, container endpoint, IMDSv2), which
botocore's own credential providers read.

Usage: vendor_boto3.py KMS_URL CREDS_HTTPS_URL CREDS_HTTP_URL CA IDENTITIES TMPDIR
"""
import json
import os
import sys
import urllib.request
import ssl

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

kms_url, creds_https, creds_http, ca, identities_file, tmp = sys.argv[1:7]
REGION = "eu-west-1"
ids = {i["name"]: i for i in json.load(open(identities_file))}


def client(ident, **kw):
    return boto3.client(
        "kms", region_name=REGION, endpoint_url=kms_url, verify=ca,
        aws_access_key_id=ident["access_key"], aws_secret_access_key=ident["secret_key"],
        aws_session_token=ident.get("token"),
        config=Config(retries={"mode": "standard", "max_attempts": 5}), **kw)


def expect_error(fn, code):
    try:
        fn()
    except ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, "expected %s, got %s (%s)" % (code, got, e)
        return e
    raise AssertionError("expected %s, call succeeded" % code)


def ctl(path, doc):
    ctx = ssl.create_default_context(cafile=ca)
    req = urllib.request.Request(kms_url + path, data=json.dumps(doc).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, context=ctx).read()


kms = client(ids["config"])

# Create, alias, describe, public key.
created = kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT",
                         Description="vendor check", Tags=[{"TagKey": "t", "TagValue": "v"}])
meta = created["KeyMetadata"]
assert meta["KeySpec"] == "RSA_2048" and meta["KeyUsage"] == "ENCRYPT_DECRYPT", meta
kms.create_alias(AliasName="alias/vendor", TargetKeyId=meta["KeyId"])
assert kms.describe_key(KeyId="alias/vendor")["KeyMetadata"]["Arn"] == meta["Arn"]
pub = kms.get_public_key(KeyId="alias/vendor")
assert pub["KeyId"] == meta["Arn"] and "RSAES_OAEP_SHA_256" in pub["EncryptionAlgorithms"]
public_key = serialization.load_der_public_key(pub["PublicKey"])
assert public_key.key_size == 2048
print("ok: boto3 CreateKey, CreateAlias, DescribeKey, GetPublicKey")

# Decrypt what the public key encrypted, OAEP with SHA-256 and MGF1-SHA-256.
secret = os.urandom(16)
blob = public_key.encrypt(secret, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                algorithm=hashes.SHA256(), label=None))
out = kms.decrypt(CiphertextBlob=blob, KeyId="alias/vendor",
                  EncryptionAlgorithm="RSAES_OAEP_SHA_256")
assert out["Plaintext"] == secret and out["KeyId"] == meta["Arn"], out
print("ok: boto3 Decrypt RSAES_OAEP_SHA_256")

# Errors boto3 must see as AWS's.
expect_error(lambda: kms.decrypt(CiphertextBlob=b"\x01" * 256, KeyId="alias/vendor",
                                 EncryptionAlgorithm="RSAES_OAEP_SHA_256"),
             "InvalidCiphertextException")
expect_error(lambda: kms.get_public_key(KeyId="alias/nothing"), "NotFoundException")
expect_error(lambda: kms.create_alias(AliasName="alias/vendor", TargetKeyId=meta["KeyId"]),
             "AlreadyExistsException")
bad = dict(ids["config"], secret_key="wrong" + ids["config"]["secret_key"])
expect_error(lambda: client(bad).get_public_key(KeyId="alias/vendor"),
             "InvalidSignatureException")
stranger = dict(ids["config"], access_key="AKIASTRANGER00000000")
expect_error(lambda: client(stranger).get_public_key(KeyId="alias/vendor"),
             "UnrecognizedClientException")
with_token = client(ids["envtoken"])
assert with_token.get_public_key(KeyId="alias/vendor")["KeyId"] == meta["Arn"]
expect_error(lambda: client(dict(ids["envtoken"], token="forged")).get_public_key(KeyId="alias/vendor"),
             "UnrecognizedClientException")
print("ok: boto3 sees InvalidCiphertext, NotFound, AlreadyExists, InvalidSignature, UnrecognizedClient")

# botocore classifies the simulator's throttling and 5xx as retryable.
ctl("/_sim/faults", {"throttle": 2})
assert kms.get_public_key(KeyId="alias/vendor")["KeyId"] == meta["Arn"]
ctl("/_sim/faults", {"fail": 2, "fail_status": 500})
assert kms.get_public_key(KeyId="alias/vendor")["KeyId"] == meta["Arn"]
ctl("/_sim/faults", {"throttle": 10})
no_retry = client(ids["config"], )
no_retry = boto3.client("kms", region_name=REGION, endpoint_url=kms_url, verify=ca,
                        aws_access_key_id=ids["config"]["access_key"],
                        aws_secret_access_key=ids["config"]["secret_key"],
                        config=Config(retries={"mode": "standard", "max_attempts": 1}))
expect_error(lambda: no_retry.get_public_key(KeyId="alias/vendor"), "ThrottlingException")
ctl("/_sim/faults", {"throttle": 0})
print("ok: botocore retries the simulator's ThrottlingException and HTTP 500")

kms.schedule_key_deletion(KeyId=meta["KeyId"], PendingWindowInDays=7)
expect_error(lambda: kms.get_public_key(KeyId=meta["KeyId"]), "KMSInvalidStateException")
print("ok: boto3 ScheduleKeyDeletion")

# ---- Credential endpoints, read by botocore's own providers ----


def creds_with_env(env):
    keep = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        session = botocore.session.Session()
        session.set_config_variable("region", REGION)
        # Only the source under test: no files, no other providers.
        resolver = session.get_component("credential_provider")
        c = resolver.load_credentials()
        return c.get_frozen_credentials() if c else None
    finally:
        for k, v in keep.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


for k in list(os.environ):
    if k.startswith("AWS_"):
        del os.environ[k]
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.path.join(tmp, "none")
os.environ["AWS_CONFIG_FILE"] = os.path.join(tmp, "none")
os.environ["AWS_CA_BUNDLE"] = ca

# botocore 1.29 has no AWS_ENDPOINT_URL_STS: call STS through its client,
# which parses the answer with the same code its web identity provider uses.
sts = boto3.client("sts", region_name=REGION, endpoint_url=creds_https, verify=ca,
                   aws_access_key_id="unused", aws_secret_access_key="unused")
r = sts.assume_role_with_web_identity(RoleArn="arn:aws:iam::111122223333:role/flows",
                                      RoleSessionName="vendor",
                                      WebIdentityToken="eyJ.test-web-identity-token.sig")
c = r["Credentials"]
assert c["AccessKeyId"] == ids["webid"]["access_key"], c
assert c["SecretAccessKey"] == ids["webid"]["secret_key"], c
assert c["SessionToken"] == ids["webid"]["token"], c
expect_error(lambda: sts.assume_role_with_web_identity(
    RoleArn="arn:aws:iam::111122223333:role/flows", RoleSessionName="vendor",
    WebIdentityToken="eyJ.forged.sig"), "InvalidIdentityToken")
print("ok: boto3 STS AssumeRoleWithWebIdentity")

with open(os.path.join(tmp, "container.token"), "w") as f:
    f.write("container-auth-token-0006")
c = creds_with_env({"AWS_CONTAINER_CREDENTIALS_FULL_URI": creds_http + "/container/creds",
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN": "container-auth-token-0006",
                    "AWS_EC2_METADATA_DISABLED": "true"})
assert c and c.access_key == ids["container"]["access_key"] and c.token == ids["container"]["token"], c
print("ok: botocore container credential provider")

c = creds_with_env({"AWS_EC2_METADATA_SERVICE_ENDPOINT": creds_http + "/",
                    "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "2"})
assert c and c.access_key == ids["imds"]["access_key"] and c.token == ids["imds"]["token"], c
print("ok: botocore IMDSv2 credential provider")
