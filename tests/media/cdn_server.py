#!/usr/bin/env python3
"""A tiny HTTPS file server standing in for the WhatsApp CDN in tests:
cdn_server.py PORT CERT KEY DIR. /redirect answers 302 to another host;
/slow/NAME sends NAME's headers, then waits 5 s before the body."""
import http.server, ssl, sys, os, time

port, cert, key, root = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "https://example.invalid/media.enc")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        slow = self.path.startswith("/slow/")
        path = os.path.join(root, os.path.basename(self.path))
        if not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if slow:
            self.wfile.flush()
            time.sleep(5)
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the client gave up (the timeout tests)

    def log_message(self, *args):
        pass


srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
