// A Flows endpoint on Node's http module, written like Meta's example
// endpoint: the private key in the process, decryptRequest, a ping answered
// {"data":{"status":"active"}}, encryptResponse, text/plain.
//   node node_server.js PORT KEY.pem
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');

const [port, keyFile] = process.argv.slice(2);
const privatePem = fs.readFileSync(keyFile, 'utf-8');

function decryptRequest(body) {
  const privateKey = crypto.createPrivateKey({ key: privatePem });
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

http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let decrypted;
    try {
      decrypted = decryptRequest(JSON.parse(Buffer.concat(chunks).toString('utf-8')));
    } catch (e) {
      res.writeHead(421).end();
      return;
    }
    const { decryptedBody, aesKey, iv } = decrypted;
    const answer = decryptedBody.action === 'ping' ? { data: { status: 'active' } } : { data: { acknowledged: true } };
    res.writeHead(200, { 'Content-Type': 'text/plain' }).end(encryptResponse(answer, aesKey, iv));
  });
}).listen(Number(port), '127.0.0.1');
