#!/usr/bin/env python3
"""An upstream (business logic) for `flowvault serve` with serve.media, on the
Python standard library only.

flowvault posts each decrypted Flows request here. A request without media
objects arrives as application/json. A request with media objects arrives as
multipart/form-data:
  part "request"  application/json: the request; in each media object,
                  encryption_metadata is replaced by
                  {"status": "ok", "part": "media-0", "size": N, "sha256": HEX}
                  or {"status": "failed", "reason": "..."}
  part "media-0"… application/octet-stream, filename = the sanitized file_name:
                  the clear, verified file
The keys never arrive here: flowvault verified and decrypted the files.

This example checks each file against its status (size and SHA-256), keeps
it in memory, and answers a screen that lists what it received.

Usage: upstream.py PORT [--save DIR]  (DIR: each raw body as received)
"""
import email.parser
import email.policy
import hashlib
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SAVE = None


def parse_multipart(content_type, body):
    """{name: (filename, bytes)} from a multipart/form-data body."""
    head = ("Content-Type: %s\r\nMIME-Version: 1.0\r\n\r\n" % content_type).encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts[name] = (part.get_filename(), part.get_payload(decode=True))
    return parts


def media_objects(value):
    """Every object that carries an encryption_metadata (where flowvault puts the status)."""
    if isinstance(value, list):
        for item in value:
            yield from media_objects(item)
    elif isinstance(value, dict):
        if "encryption_metadata" in value:
            yield value
        else:
            for item in value.values():
                yield from media_objects(item)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        content_type = self.headers.get("Content-Type", "")
        if SAVE:
            name = "%d-%d.body" % (os.getpid(), len(os.listdir(SAVE)))
            with open(os.path.join(SAVE, name), "wb") as f:
                f.write(raw)
        if content_type == "application/json":
            request, parts = json.loads(raw), {}
        elif content_type.startswith("multipart/form-data"):
            parts = parse_multipart(content_type, raw)
            request = json.loads(parts.pop("request")[1])
        else:
            return self.answer(400, {"error": "unexpected Content-Type " + content_type})
        files = []
        for obj in media_objects(request.get("data")):
            status = obj["encryption_metadata"]
            entry = {"media_id": obj.get("media_id"), "file_name": obj.get("file_name"),
                     "status": status.get("status")}
            if status.get("status") == "ok":
                filename, content = parts.pop(status["part"])
                digest = hashlib.sha256(content).hexdigest()
                # What flowvault verified is what arrived.
                if digest != status["sha256"] or len(content) != status["size"]:
                    return self.answer(400, {"error": "part %s does not match its status"
                                             % status["part"]})
                entry.update(sha256=digest, size=len(content), filename=filename)
            else:
                entry["reason"] = status.get("reason")
            files.append(entry)
        if parts:
            return self.answer(400, {"error": "parts no media object names: %s" % sorted(parts)})
        self.answer(200, {"screen": "RECEIVED",
                          "data": {"content_type": content_type.split(";")[0],
                                   "files": files}})


def main():
    global SAVE
    port = int(sys.argv[1])
    if len(sys.argv) > 3 and sys.argv[2] == "--save":
        SAVE = sys.argv[3]
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
