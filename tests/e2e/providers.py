"""Real listeners on loopback that speak the providers' documented APIs: PagerDuty's Events API
v2, Opsgenie's Alert API, a Teams Workflows webhook, a Discord webhook, GitHub's and GitLab's
comment endpoints (those two over TLS, with a certificate from a test CA).

Each validates what arrives the way the provider documents it (required fields, enumerations,
length limits, the credential header) and answers with the provider's documented answer: the
success body, or its documented error body and status. Answers can be scripted per provider
(429 with the provider's way of saying when to come back, 5xx, a slow answer) to see retries.
The examples live in `fixtures/providers/`, with the page each comes from.
"""

import json
import os
import ssl
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "providers")


def fixture(name):
    with open(os.path.join(FIXTURES, f"{name}.json"), encoding="utf-8") as f:
        return json.load(f)


def conforms(ours, example, free_form=(), path=""):
    """Every field of `ours` appears in the provider's documented `example`, with the same JSON
    type (lists: each item against the example's first). Objects at a `free_form` path (dotted,
    list levels skipped) may hold any keys. Returns what does not conform, as messages."""
    problems = []

    def kind(v):
        if isinstance(v, bool):
            return "boolean"
        if isinstance(v, (int, float)):
            return "number"
        return {str: "string", list: "array", dict: "object", type(None): "null"}[type(v)]

    if path in free_form:
        return problems
    if isinstance(ours, dict) and isinstance(example, dict):
        for k, v in ours.items():
            where = f"{path}.{k}" if path else k
            if k not in example:
                problems.append(f"`{where}` is not in the provider's documented example")
            else:
                problems += conforms(v, example[k], free_form, where)
    elif isinstance(ours, list) and isinstance(example, list):
        for item in ours:
            problems += conforms(item, example[0], free_form, path) if example else []
    elif kind(ours) != kind(example) and not (kind(example) == "null" or kind(ours) == "null"):
        problems.append(f"`{path}` is {kind(ours)} where the example has {kind(example)}")
    return problems


class TestCa:
    __test__ = False  # not a test class, for pytest

    """A CA made with openssl, and a certificate it signed for 127.0.0.1 and localhost."""

    def __init__(self, directory):
        self.ca = os.path.join(directory, "ca.pem")
        self.cert = os.path.join(directory, "server.pem")
        self.key = os.path.join(directory, "server.key")
        ca_key = os.path.join(directory, "ca.key")
        csr = os.path.join(directory, "server.csr")
        ext = os.path.join(directory, "server.ext")
        with open(ext, "w", encoding="utf-8") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")

        def run(*args):
            subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", self.ca,
            "-days", "2", "-subj", "/CN=Tocsin test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out", csr, "-subj", "/CN=127.0.0.1")
        run("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", ca_key, "-CAcreateserial", "-out", self.cert,
            "-days", "2", "-extfile", ext)

    def server_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def _check_pagerduty(method, path, query, headers, body):
    doc = fixture("pagerduty")
    if path != "/v2/enqueue" or method != "POST":
        return 404, {}, {"status": "not found"}
    errors = []
    if not isinstance(body, dict):
        return 400, {}, {**doc["invalid"], "errors": ["Event object is invalid"]}
    if len(body.get("routing_key") or "") != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = body.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        errors.append("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)")
    if len(body.get("dedup_key") or "") > 255:
        errors.append("'dedup_key' is too long (max 255 characters)")
    if action == "trigger":
        payload = body.get("payload") or {}
        if not payload.get("summary") or len(payload["summary"]) > 1024:
            errors.append("'payload.summary' is missing or longer than 1024 characters")
        if not payload.get("source"):
            errors.append("'payload.source' is missing or blank")
        if payload.get("severity") not in doc["severities"]:
            errors.append("'payload.severity' is invalid (must be one of: critical, error, warning, info)")
    elif not body.get("dedup_key"):
        errors.append("'dedup_key' is required to " + str(action))
    if errors:
        return 400, {}, {**doc["invalid"], "errors": errors}
    return 202, {}, {**doc["accepted"], "dedup_key": body.get("dedup_key")}


def _check_opsgenie(method, path, query, headers, body):
    doc = fixture("opsgenie")
    auth = headers.get("authorization", "")
    if not auth.startswith("GenieKey ") or not auth[len("GenieKey "):].strip():
        return 401, {}, doc["unauthorized"]
    parts = path.strip("/").split("/")
    if method != "POST" or parts[:2] != ["v2", "alerts"]:
        return 404, {}, {"message": "Not found"}
    if len(parts) == 2:
        errors = {}
        message = (body or {}).get("message") or ""
        if not message.strip():
            errors["message"] = "Message can not be empty."
        for field, limit in doc["limits"].items():
            if len(str((body or {}).get(field) or "")) > limit:
                errors[field] = f"{field} can not be longer than {limit} characters."
        if (body or {}).get("priority") not in (None, *doc["priorities"]):
            errors["priority"] = "Priority should be one of [P1, P2, P3, P4, P5]"
        if errors:
            return 422, {}, {**doc["unprocessable"], "errors": errors}
        return 202, {}, doc["accepted"]
    if len(parts) == 4 and parts[3] in ("acknowledge", "close"):
        if query.get("identifierType") != ["alias"]:
            return 404, {}, {"message": "Alert does not exist", "took": 0.0, "requestId": "x"}
        return 202, {}, doc["accepted"]
    return 404, {}, {"message": "Not found"}


def _check_teams(method, path, query, headers, body):
    doc = fixture("teams")
    bad = lambda why: (400, {}, {"error": {"code": "InvalidRequestContent", "message": why}})  # noqa: E731
    if not isinstance(body, dict) or body.get("type") != "message":
        return bad("The request content is not a message")
    attachments = body.get("attachments") or []
    if len(attachments) != 1 or attachments[0].get("contentType") != "application/vnd.microsoft.card.adaptive":
        return bad("Expected one Adaptive Card attachment")
    card = attachments[0].get("content") or {}
    if card.get("type") != "AdaptiveCard" or not card.get("version"):
        return bad("The attachment is not an AdaptiveCard")
    for element in (card.get("body") or []) + (card.get("actions") or []):
        allowed = doc["elements"].get(element.get("type"))
        if allowed is None:
            return bad(f"Unknown element type {element.get('type')}")
        extra = set(element) - set(allowed)
        if extra:
            return bad(f"Unknown properties {sorted(extra)} on {element['type']}")
        if element.get("color") not in (None, *doc["colors"]):
            return bad(f"Unknown color {element['color']}")
        if element["type"] == "FactSet" and not all(set(f) == {"title", "value"} for f in element["facts"]):
            return bad("A fact is {title, value}")
    return 202, {}, None


def _check_discord(method, path, query, headers, body):
    doc = fixture("discord")
    limits = doc["limits"]
    if not path.startswith("/api/webhooks/") or len(path.strip("/").split("/")) != 4:
        return 404, {}, doc["unknown_webhook"]
    body = body or {}
    embeds = body.get("embeds") or []
    if not body.get("content") and not embeds:
        return 400, {}, doc["empty"]
    errors = []
    if len(body.get("content") or "") > limits["content"]:
        errors.append("content: Must be 2000 or fewer in length.")
    if len(embeds) > limits["embeds"]:
        errors.append("embeds: Must be 10 or fewer in length.")
    for e in embeds:
        if len(e.get("title") or "") > limits["title"]:
            errors.append("embeds.0.title: Must be 256 or fewer in length.")
        if len(e.get("description") or "") > limits["description"]:
            errors.append("embeds.0.description: Must be 4096 or fewer in length.")
        fields = e.get("fields") or []
        if len(fields) > limits["fields"]:
            errors.append("embeds.0.fields: Must be 25 or fewer in length.")
        for f in fields:
            if not f.get("name") or len(f["name"]) > limits["field_name"]:
                errors.append("embeds.0.fields.name: Must be between 1 and 256 in length.")
            if not f.get("value") or len(f["value"]) > limits["field_value"]:
                errors.append("embeds.0.fields.value: Must be between 1 and 1024 in length.")
        if not isinstance(e.get("color", 0), int):
            errors.append("embeds.0.color: Value is not int.")
    if errors:
        return 400, {}, {"message": "Invalid Form Body", "code": 50035, "errors": errors}
    return 204, {}, None


def _check_github(method, path, query, headers, body):
    doc = fixture("github")
    auth = headers.get("authorization", "")
    if not auth.startswith("token ") or auth[len("token "):] != "ghp_test":
        return 401, {}, doc["bad_credentials"]
    parts = path.strip("/").split("/")
    # /repos/{owner}/{repo}/issues/{number}/comments
    if method != "POST" or len(parts) != 6 or parts[0] != "repos" or parts[3] != "issues" \
            or parts[5] != "comments" or not parts[4].isdigit() or parts[1:3] != ["org", "models"]:
        return 404, {}, doc["not_found"]
    if not isinstance(body, dict) or not isinstance(body.get("body"), str) or not body["body"]:
        return 422, {}, {"message": "Validation Failed", "errors": [{"resource": "IssueComment", "code": "missing_field", "field": "body"}],
                         "documentation_url": doc["not_found"]["documentation_url"], "status": "422"}
    return 201, {}, {**doc["created"], "body": body["body"]}


def _check_gitlab(method, path, query, headers, body):
    doc = fixture("gitlab")
    if headers.get("private-token") != "glpat-test":
        return 401, {}, doc["unauthorized"]
    parts = path.strip("/").split("/")
    # /api/v4/projects/{org%2Fmodels}/{issues|merge_requests}/{iid}/notes
    if method != "POST" or len(parts) != 7 or parts[3] != "org%2Fmodels" \
            or parts[4] not in ("issues", "merge_requests") or parts[6] != "notes" or not parts[5].isdigit():
        return 404, {}, doc["not_found"]
    if not isinstance(body, dict) or not body.get("body"):
        return 400, {}, {"message": "400 Bad request - Note {:note=>[\"can't be blank\"]}"}
    noteable = "Issue" if parts[4] == "issues" else "MergeRequest"
    return 201, {}, {**doc["created"], "body": body["body"], "system": False, "noteable_type": noteable,
                     "noteable_iid": int(parts[5])}


CHECKS = {
    "pagerduty": _check_pagerduty, "opsgenie": _check_opsgenie, "teams": _check_teams,
    "discord": _check_discord, "github": _check_github, "gitlab": _check_gitlab,
    "unknown": lambda *_: (404, {}, {"message": "Not found"}),
}


def provider_of(path):
    if path.startswith("/v2/enqueue"):
        return "pagerduty"
    if path.startswith("/v2/alerts"):
        return "opsgenie"
    if path.startswith("/workflows/"):
        return "teams"
    if path.startswith("/api/webhooks/"):
        return "discord"
    if path.startswith("/api/v4/projects/"):
        return "gitlab"
    if path.startswith("/repos/"):
        return "github"
    return "unknown"


class Providers:
    """One listener for every provider (`tls`: an `ssl.SSLContext` for HTTPS). `requests` is
    what arrived, with the provider it was for and the status it got.

    `script(provider, answers)`: that provider's next requests get these answers in order
    (then its documented ones): an int status with the provider's error body, `(status,
    headers, body)`, or `("hang", seconds)` before the documented answer.
    """

    def __init__(self, tls=None):
        self.requests = []
        self.scripts = {}
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                url = urllib.parse.urlsplit(self.path)
                # GitLab's project id keeps its %2F: split the raw path, not a decoded one.
                path, query = url.path, urllib.parse.parse_qs(url.query)
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                provider = provider_of(path)
                with outer.cond:
                    queue = outer.scripts.get(provider)
                    scripted = queue.pop(0) if queue else None
                hang = 0
                if isinstance(scripted, tuple) and scripted[0] == "hang":
                    hang, scripted = scripted[1], None
                if scripted is None:
                    status, extra, answer = CHECKS[provider](self.command, path, query, headers, body)
                elif isinstance(scripted, int):
                    status, extra, answer = scripted, {}, {"message": f"scripted {scripted}"}
                else:
                    status, extra, answer = scripted
                with outer.cond:
                    outer.requests.append({
                        "provider": provider, "method": self.command, "path": path, "query": query,
                        "headers": headers, "body": body, "status": status, "at": time.monotonic(),
                    })
                    outer.cond.notify_all()
                if hang:
                    time.sleep(hang)
                data = b"" if answer is None else (answer if isinstance(answer, bytes) else json.dumps(answer).encode())
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, str(v))
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a sender that gave up on a hung request closed its side

        self.server = Server(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"{scheme}://{self.host}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def script(self, provider, answers):
        with self.cond:
            self.scripts[provider] = list(answers)

    def wait_for(self, n, provider=None, timeout=15):
        def matching():
            return [r for r in self.requests if provider is None or r["provider"] == provider]

        with self.cond:
            self.cond.wait_for(lambda: len(matching()) >= n, timeout)
            return matching()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
