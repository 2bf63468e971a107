#!/usr/bin/env node
// An independent WhatsApp Flows client on Node's crypto module (OpenSSL-free
// code path on our side: nothing here uses flowvault). It encrypts the way
// WhatsApp does and the way Meta's Node endpoint example expects:
// RSA-OAEP with SHA-256 for a fresh AES-128 key, AES-128-GCM with a 16-byte
// IV, and the response decrypted under the IV with every byte inverted.
//
//   node flows_client.js post --url URL --pub PUB.pem --payload JSON
//        [--secret S] [--signature good|bad|none] [--ca CA.pem] [--raw-body TEXT]
//     -> prints {"status", "body", "response", "elapsed"} (response: decrypted JSON or null;
//        elapsed: seconds from sending the request to the end of the answer)
//   node flows_client.js encrypt --pub PUB.pem --payload JSON
//     -> prints the request body only
//   node flows_client.js load --url URL --pub PUB.pem --clients N --requests M
//        [--payload JSON] [--expect-key FIELD=VALUE] [--secret S]
//     -> N concurrent keep-alive clients, M requests each; prints {"ok", "failed", "errors"}
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const https = require('https');

function args() {
  const out = { _: process.argv[2] };
  for (let i = 3; i < process.argv.length; i += 2) {
    out[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
  }
  return out;
}

// What WhatsApp sends: a fresh AES key wrapped to the endpoint's public key.
function encryptRequest(payload, publicPem) {
  const aesKey = crypto.randomBytes(16);
  const iv = crypto.randomBytes(16);
  const wrappedKey = crypto.publicEncrypt(
    { key: publicPem, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
    aesKey);
  const cipher = crypto.createCipheriv('aes-128-gcm', aesKey, iv);
  const sealed = Buffer.concat([cipher.update(payload, 'utf-8'), cipher.final(), cipher.getAuthTag()]);
  const body = JSON.stringify({
    encrypted_flow_data: sealed.toString('base64'),
    encrypted_aes_key: wrappedKey.toString('base64'),
    initial_vector: iv.toString('base64'),
  });
  return { body, aesKey, iv };
}

// The response comes back under the inverted IV; the last 16 bytes are the tag.
function decryptResponse(text, aesKey, iv) {
  const flippedIv = Buffer.from(iv.map((b) => ~b & 0xff));
  const sealed = Buffer.from(text, 'base64');
  const decipher = crypto.createDecipheriv('aes-128-gcm', aesKey, flippedIv);
  decipher.setAuthTag(sealed.subarray(-16));
  const clear = Buffer.concat([decipher.update(sealed.subarray(0, -16)), decipher.final()]);
  return JSON.parse(clear.toString('utf-8'));
}

function sign(body, secret) {
  return 'sha256=' + crypto.createHmac('sha256', secret).update(body).digest('hex');
}

function post(url, body, headers, agent, ca) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const lib = u.protocol === 'https:' ? https : http;
    const req = lib.request(u, {
      method: 'POST',
      agent,
      ca,
      headers: Object.assign({ 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }, headers),
      timeout: 15000,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({
        status: res.statusCode,
        contentType: res.headers['content-type'] || null,
        body: Buffer.concat(chunks).toString('utf-8'),
      }));
    });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

async function main() {
  const a = args();
  const publicPem = a.pub ? fs.readFileSync(a.pub, 'utf-8') : null;
  const ca = a.ca ? fs.readFileSync(a.ca) : undefined;
  const payload = a.payload || '{"version":"3.0","action":"ping"}';

  if (a._ === 'encrypt') {
    process.stdout.write(encryptRequest(payload, publicPem).body + '\n');
    return;
  }
  if (a._ === 'post') {
    const req = encryptRequest(payload, publicPem);
    const body = a['raw-body'] !== undefined ? a['raw-body'] : req.body;
    const headers = {};
    const mode = a.signature || (a.secret ? 'good' : 'none');
    if (mode === 'good') headers['X-Hub-Signature-256'] = sign(body, a.secret);
    if (mode === 'bad') headers['X-Hub-Signature-256'] = sign(body + ' ', a.secret || 'x');
    const started = process.hrtime.bigint();
    const res = await post(a.url, body, headers, undefined, ca);
    // The request alone, without this interpreter's start-up.
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    let response = null;
    if (res.status === 200 || (res.status === 427 && res.body.length)) {
      response = decryptResponse(res.body, req.aesKey, req.iv);
    }
    process.stdout.write(JSON.stringify({ status: res.status, contentType: res.contentType, body: res.body, response, elapsed }) + '\n');
    return;
  }
  if (a._ === 'load') {
    const clients = Number(a.clients || 50);
    const perClient = Number(a.requests || 200);
    const agent = new (a.url.startsWith('https:') ? https : http).Agent({ keepAlive: true, maxSockets: clients });
    const [field, value] = (a['expect-key'] || '').split('=');
    let ok = 0;
    let failed = 0;
    const errors = {};
    const one = async () => {
      for (let i = 0; i < perClient; i++) {
        const req = encryptRequest(payload, publicPem);
        try {
          const headers = a.secret ? { 'X-Hub-Signature-256': sign(req.body, a.secret) } : {};
          const res = await post(a.url, req.body, headers, agent, ca);
          if (res.status !== 200) throw new Error('HTTP ' + res.status);
          const answer = decryptResponse(res.body, req.aesKey, req.iv);
          if (field && JSON.stringify(answer.data[field]) !== value) throw new Error('wrong answer');
          ok++;
        } catch (e) {
          failed++;
          errors[e.message] = (errors[e.message] || 0) + 1;
        }
      }
    };
    await Promise.all(Array.from({ length: clients }, one));
    agent.destroy();
    process.stdout.write(JSON.stringify({ ok, failed, errors }) + '\n');
    return;
  }
  throw new Error('usage: flows_client.js post|encrypt|load ...');
}

// Other test clients reuse the encryption, signing and request helpers.
module.exports = { encryptRequest, decryptResponse, sign, post };
if (require.main === module) {
  main().catch((e) => { console.error('flows_client:', e.message); process.exit(1); });
}
