#!/usr/bin/env python3
"""Raw-socket clients for tests/faults/serve_faults.sh (loopback only).

  serve_conns.py hold --port P --pid PID --count N --shapes a,b,.. --wait S
                      --ready FILE --out FILE [--trickle SECONDS]
      Opens N connections that never finish their request (shapes below,
      cycled), optionally sends one more byte every SECONDS, and watches
      them until all are closed by the server or S seconds pass. Meanwhile
      samples the server's open descriptors and threads every 0.1 s.
      Writes FILE (ready) once every connection is open, then the result
      as JSON to --out.

  serve_conns.py probe --port P --case NAME --wait S
      Sends one malformed or oversized request (cases below) and prints
      {"case", "status", "closed", "elapsed", "detail"} as JSON: status is
      the HTTP status of the answer (null if none), closed whether the
      server closed the connection (right after its answer, or without
      one), "hang" in detail if neither happened within S seconds.
"""
import argparse
import json
import os
import select
import socket
import sys
import time

HOST = "127.0.0.1"

# Distinctive bytes in every body this script sends; the test greps the
# server log for them.
MARK_SLOW = b"SLOWBODY-7d1e"
MARK_CHUNK = b"CHUNKBODY-93af"
MARK_LIMIT = b"ATLIMIT-5b2c"
MARK_BAD = b"MALFORMED-c4e1"
MARKERS = [MARK_SLOW, MARK_CHUNK, MARK_LIMIT, MARK_BAD]

HEAD = b"POST /flows HTTP/1.1\r\nHost: 127.0.0.1\r\n"

# Partial requests a slow-loris client leaves hanging, and the byte it
# trickles to keep each one alive.
SHAPES = {
    "none": (b"", b"P"),
    "line": (b"POST /flo", b"w"),
    "headers": (HEAD + b"Content-Type: application/js", b"o"),
    "body": (HEAD + b"Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
             + MARK_SLOW, b"x"),
}


def proc_usage(pid):
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/status") as f:
            threads = next(int(l.split()[1]) for l in f if l.startswith("Threads:"))
        return fds, threads
    except (OSError, StopIteration):
        return None, None


def hold(a):
    shapes = a.shapes.split(",")
    conns = []
    t0 = time.monotonic()
    for i in range(a.count):
        s = socket.create_connection((HOST, a.port), timeout=5)
        s.setblocking(False)
        first, _ = SHAPES[shapes[i % len(shapes)]]
        if first:
            s.send(first)
        conns.append({"sock": s, "shape": shapes[i % len(shapes)], "closed": None,
                      "answer": None})
    with open(a.ready, "w") as f:
        f.write("ready\n")
    max_fds = max_threads = 0
    next_trickle = time.monotonic() + (a.trickle or 0)
    deadline = t0 + a.wait
    while time.monotonic() < deadline:
        fds, threads = proc_usage(a.pid)
        if fds is not None:
            max_fds, max_threads = max(max_fds, fds), max(max_threads, threads)
        live = [c for c in conns if c["closed"] is None]
        if not live:
            break
        readable, _, _ = select.select([c["sock"] for c in live], [], [], 0.1)
        for c in live:
            if c["sock"] not in readable:
                continue
            try:
                data = c["sock"].recv(65536)
            except OSError:
                data = b""
            if data:
                if c["answer"] is None:
                    c["answer"] = data.split(b"\r\n", 1)[0].decode("latin-1")
                continue
            c["closed"] = round(time.monotonic() - t0, 2)
        if a.trickle and time.monotonic() >= next_trickle:
            next_trickle += a.trickle
            for c in conns:
                if c["closed"] is None:
                    try:
                        c["sock"].send(SHAPES[c["shape"]][1])
                    except OSError:
                        c["closed"] = round(time.monotonic() - t0, 2)
    closed = [c["closed"] for c in conns if c["closed"] is not None]
    result = {
        "opened": len(conns),
        "closed": len(closed),
        "first_close": min(closed) if closed else None,
        "last_close": max(closed) if closed else None,
        "still_open": len(conns) - len(closed),
        "closed_within_1s": sum(1 for t in closed if t <= 1.0),
        "answers": sorted({c["answer"] for c in conns if c["answer"]}),
        "max_fds": max_fds,
        "max_threads": max_threads,
        "seconds": round(time.monotonic() - t0, 2),
    }
    for c in conns:
        c["sock"].close()
    with open(a.out, "w") as f:
        json.dump(result, f)


def chunks(total, mark):
    """Chunked encoding of `total` bytes in 1 KiB chunks, ending with 0."""
    piece = (mark * (1024 // len(mark) + 1))[:1024]
    out = b"".join(b"400\r\n" + piece + b"\r\n" for _ in range(total // 1024))
    return out + b"0\r\n\r\n"


def body(n, mark):
    return (mark * (n // len(mark) + 1))[:n]


# NAME: (bytes sent at once, bytes offered afterwards to see whether the
# server still reads). Framing-ambiguity cases are the request-smuggling
# shapes RFC 9112 says a server must refuse (or answer and close).
CASES = {
    "garbage-line": (b"GARBAGE\r\n\r\n", None),
    "binary-junk": (bytes(range(256)) * 4, None),
    "header-without-colon": (HEAD + b"BadHeader\r\n\r\n", None),
    "header-line-70k": (HEAD + b"X-Long: " + b"a" * 70000 + b"\r\n\r\n", None),
    "url-70k": (b"POST /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", None),
    "5000-headers": (HEAD + b"".join(b"X-%d: v\r\n" % i for i in range(5000)) + b"\r\n", None),
    "content-length-negative": (HEAD + b"Content-Length: -1\r\n\r\n" + MARK_BAD, None),
    "content-length-not-a-number": (HEAD + b"Content-Length: abc\r\n\r\n" + MARK_BAD, None),
    "content-length-overflows": (HEAD + b"Content-Length: 99999999999999999999999999\r\n\r\n"
                                 + MARK_BAD, None),
    "content-length-twice": (HEAD + b"Content-Length: 14\r\nContent-Length: 15\r\n\r\n"
                             + MARK_BAD, None),
    "content-length-and-chunked": (HEAD + b"Content-Length: 14\r\nTransfer-Encoding: chunked"
                                   b"\r\n\r\ne\r\n" + MARK_BAD + b"\r\n0\r\n\r\n", None),
    "chunk-size-not-hex": (HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + MARK_BAD
                           + b"\r\n0\r\n\r\n", None),
    "chunk-size-overflows": (HEAD + b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\n"
                             + MARK_BAD + b"\r\n", None),
    "unknown-transfer-encoding": (HEAD + b"Transfer-Encoding: gzip\r\n\r\n" + MARK_BAD, None),
    "http-0.9": (b"GET /flows\r\n", None),
    "http-0.9-healthz": (b"GET /healthz\r\n\r\n", None),
    "nul-in-path": (b"POST /fl\x00ows HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 14\r\n\r\n"
                    + MARK_BAD, None),
    "http-version-9.9": (b"POST /flows HTTP/9.9\r\nHost: 127.0.0.1\r\nContent-Length: 14\r\n\r\n"
                         + MARK_BAD, None),
    # Bodies against max_body_bytes (4096 in the test).
    "length-at-limit": (HEAD + b"Content-Length: 4096\r\n\r\n" + body(4096, MARK_LIMIT), None),
    "length-over-limit-by-1": (HEAD + b"Content-Length: 4097\r\n\r\n", body(4097, MARK_LIMIT)),
    "length-1MiB-unsent": (HEAD + b"Content-Length: 1048576\r\n\r\n", body(1 << 20, MARK_LIMIT)),
    "length-1MiB-expect-100": (HEAD + b"Expect: 100-continue\r\nContent-Length: 1048576\r\n\r\n",
                               body(1 << 20, MARK_LIMIT)),
    "chunked-under-limit": (HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunks(3072, MARK_CHUNK),
                            None),
    "chunked-over-limit": (HEAD + b"Transfer-Encoding: chunked\r\n\r\n", chunks(64 * 1024, MARK_CHUNK)),
}


def read_answer(s, deadline):
    """Status of the first answer (or None) and whether the server closed."""
    buf = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([s], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if not data:
            return parse_status(buf), True
        buf += data
        head, sep, rest = buf.partition(b"\r\n\r\n")
        if sep:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            status = parse_status(buf)
            if status == 100:  # interim answer: the server wants the body
                return 100, False
            if len(rest) >= length:
                # Complete: does the server close right after it?
                r, _, _ = select.select([s], [], [], 0.5)
                try:
                    closed = bool(r) and s.recv(1) == b""
                except OSError:
                    closed = True
                return status, closed
    return parse_status(buf), None


def parse_status(buf):
    parts = buf.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


def probe(a):
    first, later = CASES[a.case]
    t0 = time.monotonic()
    s = socket.create_connection((HOST, a.port), timeout=5)
    detail = []
    try:
        s.sendall(first)
    except OSError as e:
        detail.append(f"send: {e.strerror}")
    if later is not None and a.case.startswith("chunked"):
        # Feed the chunked body until the server stops taking it.
        sent = 0
        s.setblocking(False)
        while sent < len(later) and time.monotonic() < t0 + a.wait:
            try:
                sent += s.send(later[sent:sent + 1029])
            except BlockingIOError:
                select.select([], [s], [], 0.1)
            except OSError:
                break
            r, _, _ = select.select([s], [], [], 0)
            if r:
                break
        s.setblocking(True)
        detail.append(f"body bytes taken: {sent}")
        later = None
    status, closed = read_answer(s, t0 + a.wait)
    if status is None and closed is None:
        detail.append("hang")
    if later is not None and status is not None and status != 100:
        # Answered before the body was sent: offer it now; a server that
        # does not read it closes (reset or broken pipe, or EOF).
        try:
            s.settimeout(2)
            s.sendall(later)
            r, _, _ = select.select([s], [], [], 1)
            detail.append("body accepted after answer" if not r or s.recv(1) else "body refused")
        except OSError:
            detail.append("body refused")
    s.close()
    print(json.dumps({"case": a.case, "status": status, "closed": bool(closed),
                      "elapsed": round(time.monotonic() - t0, 2), "detail": "; ".join(detail)}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("hold")
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--pid", type=int, required=True)
    h.add_argument("--count", type=int, required=True)
    h.add_argument("--shapes", default="none,line,headers,body")
    h.add_argument("--trickle", type=float, default=0)
    h.add_argument("--wait", type=float, required=True)
    h.add_argument("--ready", required=True)
    h.add_argument("--out", required=True)
    q = sub.add_parser("probe")
    q.add_argument("--port", type=int, required=True)
    q.add_argument("--case", required=True, choices=sorted(CASES))
    q.add_argument("--wait", type=float, default=5)
    sub.add_parser("cases")
    sub.add_parser("markers")
    a = p.parse_args()
    if a.cmd == "hold":
        hold(a)
    elif a.cmd == "probe":
        probe(a)
    elif a.cmd == "cases":
        print("\n".join(CASES))
    else:
        print("\n".join(m.decode() for m in MARKERS))


if __name__ == "__main__":
    sys.exit(main())
