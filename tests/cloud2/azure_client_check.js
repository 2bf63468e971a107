#!/usr/bin/env node
// Microsoft's own Key Vault client (@azure/keyvault-keys) against the
// simulator: create an RSA-HSM key, read it back (public JWK), and decrypt
// an RSA-OAEP-256 ciphertext made here with Node's crypto through
// CryptographyClient. The SDK does Key Vault's bearer challenge itself; the
// TokenCredential below takes the scope and tenant the SDK derived from the
// simulator's challenge and runs the client credentials grant against the
// simulator's token endpoint.
//
//   NODE_EXTRA_CA_CERTS=ca.pem node azure_client_check.js PORT CLIENT_ID SECRET_FILE
// Prints one JSON line {"ok": true, ...} and exits 0, or exits 1 with why.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const { KeyClient, CryptographyClient } = require('@azure/keyvault-keys');

const [port, clientId, secretFile] = process.argv.slice(2);
const base = `https://127.0.0.1:${port}`;
const clientSecret = fs.readFileSync(secretFile, 'utf-8').trim();

const seen = { scopes: [], tenants: [] };
const credential = {
  async getToken(scopes, options) {
    const scope = Array.isArray(scopes) ? scopes[0] : scopes;
    const tenant = options && options.tenantId;
    seen.scopes.push(scope);
    seen.tenants.push(tenant);
    if (!tenant) throw new Error('the SDK passed no tenant from the challenge');
    const res = await fetch(`${base}/${tenant}/oauth2/v2.0/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret, scope,
      }),
    });
    const doc = await res.json();
    if (!res.ok) throw new Error('token endpoint: ' + JSON.stringify(doc));
    return { token: doc.access_token, expiresOnTimestamp: Date.now() + doc.expires_in * 1000 };
  },
};

function jwkToPem(jwk) {
  return crypto.createPublicKey({ key: { kty: 'RSA', n: jwk.n.toString('base64url'), e: jwk.e.toString('base64url') }, format: 'jwk' })
    .export({ type: 'spki', format: 'pem' });
}

async function main() {
  const options = { disableChallengeResourceVerification: true };
  const keys = new KeyClient(base, credential, options);
  const name = 'flows-' + crypto.randomBytes(4).toString('hex');
  const created = await keys.createRsaKey(name, {
    hsm: true, keySize: 2048, keyOps: ['decrypt'], tags: { owner: 'flowvault' },
  });
  if (created.keyType !== 'RSA-HSM') throw new Error('key type ' + created.keyType);
  if (JSON.stringify(created.keyOperations) !== '["decrypt"]') throw new Error('key_ops');
  const fetched = await keys.getKey(name, { version: created.properties.version });
  if (fetched.id !== created.id) throw new Error('kid differs: ' + fetched.id);

  const pem = jwkToPem(fetched.key);
  const secret = crypto.randomBytes(16);
  const ciphertext = crypto.publicEncrypt(
    { key: pem, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, secret);
  const crypt = new CryptographyClient(created.id, credential, options);
  const result = await crypt.decrypt({ algorithm: 'RSA-OAEP-256', ciphertext });
  if (!Buffer.from(result.result).equals(secret)) throw new Error('plaintext differs');
  if (result.keyID !== created.id) throw new Error('keyID ' + result.keyID);

  // A ciphertext to another key: 400 BadParameter, surfaced by the SDK.
  const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
  const stranger = crypto.publicEncrypt(
    { key: other, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, secret);
  let refused = null;
  try {
    await crypt.decrypt({ algorithm: 'RSA-OAEP-256', ciphertext: stranger });
  } catch (err) {
    refused = err;
  }
  if (!refused || refused.statusCode !== 400 || refused.code !== 'BadParameter')
    throw new Error('bad ciphertext: ' + (refused ? `${refused.statusCode} ${refused.code}` : 'accepted'));

  // A key that is not there: 404 KeyNotFound.
  let missing = null;
  try {
    await keys.getKey('no-such-key');
  } catch (err) {
    missing = err;
  }
  if (!missing || missing.statusCode !== 404 || missing.code !== 'KeyNotFound')
    throw new Error('missing key: ' + (missing ? `${missing.statusCode} ${missing.code}` : 'found'));

  if (!seen.scopes.every((s) => s === 'https://vault.azure.net/.default'))
    throw new Error('scopes from the challenge: ' + seen.scopes);
  console.log(JSON.stringify({ ok: true, kid: created.id, tokens: seen.scopes.length }));
}

main().catch((err) => {
  console.error('azure_client_check: ' + (err && err.stack ? err.stack : err));
  process.exit(1);
});
