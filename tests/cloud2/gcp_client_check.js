#!/usr/bin/env node
// Google's own Cloud KMS client (@google-cloud/kms, HTTP/1.1 REST transport)
// against the simulator: create a key ring and an ASYMMETRIC_DECRYPT key,
// wait for its first version, read the public key (checking its CRC32C),
// and decrypt an RSA-OAEP-SHA256 ciphertext made here with Node's crypto.
// The access token comes from the simulator's metadata server through
// google-auth-library's Compute client (GCE_METADATA_HOST).
//
//   GCE_METADATA_HOST=127.0.0.1:M NODE_EXTRA_CA_CERTS=ca.pem \
//     node gcp_client_check.js PORT
// Prints one JSON line {"ok": true, ...} and exits 0, or exits 1 with why.
'use strict';

const crypto = require('crypto');
const { KeyManagementServiceClient } = require('@google-cloud/kms');
const { Compute } = require('google-auth-library');

const port = Number(process.argv[2]);
const parent = 'projects/sim-project/locations/global';

function crc32c(buf) {
  // Only to check the simulator's pemCrc32c with a second implementation.
  let crc = 0xffffffff;
  for (const b of buf) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0x82f63b78 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}

async function main() {
  const client = new KeyManagementServiceClient({
    fallback: true,
    apiEndpoint: '127.0.0.1',
    port,
    protocol: 'https',
    authClient: new Compute(),
  });
  const ringId = 'ring-' + crypto.randomBytes(4).toString('hex');
  const [ring] = await client.createKeyRing({ parent, keyRingId: ringId, keyRing: {} });
  const [key] = await client.createCryptoKey({
    parent: ring.name,
    cryptoKeyId: 'flows',
    cryptoKey: {
      purpose: 'ASYMMETRIC_DECRYPT',
      versionTemplate: { algorithm: 'RSA_DECRYPT_OAEP_2048_SHA256', protectionLevel: 'HSM' },
      labels: { owner: 'flowvault' },
    },
  });
  if (key.purpose !== 'ASYMMETRIC_DECRYPT') throw new Error('purpose ' + key.purpose);
  const versionName = key.name + '/cryptoKeyVersions/1';
  let version;
  for (let i = 0; i < 50; i++) {
    [version] = await client.getCryptoKeyVersion({ name: versionName });
    if (version.state === 'ENABLED') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (version.state !== 'ENABLED') throw new Error('version state ' + version.state);
  if (version.protectionLevel !== 'HSM') throw new Error('protection ' + version.protectionLevel);

  const [pub] = await client.getPublicKey({ name: versionName });
  if (pub.algorithm !== 'RSA_DECRYPT_OAEP_2048_SHA256') throw new Error('algorithm ' + pub.algorithm);
  if (Number(pub.pemCrc32c.value) !== crc32c(Buffer.from(pub.pem))) throw new Error('pem crc32c');
  if (pub.name !== versionName) throw new Error('name ' + pub.name);

  const secret = crypto.randomBytes(16);
  const ciphertext = crypto.publicEncrypt(
    { key: pub.pem, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, secret);
  const [result] = await client.asymmetricDecrypt({
    name: versionName,
    ciphertext,
    ciphertextCrc32c: { value: crc32c(ciphertext) },
  });
  if (!result.verifiedCiphertextCrc32c) throw new Error('ciphertext crc32c not verified');
  if (!Buffer.from(result.plaintext).equals(secret)) throw new Error('plaintext differs');
  if (Number(result.plaintextCrc32c.value) !== crc32c(secret)) throw new Error('plaintext crc32c');

  // A ciphertext to another key: HTTP 400 with status INVALID_ARGUMENT,
  // which the client parses out of Google's error shape.
  const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
  const stranger = crypto.publicEncrypt(
    { key: other, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, secret);
  let refused = null;
  try {
    await client.asymmetricDecrypt({ name: versionName, ciphertext: stranger });
  } catch (err) {
    refused = err;
  }
  if (!refused || refused.code !== 400 || !/INVALID_ARGUMENT/.test(refused.message))
    throw new Error('bad ciphertext: ' + (refused ? JSON.stringify({ code: refused.code, status: refused.status, message: refused.message }) : 'accepted'));

  console.log(JSON.stringify({ ok: true, key: key.name, version: versionName }));
}

main().catch((err) => {
  console.error('gcp_client_check: ' + (err && err.stack ? err.stack : err));
  process.exit(1);
});
