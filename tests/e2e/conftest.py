"""Fixtures that run the real `tocsin` binary and real receivers on loopback."""

import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

BIN = os.environ.get("TOCSIN_BIN", os.path.join(os.path.dirname(__file__), "../../target/debug/tocsin"))
# TOCSIN_E2E_AUTH=1 runs every server with auth on and an admin token: the tests' own requests
# send it, and MLRun's client sends it as it would in production (`mlconf.httpdb.token`).
AUTH = os.environ.get("TOCSIN_E2E_AUTH") == "1"
TOKENS = {}


def make_token(data_dir, role="admin", project="*", name="e2e-admin"):
    """`tocsin token create` on a stopped server's data directory; returns the token."""
    out = subprocess.run(
        [BIN, "token", "create", "--data-dir", data_dir, "--role", role, "--project", project, "--name", name],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


if AUTH:
    _request = requests.api.request

    def _with_token(method, url, **kwargs):
        headers = dict(kwargs.pop("headers", None) or {})
        for base, token in TOKENS.items():
            if url.startswith(base) and "Authorization" not in headers:
                headers["Authorization"] = f"Bearer {token}"
        return _request(method, url, headers=headers, **kwargs)

    requests.api.request = _with_token


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tocsin:
    """A `tocsin serve` process on its own port and data directory."""

    def __init__(self, data_dir, env=None, args=()):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}/api/v1"
        self.env = {**os.environ, "RUST_LOG": "info", **(env or {})}
        self.args = list(args)
        self.proc = None
        self.log_path = os.path.join(data_dir, "serve.log")
        self.token = None
        if AUTH:
            self.token = make_token(os.path.join(data_dir, "store"))
            self.env["TOCSIN_AUTH__ENABLED"] = "true"
            TOKENS[self.url] = self.token

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", os.path.join(self.data_dir, "store"), *self.args],
            stdout=log, stderr=log, env=self.env,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tocsin exited with {self.proc.returncode}: {self.log()}")
            try:
                if requests.get(f"{self.api}/healthz", timeout=0.5).ok:
                    return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("tocsin did not become ready: " + self.log())

    def kill(self):
        """SIGKILL: no shutdown path runs."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


@pytest.fixture
def tocsin_factory():
    started = []
    with tempfile.TemporaryDirectory() as tmp:

        def make(env=None, args=()):
            t = Tocsin(tempfile.mkdtemp(dir=tmp), env=env, args=args).start()
            started.append(t)
            return t

        yield make
        for t in started:
            t.stop()


@pytest.fixture
def tocsin(tocsin_factory):
    return tocsin_factory()


class Receiver:
    """A real HTTP listener that plays Slack and webhook targets and records what arrives.

    By default it answers 200. `script(path, [answers])` makes requests to a path get the given
    answers in order (then 200): an int status, (status, {"Header": "value"}), or ("hang", seconds)
    to hold the request that long before answering. Paths under
    `/fail` always get 500 and paths under `/reject` always 400.
    """

    def __init__(self):
        self.requests = []
        self.scripts = {}
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with outer.cond:
                    queue = outer.scripts.get(self.path)
                    answer = queue.pop(0) if queue else 200
                    if self.path.startswith("/fail"):
                        answer = 500
                    elif self.path.startswith("/reject"):
                        answer = 400
                    if isinstance(answer, tuple) and answer[0] == "hang":
                        status, headers, hang = 200, {}, answer[1]
                    else:
                        status, headers = answer if isinstance(answer, tuple) else (answer, {})
                        hang = 0
                    outer.requests.append({
                        "method": self.command, "path": self.path, "status": status, "at": time.monotonic(),
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": json.loads(body) if body else None,
                    })
                    outer.cond.notify_all()
                if hang:
                    time.sleep(hang)  # longer than the sender waits: it gives up on this one
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_POST = do_PUT = do_GET = do_any

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a sender that gave up on a hung request closed its side: expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def script(self, path, answers):
        with self.cond:
            self.scripts[path] = list(answers)

    def wait_for(self, n, timeout=10, path=None):
        def matching():
            return [r for r in self.requests if path is None or r["path"] == path]

        with self.cond:
            self.cond.wait_for(lambda: len(matching()) >= n, timeout)
            return matching()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


class SmtpSink:
    """A real SMTP server (aiosmtpd) on loopback that keeps every message it receives."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages = []
        self.cond = threading.Condition()
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                import email

                with outer.cond:
                    outer.messages.append({
                        "from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                        "message": email.message_from_bytes(envelope.content),
                    })
                    outer.cond.notify_all()
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def wait_for(self, n, timeout=10):
        with self.cond:
            self.cond.wait_for(lambda: len(self.messages) >= n, timeout)
            return list(self.messages)


@pytest.fixture
def smtp():
    sink = SmtpSink()
    yield sink
    sink.controller.stop()
