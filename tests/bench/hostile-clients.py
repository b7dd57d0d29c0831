#!/usr/bin/env python3
"""Connections that never finish: how long `tocsin serve` keeps them, and what they cost.

    tests/bench/hostile-clients.py TOCSIN_BIN [SLOW_HEADERS] [TRICKLED_BODIES] [SECONDS]

Starts the server on a fresh data directory, opens SLOW_HEADERS connections (default 2,000)
that send part of a request's headers and then nothing, and TRICKLED_BODIES (default 500) that
send full headers with `Content-Length: 1000000` and then one byte of body per second. Every
second for SECONDS (default 45) it counts how many of each are still open (the server has not
closed them), the server's RSS, and the latency of a GET /healthz from a fresh client. Prints a
line per 5 s and a summary; nothing is asserted (this is a benchmark, not a test).
"""

import os
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    binary = sys.argv[1]
    slow = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    trickled = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    seconds = int(sys.argv[4]) if len(sys.argv) > 4 else 45
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = free_port()
    data = tempfile.mkdtemp()
    server = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", f"{data}/d"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api/v1/healthz"
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    idle_rss = rss_kb(server.pid)

    def connect():
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        return s

    # The trickling bodies first, so that a connection cap is filled by the slow headers.
    groups = {"trickle": [connect() for _ in range(trickled)], "slow": [connect() for _ in range(slow)]}
    # Connected: the handshake completed (the kernel does it for the listen backlog too).
    sel = selectors.DefaultSelector()
    pending = {}
    for kind, socks in groups.items():
        for i, sock in enumerate(socks):
            sel.register(sock, selectors.EVENT_WRITE, (kind, i))
            pending[(kind, i)] = sock
    connected = {k: set() for k in groups}
    deadline = time.monotonic() + 5
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            kind, i = key.data
            sel.unregister(key.fileobj)
            pending.pop((kind, i), None)
            if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                connected[kind].add(i)
    for sock in pending.values():
        sel.unregister(sock)
    print(f"connected: {len(connected['slow'])}/{slow} slow headers, "
          f"{len(connected['trickle'])}/{trickled} trickled bodies", flush=True)
    for i, sock in enumerate(groups["slow"]):
        if i in connected["slow"]:
            try:
                sock.send(b"POST /api/v1/projects/p/events/failed HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            except OSError:
                pass
    for i, sock in enumerate(groups["trickle"]):
        if i in connected["trickle"]:
            try:
                sock.send(b"POST /api/v1/rules/check HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
            except OSError:
                pass
    # What never connected counts as neither open nor closed.
    closed = {k: {i for i in range(len(groups[k])) if i not in connected[k]} for k in groups}
    never = {k: len(closed[k]) for k in groups}

    def sweep():
        for kind, socks in groups.items():
            for i, s in enumerate(socks):
                if i in closed[kind]:
                    continue
                try:
                    # A final answer (408) comes before the close; the close is what counts.
                    while (b := s.recv(65536)) != b"":
                        pass
                    closed[kind].add(i)
                except BlockingIOError:
                    pass
                except OSError:
                    closed[kind].add(i)

    start = time.monotonic()
    first_closed = {}
    peak_rss = idle_rss
    latencies = []
    while time.monotonic() - start < seconds:
        for i, s in enumerate(groups["trickle"]):
            if i not in closed["trickle"]:
                try:
                    s.send(b" ")
                except OSError:
                    closed["trickle"].add(i)
        sweep()
        t = time.monotonic()
        try:
            urllib.request.urlopen(url, timeout=5).read()
            latencies.append((time.monotonic() - t) * 1000)
        except OSError:
            latencies.append(float("inf"))
        peak_rss = max(peak_rss, rss_kb(server.pid))
        elapsed = time.monotonic() - start
        for kind in groups:
            if len(closed[kind]) > never[kind] and kind not in first_closed:
                first_closed[kind] = elapsed
        if int(elapsed) % 5 == 0:
            print(f"{elapsed:5.1f} s: slow headers open {slow - len(closed['slow'])}/{slow}, "
                  f"trickled bodies open {trickled - len(closed['trickle'])}/{trickled}, "
                  f"RSS {rss_kb(server.pid) // 1024} MB, healthz {latencies[-1]:.1f} ms", flush=True)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))
    latencies.sort()
    median = latencies[len(latencies) // 2]
    print(f"after {seconds} s: slow headers still open {slow - len(closed['slow'])}/{slow} "
          f"(first closed at {first_closed.get('slow', float('nan')):.1f} s), trickled bodies still open "
          f"{trickled - len(closed['trickle'])}/{trickled} (first closed at {first_closed.get('trickle', float('nan')):.1f} s); "
          f"RSS idle {idle_rss // 1024} MB, peak {peak_rss // 1024} MB; healthz median {median:.1f} ms, "
          f"max {latencies[-1]:.1f} ms")
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        print("the server did not stop within 10 s of SIGTERM (it waits for these connections); killed")
        server.kill()


if __name__ == "__main__":
    main()
