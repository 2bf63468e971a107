// The same in-process round trip done the way Meta's Node endpoint example
// does it: crypto.privateDecrypt (OAEP, SHA-256) with the private key in the
// process, aes-128-gcm, response under the inverted IV.
//   node node_roundtrip.js KEY.pem REQUESTS_FILE SECONDS
// Prints "roundtrips_per_second <wall> <cpu>" like fv-flow-bench.
'use strict';
const crypto = require('crypto');
const fs = require('fs');

const [keyFile, requestsFile, seconds] = process.argv.slice(2);
const privateKey = crypto.createPrivateKey({ key: fs.readFileSync(keyFile, 'utf-8') });
const requests = fs.readFileSync(requestsFile, 'utf-8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const answer = { version: '3.0', screen: 'SUCCESS', data: { ok: true } };

function decryptRequest(body) {
  const aesKey = crypto.privateDecrypt(
    { key: privateKey, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
    Buffer.from(body.encrypted_aes_key, 'base64'));
  const data = Buffer.from(body.encrypted_flow_data, 'base64');
  const iv = Buffer.from(body.initial_vector, 'base64');
  const decipher = crypto.createDecipheriv('aes-128-gcm', aesKey, iv);
  decipher.setAuthTag(data.subarray(-16));
  const clear = Buffer.concat([decipher.update(data.subarray(0, -16)), decipher.final()]).toString('utf-8');
  return { decryptedBody: JSON.parse(clear), aesKey, iv };
}

function encryptResponse(response, aesKey, iv) {
  const flipped = Buffer.from(iv.map((b) => ~b & 0xff));
  const cipher = crypto.createCipheriv('aes-128-gcm', aesKey, flipped);
  return Buffer.concat([cipher.update(JSON.stringify(response), 'utf-8'), cipher.final(), cipher.getAuthTag()]).toString('base64');
}

const start = process.hrtime.bigint();
const cpuStart = process.cpuUsage();
const limit = BigInt(Math.round(Number(seconds) * 1e9));
let done = 0;
for (;;) {
  for (let i = 0; i < 16; i++, done++) {
    const { aesKey, iv } = decryptRequest(requests[done % requests.length]);
    encryptResponse(answer, aesKey, iv);
  }
  if (process.hrtime.bigint() - start >= limit) break;
}
const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
const cpu = process.cpuUsage(cpuStart);
const cpuSeconds = (cpu.user + cpu.system) / 1e6;
console.log('roundtrips_per_second ' + (done / elapsed).toFixed(1) + ' ' + (done / cpuSeconds).toFixed(1));
