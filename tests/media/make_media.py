#!/usr/bin/env python3
"""Make a Flows media upload the way WhatsApp does, independently of flowvault
(Python `cryptography`, following Meta's media-upload reference and pywa):

  ciphertext = AES-256-CBC(encryption_key, iv, PKCS#7(clear))
  mac10      = HMAC-SHA256(hmac_key, iv || ciphertext)[:10]
  cdn_file   = ciphertext || mac10
  encrypted_hash = SHA-256(cdn_file), plaintext_hash = SHA-256(clear)

make_media.py OUTDIR CLEAR_FILE [--cdn-url URL] [--tamper CASE]
writes OUTDIR/object.json and OUTDIR/cdn.bin. CASE breaks one thing:
  encrypted-hash   wrong encrypted_hash
  mac              a flipped MAC byte (encrypted_hash recomputed to match)
  mac-ciphertext-only  the MAC computed over the ciphertext alone (a variant
                   one published SDK uses; hash recomputed)
  iv               a different iv in the metadata
  key              a different encryption_key (MAC and hashes still right)
  padding          last block with invalid padding (MAC and hashes right)
  plaintext-hash   wrong plaintext_hash
  truncate-5, truncate-20, empty, odd-length   shortened files
"""
import base64, hashlib, hmac, json, os, sys
from cryptography.hazmat.primitives import padding as sympad
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def aes_cbc(key, iv, data):
    e = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return e.update(data) + e.finalize()


def main():
    out, clear_path = sys.argv[1], sys.argv[2]
    args = sys.argv[3:]
    cdn_url = "https://mmg.whatsapp.net/v/t62.7119-24/media.enc"
    tamper = None
    while args:
        if args[0] == "--cdn-url":
            cdn_url = args[1]
        elif args[0] == "--tamper":
            tamper = args[1]
        args = args[2:]
    clear = open(clear_path, "rb").read()
    enc_key, hmac_key, iv = os.urandom(32), os.urandom(32), os.urandom(16)
    p = sympad.PKCS7(128).padder()
    padded = p.update(clear) + p.finalize()
    if tamper == "padding":
        padded = padded[:-1] + bytes([0])  # a last byte of 0 is never valid PKCS#7
    ciphertext = aes_cbc(enc_key, iv, padded)
    mac_input = ciphertext if tamper == "mac-ciphertext-only" else iv + ciphertext
    mac10 = hmac.new(hmac_key, mac_input, hashlib.sha256).digest()[:10]
    if tamper == "mac":
        mac10 = bytes([mac10[0] ^ 1]) + mac10[1:]
    cdn = ciphertext + mac10
    if tamper == "truncate-5":
        cdn = cdn[:5]
    elif tamper == "truncate-20":
        cdn = cdn[:20]
    elif tamper == "empty":
        cdn = b""
    elif tamper == "odd-length":
        cdn = cdn[:-1]
    meta = {
        "encryption_key": enc_key, "hmac_key": hmac_key, "iv": iv,
        "encrypted_hash": hashlib.sha256(cdn).digest(),
        "plaintext_hash": hashlib.sha256(clear).digest(),
    }
    if tamper == "encrypted-hash":
        meta["encrypted_hash"] = hashlib.sha256(b"other").digest()
    elif tamper == "iv":
        meta["iv"] = os.urandom(16)
    elif tamper == "key":
        meta["encryption_key"] = os.urandom(32)
    elif tamper == "plaintext-hash":
        meta["plaintext_hash"] = hashlib.sha256(b"other").digest()
    obj = {"media_id": "790aba14-5f4f-4a2d-9b3a-1e3b2c9d0a11", "cdn_url": cdn_url,
           "file_name": "IMG_5237.jpg",
           "encryption_metadata": {k: base64.b64encode(v).decode() for k, v in meta.items()}}
    with open(os.path.join(out, "object.json"), "w") as f:
        json.dump(obj, f)
    with open(os.path.join(out, "cdn.bin"), "wb") as f:
        f.write(cdn)


if __name__ == "__main__":
    main()
