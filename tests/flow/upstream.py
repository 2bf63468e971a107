#!/usr/bin/env python3
"""A small business-logic server for flowvault serve tests: it receives the
clear Flows request JSON and answers clear JSON.

Behaviour by the request's flow_token:
  "expired"  -> 427 {"error_msg": "flow token expired"}
  "slow"     -> waits SLOW seconds (argv[2], default 2) then answers
  "notjson"  -> 200 with a body that is not JSON
  "boom"     -> 500
  anything   -> 200 {"screen": "NEXT", "data": {"echo": <request data>,
                "key": <X-Flowvault-Key>, "action": <request action>}}
Usage: upstream.py PORT [SLOW]
"""
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real upstream
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except BrokenPipeError:
            pass  # flowvault gave up waiting (the timeout tests)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if self.headers.get("Content-Type") != "application/json":
            return self.answer(400, {"error": "expected application/json"})
        req = json.loads(raw)
        token = req.get("flow_token")
        if token == "expired":
            return self.answer(427, {"error_msg": "flow token expired"})
        if token == "slow":
            # UPSTREAM_SLOW_MARK: a file created when a slow request arrives.
            if os.environ.get("UPSTREAM_SLOW_MARK"):
                open(os.environ["UPSTREAM_SLOW_MARK"], "w").close()
            time.sleep(SLOW)
        if token == "notjson":
            return self.answer(200, b"<html>oops</html>")
        if token == "boom":
            return self.answer(500, {"error": "boom"})
        self.answer(200, {"screen": "NEXT",
                          "data": {"echo": req.get("data"),
                                   "key": self.headers.get("X-Flowvault-Key"),
                                   "action": req.get("action")}})


if __name__ == "__main__":
    SLOW = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()
