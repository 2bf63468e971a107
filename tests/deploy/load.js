#!/usr/bin/env node
// A steady load of signed, encrypted Flows pings (tests/flow/flows_client.js
// does the crypto), each reply decrypted and checked. Runs until the file
// named by --stop exists, then prints a summary as JSON.
//
//   node load.js --url URL --ca CA.pem --secret S --pub A.pem[,B.pem...]
//        --clients N --stop FILE --out FILE
//
// Every request is written to --out as one line once it ends:
//   "<start epoch s> <end epoch s> <key index> <result>"
// where the key index says which --pub the request was encrypted to (they
// take turns) and the result is "ok", "HTTP <status>", "wrong-answer" or
// "error:<code>". Clients keep their connection to the balancer open.
'use strict';

const fs = require('fs');
const https = require('https');
const http = require('http');
const path = require('path');
const client = require(path.join(__dirname, '..', 'flow', 'flows_client.js'));

function args() {
  const out = {};
  for (let i = 2; i < process.argv.length; i += 2) out[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
  for (const need of ['url', 'secret', 'pub', 'stop', 'out']) {
    if (!out[need]) throw new Error('missing --' + need);
  }
  return out;
}

const PING = '{"version":"3.0","action":"ping"}';
const ANSWER = '{"data":{"status":"active"}}';

async function main() {
  const a = args();
  const pubs = a.pub.split(',').map((p) => fs.readFileSync(p, 'utf-8'));
  const ca = a.ca ? fs.readFileSync(a.ca) : undefined;
  const clients = Number(a.clients || 4);
  const lib = a.url.startsWith('https:') ? https : http;
  const agent = new lib.Agent({ keepAlive: true, maxSockets: clients });
  const out = fs.openSync(a.out, 'w');
  const counts = {};
  let turn = 0;
  const stopped = () => fs.existsSync(a.stop);

  const one = async () => {
    while (!stopped()) {
      const keyIndex = turn++ % pubs.length;
      const req = client.encryptRequest(PING, pubs[keyIndex]);
      const headers = { 'X-Hub-Signature-256': client.sign(req.body, a.secret) };
      const start = Date.now() / 1000;
      let result;
      try {
        const res = await client.post(a.url, req.body, headers, agent, ca);
        if (res.status !== 200) {
          result = 'HTTP ' + res.status;
        } else {
          const answer = client.decryptResponse(res.body, req.aesKey, req.iv);
          result = JSON.stringify(answer) === ANSWER ? 'ok' : 'wrong-answer';
        }
      } catch (e) {
        result = 'error:' + (e.code || e.message.replace(/\s+/g, '-'));
      }
      counts[result] = (counts[result] || 0) + 1;
      fs.writeSync(out, `${start.toFixed(3)} ${(Date.now() / 1000).toFixed(3)} ${keyIndex} ${result}\n`);
    }
  };
  await Promise.all(Array.from({ length: clients }, one));
  agent.destroy();
  fs.closeSync(out);
  process.stdout.write(JSON.stringify(counts) + '\n');
}

main().catch((e) => { console.error('load.js:', e.message); process.exit(1); });
