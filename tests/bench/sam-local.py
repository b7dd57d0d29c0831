"""Cold start and per-invocation time of the functions as `sam local` runs them (the real
runtime interface emulator, in a container of the locally built base image, on moto).

    TOCSIN_MOTO_URL=http://127.0.0.1:5055 SAM_VENV=tests/.venv-aws \\
        tests/.venv/bin/python tests/bench/sam-local.py [RUNS]

after tests/aws/sam/setup.sh. Prints, per function, the wall time of `sam local invoke` (container
start, bootstrap init, one invocation, container stop) and the emulator's REPORT duration; and
for `sam local start-api`, the first request (the container starts) and warm requests.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid

import requests

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "aws", "sam"))
import test_sam_local as sam  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def invoke_timed(stack, function, event):
    path = os.path.join(stack["work"], f"bench-{uuid.uuid4().hex[:6]}.json")
    with open(path, "w") as f:
        json.dump(event, f)
    start = time.monotonic()
    done = subprocess.run([sam.SAM, "local", "invoke", function, "-e", path, *sam.sam_args(stack)],
                          cwd=sam.ROOT, env=sam.sam_env(), capture_output=True, text=True, timeout=180)
    wall = (time.monotonic() - start) * 1000
    assert done.returncode == 0, done.stderr[-2000:]
    report = re.search(r"REPORT RequestId: \S+.*?\tDuration: ([0-9.]+) ms", done.stderr)
    return wall, float(report.group(1)) if report else float("nan")


def main():
    stack = sam.make_stack()
    events = {
        "EvaluatorFunction": {"Records": []},
        "NotifierFunction": {"Records": []},
        "ApiFunction": {"version": "2.0", "routeKey": "$default", "rawPath": "/api/v1/healthz",
                        "rawQueryString": "", "headers": {"host": "local"},
                        "requestContext": {"http": {"method": "GET", "path": "/api/v1/healthz",
                                                    "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                                                    "userAgent": "bench"},
                                           "routeKey": "$default", "stage": "$default",
                                           "requestId": "bench", "accountId": "1", "apiId": "local",
                                           "domainName": "local", "domainPrefix": "local",
                                           "time": "02/Dec/2026:00:00:00 +0000", "timeEpoch": 0},
                        "isBase64Encoded": False},
    }
    print(f"sam local invoke, {RUNS} runs each: median wall time of the command (SAM CLI reading "
          "the template, container start to stop) and "
          "the emulator's REPORT Duration")
    for function, event in events.items():
        runs = [invoke_timed(stack, function, event) for _ in range(RUNS)]
        walls, durations = zip(*runs)
        print(f"  {function}: wall {statistics.median(walls):.0f} ms "
              f"(min {min(walls):.0f}, max {max(walls):.0f}); "
              f"REPORT Duration {statistics.median(durations):.1f} ms")
    # Ready when it accepts connections: no request reaches the function before the first one,
    # which therefore pays the cold start (container, runtime emulator, bootstrap init).
    firsts, warm = [], []
    for _ in range(3):
        server = sam.Server(stack, "start-api", None, "--disable-authorizer")
        try:
            start = time.monotonic()
            requests.get(server.url + "/api/v1/healthz", timeout=60).raise_for_status()
            firsts.append((time.monotonic() - start) * 1000)
            for _ in range(30):
                start = time.monotonic()
                requests.get(server.url + "/api/v1/healthz", timeout=60).raise_for_status()
                warm.append((time.monotonic() - start) * 1000)
        finally:
            server.stop()
    warm.sort()
    print(f"sam local start-api (warm containers LAZY), GET /api/v1/healthz through SAM's API "
          f"Gateway: first request of a fresh server (cold start) median "
          f"{statistics.median(firsts):.0f} ms (of {', '.join(f'{f:.0f}' for f in firsts)}); "
          f"warm median {statistics.median(warm):.1f} ms, p90 {warm[int(len(warm) * 0.9)]:.1f} ms "
          f"over {len(warm)}")

if __name__ == "__main__":
    main()
