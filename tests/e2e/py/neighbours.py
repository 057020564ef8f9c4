#!/usr/bin/env python3
"""A non-Go neighbour for gosight's end-to-end tests (stdlib only): gosight's
sockops/sk_msg programs must leave the sockets of processes it does not trace
exactly as the kernel made them.

A server thread accepts connections on 127.0.0.1 and, on each, sends 1000 known
bytes (derived from the client's port), waits for b"more", sends 1000 other bytes
and waits for the client to close. The client makes --connections connections one
after another and on each checks:

  (a) an edge-triggered epoll wait wakes for the first 1000 bytes within
      --wake-timeout seconds                                  -> missed_wakeups
  (b) ioctl(FIONREAD) then says 1000                          -> wrong_fionread
  (c) recv on the *blocking* socket (first with the bytes already queued, then,
      after b"more", waiting for them) never raises BlockingIOError (EAGAIN)
      -> eagain, never waits longer than --stall seconds     -> stalls, and
      returns exactly the bytes sent                          -> wrong_bytes

It prints one JSON line: {"connections", "missed_wakeups", "wrong_fionread",
"eagain", "wrong_bytes", "stalls", "server_errors", "fionread_seen", "seconds"};
every count but connections is 0 on a healthy machine. It stops early (with fewer
connections) after --deadline seconds.

Usage: neighbours.py [--connections 1000] [--deadline 25]
"""
import argparse
import array
import fcntl
import json
import random
import select
import socket
import struct
import sys
import termios
import threading
import time

SIZE = 1000


def payload(port, rnd):
    return random.Random(port * 2 + rnd).randbytes(SIZE)


def set_rcvtimeo(sock, seconds):
    # A kernel receive timeout: the socket stays blocking for Python (timeout None),
    # but a recv that would hang forever returns EAGAIN after `seconds`.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", int(seconds), 0))


def fionread(sock):
    buf = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf, True)
    return buf[0]


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = {"connections": 0, "missed_wakeups": 0, "wrong_fionread": 0, "eagain": 0, "wrong_bytes": 0,
                  "stalls": 0, "server_errors": 0}
        self.fionread_seen = {}

    def add(self, key, n=1):
        with self.lock:
            self.c[key] += n


def recv_exact(sock, n, stall):
    """Reads n bytes from a blocking socket. Returns (bytes, eagain, stalled)."""
    got, eagain, stalled = b"", False, False
    start = time.monotonic()
    while len(got) < n:
        try:
            chunk = sock.recv(n - len(got))
        except BlockingIOError:
            if time.monotonic() - start >= stall * 0.9:
                stalled = True  # the kernel receive timeout: nothing came
                break
            eagain = True  # EAGAIN on a blocking socket, long before any timeout
            time.sleep(0.001)
            if time.monotonic() - start > stall:
                stalled = True
                break
            continue
        if not chunk:
            break
        got += chunk
    return got, eagain, stalled


def serve(listener, counts, stall):
    while True:
        try:
            conn, peer = listener.accept()
        except OSError:
            return
        try:
            with conn:
                set_rcvtimeo(conn, stall)
                conn.sendall(payload(peer[1], 0))
                more, eagain, stalled = recv_exact(conn, 4, stall)
                if more != b"more" or eagain or stalled:
                    counts.add("server_errors")
                    continue
                conn.sendall(payload(peer[1], 1))
                while conn.recv(4096):
                    pass
        except OSError:
            counts.add("server_errors")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--deadline", type=float, default=25.0)
    ap.add_argument("--wake-timeout", type=float, default=2.0)
    ap.add_argument("--stall", type=float, default=2.0)
    a = ap.parse_args()

    counts = Counts()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    addr = listener.getsockname()
    threading.Thread(target=serve, args=(listener, counts, a.stall), daemon=True).start()

    ep = select.epoll()
    start = time.monotonic()
    for _ in range(a.connections):
        if time.monotonic() - start > a.deadline:
            break
        with socket.create_connection(addr) as c:
            port = c.getsockname()[1]
            set_rcvtimeo(c, a.stall)
            ep.register(c.fileno(), select.EPOLLIN | select.EPOLLET)
            events = ep.poll(a.wake_timeout)
            ep.unregister(c.fileno())
            if not events:
                counts.add("missed_wakeups")
            n = fionread(c)
            counts.fionread_seen[n] = counts.fionread_seen.get(n, 0) + 1
            if n != SIZE:
                counts.add("wrong_fionread")
            # Queued bytes, then bytes the blocking recv has to wait for.
            bad = eagain = stalled = False
            for rnd in (0, 1):
                if rnd == 1:
                    c.sendall(b"more")
                got, e, s = recv_exact(c, SIZE, a.stall)
                bad |= got != payload(port, rnd)
                eagain |= e
                stalled |= s
                if s:
                    break
            counts.add("wrong_bytes", int(bad))
            counts.add("eagain", int(eagain))
            counts.add("stalls", int(stalled))
            counts.add("connections")
    out = dict(counts.c)
    out["fionread_seen"] = {str(k): v for k, v in sorted(counts.fionread_seen.items())}
    out["seconds"] = round(time.monotonic() - start, 2)
    print(json.dumps(out), flush=True)
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
