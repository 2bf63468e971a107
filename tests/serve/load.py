"""load.py URL BODY_FILE SIGNATURE SECONDS OUT: one keep-alive client
sending the same signed request back to back; writes one line per request
to OUT: "<start offset s> <status or error> <latency s>"."""
import http.client
import sys
import time
import urllib.parse

url, body_file, signature, seconds, out = sys.argv[1:]
u = urllib.parse.urlsplit(url)
body = open(body_file, "rb").read()
headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
t0 = time.monotonic()
conn = None
with open(out, "w") as f:
    while time.monotonic() - t0 < float(seconds):
        start = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
            conn.request("POST", u.path, body, headers)
            r = conn.getresponse()
            r.read()
            status = str(r.status)
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as e:  # noqa: BLE001 - recorded, the test judges
            status = "error:" + type(e).__name__
            conn = None
        f.write("%.4f %s %.4f\n" % (start - t0, status, time.monotonic() - start))
        f.flush()
