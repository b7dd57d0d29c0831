"""Previewing an alert's notifications: rendered, cooldown-aware, nothing sent, no secrets."""

import json
import subprocess

import requests

from conftest import BIN
from helpers import alert, put_alert, send, wait_delivered


def test_preview_renders_every_kind_and_sends_nothing(tocsin, receiver):
    notes = [
        {"notification": {"kind": "slack", "name": "chat", "message": "{{count}} drifts on {{entity}} ({{value.score}})",
                          "severity": "warning", "secret_params": {"webhook": receiver.url + "/secret-slack"}}},
        {"notification": {"kind": "webhook", "name": "hook", "secret_params": {"url": receiver.url + "/secret-hook",
                                                                               "override_body": {"token": "s3cr3t"}}}},
        {"notification": {"kind": "email", "name": "mail", "params": {"email_addresses": "a@example.com"}},
         "cooldown_period": "1h"},
    ]
    put_alert(tocsin.api, alert("p", "drift", entity="*", kind="model-endpoint-result", events=["data-drift-detected"],
                                count=3, period="10m", notifications=notes))
    r = requests.post(f"{tocsin.api}/projects/p/alerts/drift/preview", timeout=10,
                      json={"entity": {"kind": "model-endpoint-result", "project": "p", "ids": ["ep7"]},
                            "value_dict": {"score": 0.93}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["activation"]["summary"] == "Job p/ep7 failed" and body["activation"]["number_of_events"] == 3
    got = {n["name"]: n for n in body["notifications"]}
    assert got["chat"]["message"] == "3 drifts on ep7 (0.93)"
    assert got["chat"]["payload"]["blocks"][0]["text"]["text"] == "[warning] 3 drifts on ep7 (0.93)"
    assert got["hook"]["payload"] == "(override_body is a secret parameter and is not shown)"
    assert got["mail"]["payload"]["subject"] == "[medium] drift: Job p/ep7 failed"
    assert all(n["status"] == "pending" for n in got.values())
    text = r.text
    assert "secret-slack" not in text and "secret-hook" not in text and "s3cr3t" not in text
    assert receiver.requests == [], "a preview sends nothing"
    assert requests.get(f"{tocsin.api}/projects/p/alert-activations", timeout=10).json()["activations"] == []


def test_preview_shows_a_running_cooldown(tocsin, receiver):
    note = {"notification": {"kind": "webhook", "name": "hook", "secret_params": {"url": receiver.url + "/h"}},
            "cooldown_period": "1h"}
    put_alert(tocsin.api, alert("p", "a", entity="job1", notifications=[note]))
    send(tocsin.api, "p", "job1")
    wait_delivered(tocsin.api, "p")
    got = requests.post(f"{tocsin.api}/projects/p/alerts/a/preview", timeout=10).json()["notifications"][0]
    assert got["status"] == "suppressed" and got["reason"].startswith("in cooldown until")
    missing = requests.post(f"{tocsin.api}/projects/p/alerts/nope/preview", timeout=10)
    assert missing.status_code == 404 and "not found" in missing.json()["detail"]


def test_tocsin_preview_prints_the_rendered_notifications(tocsin):
    note = {"notification": {"kind": "webhook", "name": "hook", "message": "{{entity}}: {{value.error}}",
                             "params": {"url": "http://127.0.0.1:9/h"}}}
    put_alert(tocsin.api, alert("p", "a", entity="*", notifications=[note]))
    out = subprocess.run([BIN, "preview", "--server", tocsin.url, "--project", "p", "a", "--entity", "train",
                          "--value", "error=OOM"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["notifications"][0]["payload"]["message"] == "train: OOM"
    bad = subprocess.run([BIN, "preview", "--server", tocsin.url, "--project", "p", "nope"], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 1 and "404" in bad.stderr
