"""Auth end to end: the first admin token made on the data directory, 401 and 403 with their
details, tokens managed with `tocsin token` through the API, the audit list, MLRun's client with
a token (Bearer, and the session cookie it uses for tokens with a `-`), Basic auth in the URL,
and no secret in the server's log."""

import os
import subprocess

import mlrun
import mlrun.alerts
import mlrun.common.schemas.alert as ao
import pytest
import requests

from conftest import AUTH, BIN, make_token
from helpers import alert

pytestmark = pytest.mark.skipif(AUTH, reason="runs its own servers with auth on")


def cli(*args, token=None):
    env = {**os.environ}
    env.pop("TOCSIN_TOKEN", None)
    if token:
        env["TOCSIN_TOKEN"] = token
    return subprocess.run([BIN, *args], capture_output=True, text=True, env=env, timeout=30)


@pytest.fixture
def secured(tocsin_factory, tmp_path):
    """A server with auth on and its admin token (made while it was stopped)."""
    from conftest import Tocsin

    # Debug logs: the check that no secret reaches the log covers the chattiest level.
    t = Tocsin(str(tmp_path), env={"TOCSIN_AUTH__ENABLED": "true", "RUST_LOG": "debug"})
    t.token = make_token(os.path.join(t.data_dir, "store"))
    t.start()
    yield t
    t.stop()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_the_cli_manages_tokens_and_the_roles_hold(secured):
    api, admin = secured.api, secured.token
    r = requests.get(f"{api}/projects/fraud/alerts", timeout=10)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert "tocsin token create" in r.json()["detail"]
    assert requests.get(f"{api}/healthz", timeout=10).status_code == 200
    assert requests.get(f"{api}/client-spec", timeout=10).status_code == 200

    made = cli("token", "create", "--server", secured.url, "--role", "responder", "--project", "fraud",
               "--name", "oncall", "--expires", "30d", token=admin)
    assert made.returncode == 0, made.stderr
    responder = made.stdout.strip()
    assert responder.startswith("tcn_") and "-" not in responder
    assert "shown this once" in made.stderr
    viewer = cli("token", "create", "--server", secured.url, "--role", "viewer", "--project", "fraud",
                 token=admin).stdout.strip()
    # Without an admin token the API refuses, and says which role it takes.
    denied = cli("token", "create", "--server", secured.url, "--role", "admin", "--project", "*", token=responder)
    assert denied.returncode != 0 and "admin" in denied.stderr

    hook = "http://127.0.0.1:9/hooks/s3cr3t-path"  # nothing listens: the delivery fails
    body = alert("fraud", "drift", count=1, reset="manual", notifications=[{"notification": {
        "kind": "webhook", "name": "hook", "secret_params": {"url": hook}}}])
    r = requests.put(f"{api}/projects/fraud/alerts/drift", json=body, headers=bearer(admin), timeout=10)
    assert r.status_code == 200, r.text
    r = requests.post(f"{api}/projects/fraud/events/failed", headers=bearer(responder), timeout=10,
                      json={"kind": "failed", "entity": {"kind": "job", "project": "fraud", "ids": ["j1"]}})
    assert r.status_code == 200, r.text
    r = requests.post(f"{api}/projects/fraud/alerts/drift/reset", headers=bearer(viewer), timeout=10)
    assert r.status_code == 403
    assert "`responder` role" in r.json()["detail"]
    r = requests.post(f"{api}/projects/fraud/alerts/drift/acknowledge", headers=bearer(responder), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["acknowledged"]["by"] == "oncall"
    r = requests.get(f"{api}/projects/other/alerts", headers=bearer(responder), timeout=10)
    assert r.status_code == 403

    # `tocsin send` and friends take the token from TOCSIN_TOKEN.
    sent = cli("send", "--server", secured.url, "--project", "fraud", "failed", "j2", token=responder)
    assert sent.returncode == 0, sent.stderr
    refused = cli("send", "--server", secured.url, "--project", "fraud", "failed", "j2")
    assert refused.returncode != 0 and "401" in refused.stderr

    listed = cli("token", "list", "--server", secured.url, token=admin)
    assert "oncall" in listed.stdout and responder not in listed.stdout
    token_id = responder.split("_")[1]
    assert cli("token", "revoke", token_id, "--server", secured.url, token=admin).returncode == 0
    r = requests.get(f"{api}/projects/fraud/alerts", headers=bearer(responder), timeout=10)
    assert r.status_code == 401, "revoked at once"

    audit = requests.get(f"{api}/projects/fraud/audit", headers=bearer(viewer), timeout=10).json()["entries"]
    actions = [(e["action"], e["by"]) for e in audit]
    assert ("alert.acknowledge", "oncall") in actions
    assert ("alert.store", "e2e-admin") in actions
    assert actions[0] == ("token.revoke", "e2e-admin")

    log = secured.log()
    assert "delivery will be retried" in log, "the failing delivery is logged, without its URL"
    for secret in (admin, responder, viewer, admin.split("_")[2], "s3cr3t-path"):
        assert secret not in log, "a token reached the log"


def test_mlruns_client_sends_its_token(secured, receiver):
    mlrun.mlconf.dbpath = secured.url
    mlrun.mlconf.httpdb.token = secured.token
    try:
        db = mlrun.db.get_run_db(secured.url, force_reconnect=True)
        project = mlrun.projects.MlrunProject.from_dict({"metadata": {"name": "fraud"}})
        config = mlrun.alerts.alert.AlertConfig(
            project="fraud", name="job-failed", summary="a job failed", severity=ao.AlertSeverity.LOW,
            entities=ao.EventEntities(kind=ao.EventEntityKind.JOB, project="fraud", ids=["*"]),
            trigger=ao.AlertTrigger(events=[ao.EventKind.FAILED]), criteria=ao.AlertCriteria(count=1),
            notifications=[ao.AlertNotification(notification=mlrun.model.Notification(
                kind="webhook", name="hook", message="job failed", severity="warning", when=["now"],
                condition="failed", secret_params={"url": f"{receiver.url}/hook"}).to_dict())],
            reset_policy=ao.ResetPolicy.MANUAL,
        )
        project.store_alert_config(config)
        assert [a.name for a in project.list_alerts_configs()] == ["job-failed"]
        db.generate_event("failed", ao.Event(kind="failed", entity=ao.EventEntities(
            kind=ao.EventEntityKind.JOB, project="fraud", ids=["j1"])), project="fraud")
        assert project.get_alert_config("job-failed").state == ao.AlertActiveState.ACTIVE
        receiver.wait_for(1)
        project.reset_alert_config(alert_name="job-failed")
        # A wrong token: the client raises its own 401 error, with the detail.
        mlrun.mlconf.httpdb.token = "tcn_000000000000_" + "0" * 64
        mlrun.db.get_run_db(secured.url, force_reconnect=True)
        with pytest.raises(mlrun.errors.MLRunUnauthorizedError) as refused:
            project.list_alerts_configs()
        assert "tocsin token create" in str(refused.value)
    finally:
        mlrun.mlconf.httpdb.token = ""


def test_basic_auth_in_the_url_and_the_session_cookie_work(secured):
    token = secured.token
    host = secured.url.removeprefix("http://")
    r = requests.get(f"http://user:{token}@{host}/api/v1/projects/*/alerts", timeout=10)
    assert r.status_code == 200, r.text
    cookie = {"session": 'j:{"sid": "%s"}' % token}
    r = requests.get(f"{secured.api}/projects/*/alerts", cookies=cookie, timeout=10)
    assert r.status_code == 200, r.text


def test_it_refuses_to_serve_off_loopback_without_auth(tmp_path):
    out = subprocess.run([BIN, "serve", "--listen", "0.0.0.0:0", "--data-dir", str(tmp_path / "d")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "refusing to serve on 0.0.0.0:0 without auth" in out.stderr
    assert "tocsin token create --data-dir" in out.stderr
