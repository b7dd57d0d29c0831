"""The HTTP surface beyond the client: bad input, operator settings, notifications, the CLI."""

import json
import subprocess

import requests

from conftest import BIN
from helpers import alert, get_alert, put_alert, send, wait_delivered


def test_bad_input_is_a_clear_4xx(tocsin):
    api = tocsin.api
    cases = [
        ("POST", "/projects/p/events/failed", b"{nope", 400, "not valid JSON"),
        ("POST", "/projects/p/events/failed", b"", 400, "empty"),
        ("POST", "/projects/p/events/no-such-kind", json.dumps({"entity": {"kind": "job", "project": "p", "ids": ["x"]}}).encode(), 400, "invalid event kind"),
        ("POST", "/projects/p/events/failed", json.dumps({"entity": {"kind": "job", "project": "q", "ids": ["x"]}}).encode(), 400, "project"),
        ("POST", "/projects/p/events/failed", json.dumps({"entity": {"kind": "model-endpoint-result", "project": "p", "ids": ["x"]}}).encode(), 400, "job entities"),
        ("POST", "/projects/p/events/failed", json.dumps({"entity": {"kind": "job", "project": "p", "ids": ["x", "y"]}}).encode(), 400, "exactly one"),
        ("POST", "/projects/p/events/failed", json.dumps({"entity": {"kind": "job", "project": "p", "ids": 7}}).encode(), 422, "invalid type"),
        ("POST", "/projects/p/events/failed", b"x" * (2 * 1024 * 1024), 413, "body"),
        ("PUT", "/projects/p/alerts/a", json.dumps({"name": "b"}).encode(), 422, "missing field"),
        ("GET", "/projects/p/alert-activations?since=yesterday", None, 400, "since"),
        ("GET", "/projects/p/alert-activations?severity=huge", None, 422, "severity"),
        ("GET", "/projects/p/alert-activations/abc", None, 400, "activation id"),
        ("GET", "/projects/p/alert-activations/999", None, 404, "not found"),
        ("DELETE", "/alert-templates/JobFailed", None, 400, "system template"),
        ("GET", "/nowhere", None, 404, "no such endpoint"),
        ("PATCH", "/projects/p/alerts/a", None, 405, "not allowed"),
    ]
    for method, path, body, status, words in cases:
        r = requests.request(method, api + path, data=body, timeout=10)
        assert r.status_code == status, (path, r.status_code, r.text)
        assert words.lower() in r.json()["detail"].lower(), (path, r.json())
    assert "panicked" not in tocsin.log()


def test_mode_disabled_accepts_and_ignores_events(tocsin_factory):
    t = tocsin_factory(env={"TOCSIN_ALERTS__MODE": "disabled"})
    put_alert(t.api, alert("p", "a", entity="job1"))
    send(t.api, "p", "job1")
    assert get_alert(t.api, "p", "a")["count"] == 0


def test_max_allowed_from_the_environment(tocsin_factory):
    t = tocsin_factory(env={"TOCSIN_ALERTS__MAX_ALLOWED": "2", "TOCSIN_ALERTS__MAX_CRITERIA_COUNT": "5"})
    put_alert(t.api, alert("p", "a"))
    put_alert(t.api, alert("q", "b"))
    r = requests.put(f"{t.api}/projects/p/alerts/c", json=alert("p", "c"), timeout=10)
    assert r.status_code == 412 and r.json()["detail"].startswith("Allowed number of alerts exceeded")
    r = requests.put(f"{t.api}/projects/p/alerts/a", json=alert("p", "a", count=5), timeout=10)
    assert r.status_code == 412 and r.json()["detail"].startswith("Maximum criteria count exceeded")


def test_notifications_reach_receivers_and_failures_are_recorded(tocsin, receiver):
    notes = [
        {"notification": {"kind": "webhook", "name": "hook", "message": "m", "secret_params": {"url": f"{receiver.url}/hook"}}},
        {"notification": {"kind": "webhook", "name": "broken", "secret_params": {"url": f"{receiver.url}/reject"}}},
        {"notification": {"kind": "slack", "name": "chat", "severity": "error", "secret_params": {"webhook": f"{receiver.url}/slack"}}},
        {"notification": {"kind": "webhook", "name": "put", "params": {"url": f"{receiver.url}/put", "method": "PUT",
                                                                        "headers": {"X-Team": "ml"}, "override_body": {"custom": True}}}},
    ]
    put_alert(tocsin.api, alert("p", "n", entity="job1", notifications=notes))
    send(tocsin.api, "p", "job1", values={"error": "boom"})
    got = {r["path"]: r for r in receiver.wait_for(4)}
    assert got["/hook"]["body"] == {"message": "m", "severity": "medium", "name": "n", "project": "p",
                                    "summary": "Job p/job1 failed", "value": {"error": "boom"}, "id": "job1"}
    assert got["/put"]["method"] == "PUT" and got["/put"]["body"] == {"custom": True}
    assert got["/put"]["headers"]["x-team"] == "ml"
    assert got["/slack"]["body"]["blocks"][0]["text"]["text"] == "[error] Job p/job1 failed"
    assert got["/hook"]["headers"]["idempotency-key"].endswith(":hook")
    act = wait_delivered(tocsin.api, "p")
    states = {s["kind"]: s for s in act["notifications"]}
    assert states["webhook"]["summary"] == {"failed": 1, "succeeded": 2}
    assert "broken" in states["webhook"]["err"]
    assert states["slack"] == {"kind": "slack", "err": None, "summary": {"failed": 0, "succeeded": 1}}


def test_secrets_appear_in_no_answer_and_no_log(tocsin, receiver):
    secret_url = f"{receiver.url}/very-secret-token-123"
    put_alert(tocsin.api, alert("p", "s", entity="job1", notifications=[
        {"notification": {"kind": "slack", "name": "chat", "secret_params": {"webhook": secret_url}}},
        {"notification": {"kind": "webhook", "name": "down", "secret_params": {"url": "http://127.0.0.1:9/also-secret-456"}}}]))
    send(tocsin.api, "p", "job1")
    receiver.wait_for(1)
    answers = [requests.get(tocsin.api + p, timeout=10).text for p in
               ["/projects/p/alerts/s", "/projects/p/alerts", "/projects/*/alerts", "/projects/p/alert-activations"]]
    for text in answers + [tocsin.log()]:
        assert "very-secret-token-123" not in text and "also-secret-456" not in text


def test_tocsin_send_posts_an_event(tocsin):
    put_alert(tocsin.api, alert("fraud", "drift", entity="ep1", kind="model-endpoint-result",
                                events=["data-drift-detected"]))
    out = subprocess.run([BIN, "send", "--server", tocsin.url, "--project", "fraud", "data_drift_detected", "ep1",
                          "--value", "result_value=0.93", "--value", "note=high"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert get_alert(tocsin.api, "fraud", "drift")["count"] == 1
    act = requests.get(f"{tocsin.api}/projects/fraud/alert-activations", timeout=10).json()["activations"][0]
    assert act["value_dict"] == {"result_value": 0.93, "note": "high"}
    bad = subprocess.run([BIN, "send", "--server", tocsin.url, "--project", "other", "failed", "x", "--entity-kind", "job"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 0  # no alert matches, but the event is valid
    worse = subprocess.run([BIN, "send", "--server", tocsin.url, "--project", "fraud", "failed", "x",
                            "--entity-kind", "model-endpoint-result"], capture_output=True, text=True, timeout=30)
    assert worse.returncode == 1 and "400" in worse.stderr


def test_tocsin_silence_adds_lists_and_expires_and_silences_survive_a_restart(tocsin):
    hook = [{"notification": {"kind": "webhook", "name": "hook", "secret_params": {"url": "http://127.0.0.1:9/h"}}}]
    put_alert(tocsin.api, alert("fraud", "drift", entity="ep1", kind="model-endpoint-result",
                                events=["data-drift-detected"], notifications=hook))

    def cli(*args):
        return subprocess.run([BIN, "silence", *args, "--server", tocsin.url, "--project", "fraud"],
                              capture_output=True, text=True, timeout=30)

    made = cli("add", "--alert", "dr*", "--for", "4h", "--comment", "retraining", "--by", "ann")
    assert made.returncode == 0, made.stderr
    assert "active until" in made.stdout
    weekly = cli("add", "--id", "weekend", "--schedule", "sat,sun 02:00-04:00 Europe/Berlin",
                 "--severity", "low", "--comment", "feature store maintenance")
    assert weekly.returncode == 0, weekly.stderr
    refused = cli("add", "--comment", "forever")
    assert refused.returncode == 1 and "400" in refused.stderr and "forever" in refused.stderr
    typo = cli("add", "--for", "1h", "--severity", "urgent", "--comment", "x")
    assert typo.returncode == 1 and "--severity" in typo.stderr

    # The silence holds back the firing's notification; the activation is recorded.
    subprocess.run([BIN, "send", "--server", tocsin.url, "--project", "fraud", "data_drift_detected", "ep1"],
                   check=True, capture_output=True, timeout=30)
    act = requests.get(f"{tocsin.api}/projects/fraud/alert-activations", timeout=10).json()["activations"][0]
    assert act["deliveries"][0]["status"] == "suppressed"
    assert act["deliveries"][0]["error"].startswith("silenced by ann: retraining, until ")

    tocsin.stop()
    tocsin.start()
    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.strip().splitlines()
    assert lines[0].startswith("ID\tSTATE")
    assert len(lines) == 3, listed.stdout
    assert any("weekend\tpending" in l and "sat,sun 02:00-04:00 Europe/Berlin" in l for l in lines)
    sid = next(l.split("\t")[0] for l in lines[1:] if "retraining" in l)
    ended = cli("expire", sid)
    assert ended.returncode == 0 and "expired" in ended.stdout, ended.stderr
    expired = cli("list", "--state", "expired")
    assert sid in expired.stdout and "retraining" in expired.stdout
    assert sid not in cli("list").stdout
