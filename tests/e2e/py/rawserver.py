#!/usr/bin/env python3
"""A raw-socket HTTP/1.1 server for gosight's stream-integrity tests (stdlib only).

It parses the byte stream itself (request line, headers, Content-Length and chunked
bodies, keep-alive, pipelining), so anything gosight's in-kernel header insertion did
to the stream shows: for every request it records the request line, every
`traceparent` header value, the body's length and SHA-256, and whether the framing
was intact. It answers each request with 200 and a small JSON body.

  GET /__stats   -> {"requests": N, "missing": a, "duplicate": b, "malformed": c,
                     "bad_framing": d}
  GET /__log     -> the list of per-request records (then cleared)
Usage: rawserver.py [--port 0]   (prints "listening on 127.0.0.1:PORT")
"""
import argparse
import hashlib
import json
import re
import socket
import sys
import threading

TP = re.compile(rb"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
lock = threading.Lock()
stats = {"requests": 0, "missing": 0, "duplicate": 0, "malformed": 0, "bad_framing": 0}
records = []


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def line(self, limit=1 << 20):
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


def handle(sock):
    c = Conn(sock)
    try:
        while True:
            try:
                request_line = c.line()
            except EOFError:
                return
            headers = []
            while True:
                h = c.line()
                if h == b"":
                    break
                name, _, value = h.partition(b":")
                headers.append((name.strip().lower(), value.strip()))
            framing_ok = re.match(rb"^[A-Z]+ \S+ HTTP/1\.[01]$", request_line) is not None
            length = [v for k, v in headers if k == b"content-length"]
            chunked = any(k == b"transfer-encoding" and b"chunked" in v.lower() for k, v in headers)
            body = b""
            if chunked:
                while True:
                    size = int(c.line().split(b";")[0], 16)
                    if size == 0:
                        while c.line() != b"":  # trailers, then the empty line
                            pass
                        break
                    data = c.exact(size + 2)
                    if data[-2:] != b"\r\n":
                        framing_ok = False
                    body += data[:-2]
            elif length:
                body = c.exact(int(length[0]))
            path = request_line.split(b" ")[1] if b" " in request_line else b""
            if path.startswith(b"/__"):
                respond(sock, control(path))
                continue
            tps = [v.decode("latin-1") for k, v in headers if k == b"traceparent"]
            rec = {
                "request_line": request_line[:200].decode("latin-1"),
                "traceparent": tps,
                "body_len": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "framing_ok": framing_ok,
            }
            with lock:
                stats["requests"] += 1
                stats["missing"] += len(tps) == 0
                stats["duplicate"] += len(tps) > 1
                stats["malformed"] += sum(1 for t in tps if not TP.match(t.encode()))
                stats["bad_framing"] += not framing_ok
                records.append(rec)
            respond(sock, {"ok": True, "body_sha256": rec["body_sha256"], "traceparent": tps})
    except (EOFError, ConnectionError):
        # The peer closed in the middle of a request: the stream was cut short.
        if c.buf:
            with lock:
                stats["bad_framing"] += 1
    except ValueError:
        with lock:
            stats["bad_framing"] += 1
    finally:
        sock.close()


def control(path):
    global records
    with lock:
        if path.startswith(b"/__stats"):
            return dict(stats)
        out, records = records, []
        return out


def respond(sock, obj):
    body = json.dumps(obj).encode()
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", a.port))
    srv.listen(512)
    print("listening on 127.0.0.1:%d" % srv.getsockname()[1], flush=True)
    while True:
        s, _ = srv.accept()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(s,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
