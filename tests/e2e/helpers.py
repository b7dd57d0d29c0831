"""Small builders for the wire objects the tests send."""

import time

import requests


def alert(project, name, entity="*", events=("failed",), kind="job", count=1, period=None, reset="auto",
          notifications=None, **extra):
    body = {
        "project": project, "name": name, "summary": "Job {{project}}/{{entity}} failed",
        "severity": "medium", "reset_policy": reset,
        "criteria": {"count": count, "period": period},
        "trigger": {"events": list(events)},
        "entities": {"kind": kind, "project": project, "ids": [entity]},
        "notifications": notifications or [],
    }
    body.update(extra)
    return body


def event(project, entity, kind="job", values=None, **extra):
    return {"entity": {"kind": kind, "project": project, "ids": [entity]}, "value_dict": values or {}, **extra}


def put_alert(api, body, **params):
    r = requests.put(f"{api}/projects/{body['project']}/alerts/{body['name']}", json=body, params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def send(api, project, entity, kind="failed", entity_kind="job", headers=None, **extra):
    r = requests.post(f"{api}/projects/{project}/events/{kind}", json=event(project, entity, entity_kind, **extra),
                      headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return r


def get_alert(api, project, name):
    r = requests.get(f"{api}/projects/{project}/alerts/{name}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def wait_delivered(api, project, index=0, timeout=20):
    """The activation once none of its notifications is pending or being retried any more."""
    deadline = time.monotonic() + timeout
    while True:
        acts = requests.get(f"{api}/projects/{project}/alert-activations", timeout=10).json()["activations"]
        if len(acts) > index and all(d["status"] not in ("pending", "retrying")
                                     for d in acts[index].get("deliveries", [])):
            return acts[index]
        assert time.monotonic() < deadline, f"still pending: {acts}"
        time.sleep(0.05)
