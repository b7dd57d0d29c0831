#!/usr/bin/env python3
"""Tocsin beside Alertmanager, on the same workload shapes, in one run: one command.

    python3 tests/bench/peer.py [--seconds 10] [--rounds 3] [--connections 16]

It installs what is missing (Debian's prometheus-alertmanager and wrk; a release build of
`tocsin`), then runs, in interleaved rounds, with wrk as the one client for both servers:

- single: one event per request. Tocsin holds 1,000 alerts on `data-drift-detected`, one per
  model endpoint (3 within 10 minutes), and 5 deep wildcard alerts (`*`, 99 within 1 hour),
  so every event counts in its endpoint's window and in every deep window. Alertmanager gets
  single-alert POSTs to /api/v2/alerts over 1,000 label sets.
- batch: 1,000 events per request (`POST /projects/{p}/events`), 1,000 alerts per POST.
- floor: `GET /api/v1/healthz` on tocsin (the transport, no store).

Each server starts on a fresh data directory. It prints, per shape, the median events per second
and p99 of each server, the ratio, and the bytes each process wrote to disk per event
(`write_bytes` of /proc/PID/io over the run, snapshots and compaction included), and the CPU
time each server and wrk spent per request. Loopback only.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOCSIN_PORT, AM_PORT = 18291, 18293
ENDPOINTS = 1000
DEEP = 5
BATCH = 1000

# wrk's client: `request` builds each body from a counter (one per wrk thread), `done` prints a
# line this script reads. Non-2xx answers are counted apart and reported.
WRK_SCRIPT = r"""
local kind, path, batch, endpoints = "%(kind)s", "%(path)s", %(batch)d, %(endpoints)d
local n = math.random(endpoints)
local function tocsin_event(i)
  return string.format('{"kind":"data-drift-detected","entity":{"kind":"model-endpoint-result",' ..
    '"project":"load","ids":["ep%%d"]},"value_dict":{"value":0.93,"threshold":0.5}}', i)
end
local function am_alert(i)
  return string.format('{"labels":{"alertname":"data-drift-detected","project":"load",' ..
    '"endpoint":"ep%%d"},"annotations":{"summary":"drift on ep%%d"}}', i, i)
end
local headers = {["Content-Type"] = "application/json"}
-- Bodies are made once, at start (16 of them, rotating), so that the client's own work per
-- request stays small next to the servers'.
local bodies = {}
for b = 1, 16 do
  local items = {}
  for j = 1, batch do
    n = n %% endpoints + 1
    if kind == "tocsin" then items[j] = tocsin_event(n) else items[j] = am_alert(n) end
  end
  if kind == "am" then bodies[b] = "[" .. table.concat(items, ",") .. "]"
  elseif batch > 1 then bodies[b] = '{"events":[' .. table.concat(items, ",") .. ']}'
  else bodies[b] = items[1] end
end
-- With one event per request, 16 bodies would hit 16 endpoints only: walk all of them instead.
-- Whole requests are formatted once, here: `wrk.format` on every request cost wrk about a
-- quarter of its time per request, the same for both servers (BENCHMARKS.md).
-- (In `init`, which runs in each thread once wrk has set it up: `wrk.format` needs that.)
local requests, k = {}, 0
init = function(args)
  if kind == "floor" then
    requests[1] = wrk.format("GET", path)
  elseif batch == 1 then
    for i = 1, endpoints do
      local body = kind == "tocsin" and tocsin_event(i) or "[" .. am_alert(i) .. "]"
      requests[i] = wrk.format("POST", path, headers, body)
    end
  else
    for b = 1, 16 do requests[b] = wrk.format("POST", path, headers, bodies[b]) end
  end
  k = math.random(#requests)
end
request = function()
  k = k %% #requests + 1
  return requests[k]
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d\n", summary.requests, summary.duration,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_tools():
    missing = [p for p, b in (("prometheus-alertmanager", "prometheus-alertmanager"), ("wrk", "wrk"))
               if shutil.which(b) is None]
    if missing:
        print(f"installing {' '.join(missing)} from Debian", flush=True)
        apt = ["apt-get"] if os.geteuid() == 0 else ["sudo", "apt-get"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sh(*apt, "install", "-y", "-q", *missing, env=env, stdout=subprocess.DEVNULL)


def build_tocsin():
    print("building tocsin (release)", flush=True)
    sh("cargo", "build", "--release", "-q", "-p", "tocsin", "--bin", "tocsin", cwd=ROOT)
    return os.path.join(ROOT, "target/release/tocsin")


def wait_ready(url, proc, what):
    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"{what} exited early with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"{what} did not become ready at {url}")


def put_json(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


def tocsin_alerts(api):
    def alert(name, ids, count, period):
        return {"project": "load", "name": name, "summary": "Model {{project}}/{{entity}} drifts",
                "severity": "high", "reset_policy": "auto",
                "criteria": {"count": count, "period": period},
                "trigger": {"events": ["data-drift-detected"]},
                "entities": {"kind": "model-endpoint-result", "project": "load", "ids": ids},
                "notifications": []}
    for i in range(ENDPOINTS):
        put_json(f"{api}/projects/load/alerts/drift-{i}", alert(f"drift-{i}", [f"ep{i + 1}"], 3, "10m"))
    for i in range(DEEP):
        put_json(f"{api}/projects/load/alerts/deep-{i}", alert(f"deep-{i}", ["*"], 99, "1h"))


class Server:
    """A server process on a fresh data directory."""

    def __init__(self, name, cmd, ready_url, setup=None):
        self.name, self.cmd, self.ready_url, self.setup = name, cmd, ready_url, setup

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix=f"peer-{self.name}-")
        cmd = [c.replace("{dir}", self.dir) for c in self.cmd]
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        wait_ready(self.ready_url, self.proc, self.name)
        if self.setup:
            self.setup()
        return self

    def written(self):
        with open(f"/proc/{self.proc.pid}/io") as f:
            return int(next(line for line in f if line.startswith("write_bytes:")).split()[1])

    def cpu_s(self):
        """User and system CPU seconds the server has used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(next(line for line in f if line.startswith("VmHWM:")).split()[1]) / 1024

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def wrk(url, kind, path, batch, seconds, connections):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT % {"kind": kind, "path": path, "batch": batch, "endpoints": ENDPOINTS})
        script = f.name
    try:
        out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", script, url],
                             check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(script)
    line = next(l for l in out.splitlines() if l.startswith("RESULT"))
    requests, duration_us, errors, p50, p99, pmax = map(int, line.split()[1:])
    secs = duration_us / 1e6
    return {"requests": requests, "errors": errors, "events_per_s": requests * batch / secs,
            "p50_ms": p50 / 1000, "p99_ms": p99 / 1000, "events": requests * batch}


def log_bytes(server):
    log = os.path.join(server.dir, "data", "log")
    return sum(os.path.getsize(os.path.join(log, f)) for f in os.listdir(log)) if os.path.isdir(log) else 0


def client_cpu_s():
    """CPU seconds of this process's finished children (wrk, once it has exited)."""
    t = os.times()
    return t.children_user + t.children_system


def run_shape(server, kind, path, batch, args):
    before, log_before = server.written(), log_bytes(server)
    cpu_before, client_before = server.cpu_s(), client_cpu_s()
    r = wrk(f"http://127.0.0.1:{server.port}", kind, path, batch, args.seconds, args.connections)
    # CPU per request, the server's and wrk's: on 2 shared cores, what one side saves the other
    # can use, so this tells where a request's time goes better than the rate alone.
    requests = max(r["requests"], 1)
    r["server_us_per_req"] = (server.cpu_s() - cpu_before) * 1e6 / requests
    r["client_us_per_req"] = (client_cpu_s() - client_before) * 1e6 / requests
    # Writes the OS will flush later were accounted when the pages were dirtied; a moment for
    # the server's own background work (snapshot, compaction) to show.
    time.sleep(1)
    r["bytes_per_event"] = (server.written() - before) / max(r["events"], 1)
    r["rss_mb"] = server.peak_rss_mb()
    r["log_bytes_per_event"] = (log_bytes(server) - log_before) / max(r["events"], 1)
    if r["errors"]:
        print(f"  ! {server.name}: {r['errors']} failed requests", flush=True)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--tocsin", help="a tocsin binary (default: this tree's release build)")
    args = ap.parse_args()
    ensure_tools()
    tocsin = args.tocsin or build_tocsin()
    api = f"http://127.0.0.1:{TOCSIN_PORT}/api/v1"
    am_config = tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False)
    am_config.write("route:\n  receiver: 'null'\n  group_by: ['alertname', 'endpoint']\n"
                    "receivers:\n  - name: 'null'\n")
    am_config.close()

    def tocsin_server():
        s = Server("tocsin", [tocsin, "serve", "--listen", f"127.0.0.1:{TOCSIN_PORT}", "--data-dir", "{dir}/data"],
                   f"{api}/healthz", setup=lambda: tocsin_alerts(api))
        s.port = TOCSIN_PORT
        return s

    def am_server():
        s = Server("alertmanager", ["prometheus-alertmanager", f"--config.file={am_config.name}",
                                    "--storage.path={dir}", f"--web.listen-address=127.0.0.1:{AM_PORT}",
                                    "--cluster.listen-address=", "--log.level=warn"],
                   f"http://127.0.0.1:{AM_PORT}/-/ready")
        s.port = AM_PORT
        return s

    shapes = [
        ("single", [("tocsin", tocsin_server, "tocsin", "/api/v1/projects/load/events/data-drift-detected", 1),
                    ("alertmanager", am_server, "am", "/api/v2/alerts", 1)]),
        ("batch", [("tocsin", tocsin_server, "tocsin", "/api/v1/projects/load/events", BATCH),
                   ("alertmanager", am_server, "am", "/api/v2/alerts", BATCH)]),
        ("floor", [("tocsin", tocsin_server, "floor", "/api/v1/healthz", 1)]),
    ]
    results = {}
    for rnd in range(args.rounds):
        for shape, runs in shapes:
            # The order alternates between rounds, so that neither server always goes first.
            for name, make, kind, path, batch in (runs if rnd % 2 == 0 else runs[::-1]):
                with make() as server:
                    r = run_shape(server, kind, path, batch, args)
                results.setdefault((shape, name), []).append(r)
                print(f"round {rnd + 1} {shape:6} {name:12} {r['events_per_s']:>10,.0f} ev/s  "
                      f"p99 {r['p99_ms']:6.2f} ms  {r['bytes_per_event']:7.1f} B/event  "
                      f"(log {r['log_bytes_per_event']:.0f})  peak RSS {r['rss_mb']:.0f} MB  "
                      f"CPU/request {r['server_us_per_req']:.1f} us (wrk {r['client_us_per_req']:.1f})", flush=True)
    os.unlink(am_config.name)

    med = lambda shape, name, key: statistics.median(r[key] for r in results[(shape, name)])
    print(f"\nmedians of {args.rounds} rounds, {args.seconds} s each, {args.connections} connections, "
          f"wrk -t2 on the same 2 cores")
    print(f"{'shape':7} {'server':13} {'events/s':>11} {'p99 ms':>8} {'B/event':>9} {'peak RSS MB':>12} "
          f"{'CPU us/req':>11} {'wrk us/req':>11}")
    for (shape, name) in results:
        print(f"{shape:7} {name:13} {med(shape, name, 'events_per_s'):>11,.0f} {med(shape, name, 'p99_ms'):>8.2f} "
              f"{med(shape, name, 'bytes_per_event'):>9.1f} {med(shape, name, 'rss_mb'):>12.0f} "
              f"{med(shape, name, 'server_us_per_req'):>11.1f} {med(shape, name, 'client_us_per_req'):>11.1f}")
    for shape in ("single", "batch"):
        ratios = [t["events_per_s"] / a["events_per_s"]
                  for t, a in zip(results[(shape, "tocsin")], results[(shape, "alertmanager")])]
        print(f"{shape}: tocsin / alertmanager, median of per-round ratios: {statistics.median(ratios):.2f}")
    floor = [t["events_per_s"] / f["events_per_s"]
             for t, f in zip(results[("single", "tocsin")], results[("floor", "tocsin")])]
    print(f"single: tocsin / its transport floor: {statistics.median(floor):.2f}")


if __name__ == "__main__":
    main()
