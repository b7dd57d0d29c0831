"""Process start to first request ready, for each Lambda bootstrap, without network.

A fake Lambda Runtime API on loopback stands in for Lambda: the time measured runs from the
spawn of the bootstrap to its first `GET /2018-06-01/runtime/invocation/next`, which a
bootstrap sends once its init (environment, AWS clients, router) is done. The binary is read
just before each spawn, so that the figure is the bootstrap's own start, not the disk's. Prints the median
and range per bootstrap, for BENCHMARKS.md.

    python tests/aws/coldstart.py target/lambda [runs]
"""

import http.server
import os
import statistics
import subprocess
import sys
import threading
import time

NEXT = "/2018-06-01/runtime/invocation/next"


def main() -> None:
    root = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 31
    arrived = threading.Event()

    class Runtime(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the stdlib's name)
            if self.path == NEXT:
                arrived.set()
            # Never answer: the bootstrap waits here until it is killed.
            time.sleep(5)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_port}",
        "AWS_LAMBDA_FUNCTION_NAME": "tocsin",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/tocsin",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_SESSION_TOKEN": "test",
        "TOCSIN_TABLE": "tocsin",
        "TOCSIN_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:tocsin-activations",
        "TOCSIN_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/tocsin-events",
    }
    print("| bootstrap | median | min | max | runs |")
    print("|---|---|---|---|---|")
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, "bootstrap")
        if not os.path.exists(path):
            continue
        times = []
        for _ in range(runs):
            # Read the binary first: this machine's memory reclaimer empties the page cache
            # between runs, and the time to read 9 MB from disk is not the bootstrap's.
            with open(path, "rb") as f:
                while f.read(1 << 20):
                    pass
            arrived.clear()
            start = time.perf_counter()
            proc = subprocess.Popen([path], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if not arrived.wait(10):
                proc.kill()
                sys.exit(f"{name}: no request for an invocation within 10 s")
            times.append((time.perf_counter() - start) * 1000)
            proc.kill()
            proc.wait()
        print(
            f"| {name} | {statistics.median(times):.1f} ms | {min(times):.1f} ms | "
            f"{max(times):.1f} ms | {runs} |"
        )


if __name__ == "__main__":
    main()
