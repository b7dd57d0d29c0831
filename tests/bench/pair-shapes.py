#!/usr/bin/env python3
"""Two `tocsin` builds on the peer benchmark's shapes, in interleaved pairs: one command.

    python3 tests/bench/pair-shapes.py BASE_TOCSIN NEW_TOCSIN [--pairs 3] [--seconds 10]

For a change that should move ingest speed (an allocator, a profile): the same workload as
`peer.py` (1,000 endpoint alerts and 5 deep wildcard alerts; single events, then batches of
1,000), each run on a fresh data directory, the order alternating between pairs. Prints each
run and the median of the per-pair ratios (new / base). Loopback only.
"""

import argparse
import statistics

import peer

SHAPES = {
    "single": ("tocsin", "/api/v1/projects/load/events/data-drift-detected", 1),
    "batch": ("tocsin", "/api/v1/projects/load/events", peer.BATCH),
}


def run(binary, shape, args):
    api = f"http://127.0.0.1:{peer.TOCSIN_PORT}/api/v1"
    server = peer.Server("tocsin", [binary, "serve", "--listen", f"127.0.0.1:{peer.TOCSIN_PORT}",
                                    "--data-dir", "{dir}/data"],
                         f"{api}/healthz", setup=lambda: peer.tocsin_alerts(api))
    server.port = peer.TOCSIN_PORT
    kind, path, batch = SHAPES[shape]
    with server:
        return peer.run_shape(server, kind, path, batch, args)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("base")
    ap.add_argument("new")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    peer.ensure_tools()
    ratios = {shape: [] for shape in SHAPES}
    for i in range(args.pairs):
        for shape in SHAPES:
            order = [("base", args.base), ("new", args.new)]
            got = {}
            for name, binary in (order if i % 2 == 0 else order[::-1]):
                r = run(binary, shape, args)
                got[name] = r["events_per_s"]
                print(f"pair {i + 1} {shape:6} {name:4} {r['events_per_s']:>10,.0f} ev/s  "
                      f"p99 {r['p99_ms']:6.2f} ms  {r['bytes_per_event']:6.1f} B/event  "
                      f"CPU/request {r['server_us_per_req']:.1f} us", flush=True)
            ratios[shape].append(got["new"] / got["base"])
    for shape, rs in ratios.items():
        print(f"{shape}: new / base per pair {', '.join(f'{r:.3f}' for r in rs)}; "
              f"median {statistics.median(rs):.3f}")


if __name__ == "__main__":
    main()
