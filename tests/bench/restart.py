#!/usr/bin/env python3
"""How fast `tocsin serve` is ready after a kill -9 with a long event log, and what it holds.

    python3 tests/bench/restart.py [TOCSIN_BIN] [--alerts 10000] [--events 10000000]

Stores `--alerts` alerts (one per model endpoint, plus 5 deep wildcard alerts), measures the
RSS at rest, posts `--events` events in batches of 1,000 over 4 connections, prints the log's
size per million events, kills the server with SIGKILL, starts it again on the same data
directory and measures the time until `/healthz` answers 200, and the RSS then and 3 s later. Loopback only.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PORT = 18391


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS:")).split()[1]) / 1024


def start(binary, data, log):
    proc = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{PORT}", "--data-dir", data],
                            stdout=log, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            sys.exit(f"tocsin exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=1)
            c.request("GET", "/api/v1/healthz")
            if c.getresponse().status == 200:
                return proc, time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.01)


def put_alerts(n):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    def put(name, ids, count, period):
        body = {"project": "load", "name": name, "summary": "Model {{project}}/{{entity}} drifts",
                "severity": "high", "reset_policy": "auto", "criteria": {"count": count, "period": period},
                "trigger": {"events": ["data-drift-detected"]},
                "entities": {"kind": "model-endpoint-result", "project": "load", "ids": ids}, "notifications": []}
        c.request("PUT", f"/api/v1/projects/load/alerts/{name}", json.dumps(body),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        answer = r.read()
        if r.status != 200:
            sys.exit(f"storing {name}: {r.status} {answer[:300]}")
    for i in range(n):
        put(f"drift-{i}", [f"ep{i}"], 3, "10m")
    for i in range(5):
        put(f"deep-{i}", ["*"], 99, "1h")


def post_events(total, endpoints, connections=4):
    batches = total // 1000
    bodies = []
    for b in range(min(endpoints // 1000 or 1, 16)):
        events = [{"kind": "data-drift-detected",
                   "entity": {"kind": "model-endpoint-result", "project": "load",
                              "ids": [f"ep{(b * 1000 + j) % endpoints}"]},
                   "value_dict": {"value": 0.93, "threshold": 0.5}} for j in range(1000)]
        bodies.append(json.dumps({"events": events}).encode())
    next_batch = iter(range(batches))
    lock = threading.Lock()
    failures = []

    def worker():
        c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
        while True:
            with lock:
                i = next(next_batch, None)
            if i is None:
                return
            c.request("POST", "/api/v1/projects/load/events", bodies[i % len(bodies)],
                      {"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                failures.append(r.status)
                return

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        sys.exit(f"batches failed: {failures[:5]}")
    return batches * 1000 / (time.monotonic() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tocsin", nargs="?", default=os.path.join(ROOT, "target/release/tocsin"))
    ap.add_argument("--alerts", type=int, default=9_995, help="per-endpoint alerts (plus 5 deep ones: 10,000, the default max_allowed)")
    ap.add_argument("--events", type=int, default=10_000_000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tocsin-restart-")
    data = os.path.join(tmp, "data")
    log = open(os.path.join(tmp, "serve.log"), "w")
    proc = None
    try:
        proc, _ = start(args.tocsin, data, log)
        t0 = time.monotonic()
        put_alerts(args.alerts)
        stored = time.monotonic() - t0
        time.sleep(3)  # at rest: the allocator has handed back what the requests freed
        print(f"stored {args.alerts + 5} alerts in {stored:.1f} s; "
              f"RSS at rest (3 s later) {rss_mb(proc.pid):.1f} MB", flush=True)
        rate = post_events(args.events, args.alerts)
        written = 0
        for dirpath, _, files in os.walk(os.path.join(data, "log")):
            written += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
        print(f"posted {args.events:,} events at {rate:,.0f} events/s (Python client, 4 connections); "
              f"log {written / 1e6:.0f} MB = {written / (args.events / 1e6) / 1e6:.0f} MB per million events; "
              f"RSS {rss_mb(proc.pid):.1f} MB", flush=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc, ready = start(args.tocsin, data, log)
        at_ready = rss_mb(proc.pid)
        # The allocator hands back what the replay freed after a moment (mimalloc's purge delay).
        time.sleep(3)
        print(f"after kill -9: ready in {ready:.2f} s; RSS {at_ready:.1f} MB, "
              f"{rss_mb(proc.pid):.1f} MB 3 s later", flush=True)
    finally:
        if proc and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        log.close()
        with open(os.path.join(tmp, "serve.log")) as f:
            replays = [l.strip() for l in f if "replayed" in l]
        for l in replays[-2:]:
            print("  server:", l[-200:])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
