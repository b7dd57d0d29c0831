"""`event` notifications: an alert firing posts another event that alerts trigger on; loops are
stopped; MLRun's client neither sees nor loses them."""

import mlrun
import requests

from helpers import alert, put_alert, send, wait_delivered


def chain_note(event_kind, entity_id="{{entity}}", name="escalate", **params):
    return {"notification": {"kind": "event", "name": name,
                             "params": {"event_kind": event_kind, "entity_id": entity_id, **params}}}


def activations(api, project, name):
    return requests.get(f"{api}/projects/{project}/alerts/{name}/activations", timeout=10).json()["activations"]


def test_a_firing_alert_fires_another_through_an_event(tocsin, receiver):
    put_alert(tocsin.api, alert("p", "job-failed", entity="*", notifications=[
        chain_note("mm-app-failed", "app-{{entity}}", value_dict={"why": "{{summary}}", "n": 1})]))
    put_alert(tocsin.api, alert("p", "app-failed", entity="*", kind="model-monitoring-application",
                                events=["mm-app-failed"], summary="App {{entity}} failed",
                                notifications=[{"notification": {"kind": "webhook", "name": "hook",
                                                                 "secret_params": {"url": receiver.url + "/app"}}}]))
    send(tocsin.api, "p", "train")
    hit = receiver.wait_for(1, path="/app")[0]
    assert hit["body"]["id"] == "app-train" and hit["body"]["summary"] == "App app-train failed"
    assert hit["body"]["value"] == {"why": "Job p/train failed", "n": 1}
    second = activations(tocsin.api, "p", "app-failed")[0]
    assert second["chain"] == ["p/job-failed"] and second["event_kind"] == "mm-app-failed"
    first = wait_delivered(tocsin.api, "p", 1)
    assert first["name"] == "job-failed" and first["deliveries"][0]["status"] == "sent"


def test_a_loop_is_stopped_and_recorded(tocsin):
    put_alert(tocsin.api, alert("p", "echo", entity="*", notifications=[chain_note("failed")]))
    send(tocsin.api, "p", "job1")
    acts = []
    for index in range(2):
        acts.append(wait_delivered(tocsin.api, "p", index))
    assert len(activations(tocsin.api, "p", "echo")) == 2, "fired once by the client, once by its own event"
    looped = acts[0]
    assert looped["chain"] == ["p/echo"]
    d = looped["deliveries"][0]
    assert d["status"] == "failed" and "would loop" in d["error"] and "p/echo -> p/echo" in d["error"]


def test_event_notifications_are_checked_when_stored(tocsin):
    for params, words in [({}, "needs `event_kind`"), ({"event_kind": "faild"}, "invalid event kind")]:
        body = alert("p", "bad", notifications=[{"notification": {"kind": "event", "name": "e", "params": params}}])
        r = requests.put(f"{tocsin.api}/projects/p/alerts/bad", json=body, timeout=10)
        assert r.status_code == 400 and words in r.json()["detail"], r.text


def test_mlrun_clients_neither_see_nor_lose_event_notifications(tocsin, receiver):
    put_alert(tocsin.api, alert("fraud", "mixed", entity="*", notifications=[
        chain_note("failed", "other-{{entity}}"),
        {"notification": {"kind": "webhook", "name": "hook", "secret_params": {"url": receiver.url + "/h"}}}]))
    mlrun.mlconf.dbpath = tocsin.url
    db = mlrun.db.get_run_db(tocsin.url, force_reconnect=True)
    got = db.get_alert_config("mixed", "fraud")
    assert [n.notification.name for n in got.notifications] == ["hook"]
    assert [a.name for a in db.list_alerts_configs("fraud")] == ["mixed"]
    got.summary = "edited through MLRun"
    db.store_alert_config("mixed", got, project="fraud")
    plain = requests.get(f"{tocsin.api}/projects/fraud/alerts/mixed", timeout=10).json()
    assert plain["summary"] == "edited through MLRun"
    assert sorted(n["notification"]["name"] for n in plain["notifications"]) == ["escalate", "hook"]
    send(tocsin.api, "fraud", "job1")
    assert len(db.list_alert_activations(project="fraud")) >= 1, "activations with an event delivery parse"
