"""Resolved notifications (`send_resolved`): when an activation closes, its webhook, Slack and
email notifications say so, to real receivers, each with its own delivery key."""

import time

import requests

from helpers import alert, put_alert, send, wait_delivered


def test_a_reset_and_a_cooldown_end_send_resolved_notifications(tocsin_factory, receiver, smtp):
    t = tocsin_factory(env={
        "TOCSIN_SMTP__HOST": "127.0.0.1", "TOCSIN_SMTP__PORT": str(smtp.port), "TOCSIN_SMTP__TLS": "none",
        "TOCSIN_SMTP__FROM": "Tocsin <alerts@example.com>",
    })
    notes = [
        {"notification": {"kind": "webhook", "name": "hook", "secret_params": {"url": receiver.url + "/hook"}},
         "send_resolved": True},
        {"notification": {"kind": "slack", "name": "slack", "secret_params": {"webhook": receiver.url + "/slack"}},
         "send_resolved": True},
        {"notification": {"kind": "email", "name": "mail", "params": {"email_addresses": ["oncall@example.com"]}},
         "send_resolved": True},
        {"notification": {"kind": "webhook", "name": "firing-only", "secret_params": {"url": receiver.url + "/once"}}},
    ]
    put_alert(t.api, alert("p", "etl", entity="job1", reset="manual", notifications=notes))
    stored = requests.get(f"{t.api}/projects/p/alerts/etl", timeout=10).json()
    assert stored["notifications"][0]["send_resolved"] is True
    mlrun = requests.get(f"{t.api}/projects/p/alerts/etl", headers={"x-mlrun-client-version": "1.12.1"},
                         timeout=10).json()
    assert all("send_resolved" not in n for n in mlrun["notifications"]), "MLRun clients never see it"

    send(t.api, "p", "job1")
    fired = wait_delivered(t.api, "p")
    assert receiver.wait_for(1, path="/hook")[0]["body"].get("status") is None, "the firing is MLRun's body"
    r = requests.post(f"{t.api}/projects/p/alerts/etl/reset", json={"by": "dana"}, timeout=10)
    assert r.status_code == 200, r.text

    hook = receiver.wait_for(2, path="/hook")[1]
    assert hook["body"]["status"] == "resolved"
    assert hook["body"]["activation"] == fired["id"]
    assert hook["body"]["resolution"] == "reset by dana"
    assert hook["headers"]["idempotency-key"] == f"{fired['id']}:hook:resolved"
    slack = receiver.wait_for(2, path="/slack")[1]["body"]
    assert slack["attachments"][0]["color"] == "#2eb886", slack
    assert slack["attachments"][0]["blocks"][0]["text"]["text"].startswith("[resolved] ")
    mails = smtp.wait_for(2)
    assert mails[1]["message"]["Subject"].startswith("RESOLVED [medium] etl: ")
    assert mails[1]["message"]["Message-ID"].endswith(".resolved@tocsin>")
    time.sleep(0.3)
    assert len(receiver.wait_for(1, path="/once", timeout=0.1)) == 1, "no resolved without send_resolved"
    closed = wait_delivered(t.api, "p")
    resolved = {d["notification"]: d for d in closed["deliveries"] if d.get("resolved")}
    assert sorted(resolved) == ["hook", "mail", "slack"]
    assert {d["status"] for d in resolved.values()} == {"sent"}
    assert closed["resolution"] == "reset by dana"


def test_the_end_of_a_cooldown_resolves_on_the_servers_clock(tocsin_factory, receiver):
    t = tocsin_factory()
    note = {"notification": {"kind": "webhook", "name": "hook", "secret_params": {"url": receiver.url + "/hook"}},
            "send_resolved": True}
    put_alert(t.api, alert("p", "flaky", entity="job1", notifications=[note], cooldown_period="15s"))
    send(t.api, "p", "job1")
    first = receiver.wait_for(1, path="/hook")[0]
    assert "status" not in first["body"]
    # No event comes: the server's clock settles the end of the cooldown and says so.
    resolved = receiver.wait_for(2, path="/hook", timeout=25)
    assert len(resolved) == 2, "resolved within the cooldown and a tick"
    body = resolved[1]["body"]
    assert (body["status"], body["resolution"]) == ("resolved", "its cooldown ended")
    act = requests.get(f"{t.api}/projects/p/alert-activations", timeout=10).json()["activations"][0]
    assert act["reset_time"] is not None
    assert requests.get(f"{t.api}/projects/p/alerts/flaky", timeout=10).json()["state"] == "inactive"
