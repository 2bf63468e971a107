#!/usr/bin/env python3
"""The Vault simulator against hvac, the HashiCorp-listed Python client.

hvac creates an rsa-2048 Transit key, reads its public key, decrypts an
OAEP-SHA256 ciphertext made outside Vault, logs in with AppRole and with
Kubernetes service-account auth, and sees the simulator's refusals as the
exceptions it raises for Vault's (Forbidden, InvalidRequest, InvalidPath).
A simulator hvac rejects is wrong.

Usage: vendor_hvac.py URL CA ROOT_TOKEN ROLE_ID SECRET_ID K8S_ROLE JWT [NAMESPACE]
"""
import base64
import os
import sys

import hvac
import hvac.exceptions
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

url, ca, root, role_id, secret_id, k8s_role, jwt = sys.argv[1:8]
namespace = sys.argv[8] if len(sys.argv) > 8 else None


def client(token=None):
    return hvac.Client(url=url, token=token, verify=ca, namespace=namespace)


def expect(exc, fn):
    try:
        fn()
    except exc as e:
        return e
    raise AssertionError("expected %s" % exc.__name__)


c = client(root)
assert c.is_authenticated()
c.secrets.transit.create_key(name="vendor", key_type="rsa-2048", exportable=False)
info = c.secrets.transit.read_key(name="vendor")["data"]
assert info["type"] == "rsa-2048" and info["latest_version"] == 1 and not info["exportable"], info
pub = serialization.load_pem_public_key(info["keys"]["1"]["public_key"].encode())
assert pub.key_size == 2048
print("ok: hvac create_key rsa-2048, read_key with the PEM public key")

secret = os.urandom(16)
ct = pub.encrypt(secret, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                      algorithm=hashes.SHA256(), label=None))
out = c.secrets.transit.decrypt_data(name="vendor",
                                     ciphertext="vault:v1:" + base64.b64encode(ct).decode())
assert base64.b64decode(out["data"]["plaintext"]) == secret
enc = c.secrets.transit.encrypt_data(name="vendor", plaintext=base64.b64encode(b"flows").decode())
ciphertext = enc["data"]["ciphertext"]
assert ciphertext.startswith("vault:v1:")
out = c.secrets.transit.decrypt_data(name="vendor", ciphertext=ciphertext)
assert base64.b64decode(out["data"]["plaintext"]) == b"flows"
print("ok: hvac decrypt_data of an OAEP-SHA256 ciphertext made outside Vault, and encrypt/decrypt")

c.secrets.transit.rotate_key(name="vendor")
info = c.secrets.transit.read_key(name="vendor")["data"]
assert info["latest_version"] == 2 and "2" in info["keys"], info
out = c.secrets.transit.decrypt_data(name="vendor", ciphertext=ciphertext)
assert base64.b64decode(out["data"]["plaintext"]) == b"flows"
print("ok: hvac rotate_key; version 1 ciphertexts still decrypt")

bad = bytearray(ct)
bad[0] ^= 1
expect(hvac.exceptions.InvalidRequest, lambda: c.secrets.transit.decrypt_data(
    name="vendor", ciphertext="vault:v1:" + base64.b64encode(bytes(bad)).decode()))
expect(hvac.exceptions.InvalidPath, lambda: c.secrets.transit.read_key(name="nothing"))
expect(hvac.exceptions.Forbidden, lambda: client("hvs.forged").secrets.transit.read_key(name="vendor"))
assert not client("hvs.forged").is_authenticated()
print("ok: hvac sees InvalidRequest, InvalidPath, Forbidden")

a = client()
a.auth.approle.login(role_id=role_id, secret_id=secret_id)
assert a.is_authenticated()
assert a.secrets.transit.read_key(name="vendor")["data"]["type"] == "rsa-2048"
expect(hvac.exceptions.InvalidRequest,
       lambda: client().auth.approle.login(role_id=role_id, secret_id="wrong"))
print("ok: hvac AppRole login")

k = client()
k.auth.kubernetes.login(role=k8s_role, jwt=jwt)
assert k.is_authenticated()
expect(hvac.exceptions.Forbidden, lambda: client().auth.kubernetes.login(role=k8s_role, jwt="eyJ.forged"))
print("ok: hvac Kubernetes login")
