"""MLRun's own Python client (1.12.1) against `tocsin serve`: every alert call of the SDK."""

import datetime

import mlrun
import mlrun.alerts
import mlrun.common.schemas.alert as ao
import mlrun.errors
import pytest
import requests

from helpers import alert, put_alert


@pytest.fixture
def project(tocsin):
    mlrun.mlconf.dbpath = tocsin.url
    # With TOCSIN_E2E_AUTH=1, the client authenticates as MLRun users configure it.
    mlrun.mlconf.httpdb.token = tocsin.token or ""
    mlrun.db.get_run_db(tocsin.url, force_reconnect=True)
    return mlrun.projects.MlrunProject.from_dict({"metadata": {"name": "fraud"}, "spec": {}})


def webhook(receiver, name="hook"):
    return mlrun.model.Notification(
        kind="webhook", name=name, message="job failed", severity="warning", when=["now"], condition="failed",
        secret_params={"url": f"{receiver.url}/hook"},
    ).to_dict()


def job_alert(project, name, receiver, count=1, period=None, reset="auto", entity="*"):
    return mlrun.alerts.alert.AlertConfig(
        project=project.name, name=name, summary="Job {{project}}/{{entity}} failed ({{name}})",
        severity=ao.AlertSeverity.LOW, reset_policy=reset,
        entities=ao.EventEntities(kind=ao.EventEntityKind.JOB, project=project.name, ids=[entity]),
        trigger=ao.AlertTrigger(events=[ao.EventKind.FAILED]),
        criteria=ao.AlertCriteria(count=count, period=period) if count else None,
        notifications=[ao.AlertNotification(notification=webhook(receiver))],
    )


def fail(project, entity="job1", values=None):
    db = mlrun.get_run_db()
    ev = ao.Event(kind=ao.EventKind.FAILED,
                  entity=ao.EventEntities(kind=ao.EventEntityKind.JOB, project=project.name, ids=[entity]),
                  value_dict=values or {"error": "boom"})
    db.generate_event(ao.EventKind.FAILED, ev, project=project.name)


def test_the_seeds_example_stores_fires_and_notifies(project, receiver):
    """The seed's own snippet, with Slack pointed at a local listener playing Slack."""
    notifications = [{
        "kind": "slack", "name": "", "message": "Running a job has failed", "severity": "warning",
        "when": ["now"], "condition": "failed", "secret_params": {"webhook": f"{receiver.url}/slack"},
    }]
    alert_data = mlrun.alerts.alert.AlertConfig(
        project=project.name, name="failure", summary="Running a job has failed", severity="low",
        entities={"kind": "job", "project": project.name, "ids": ["*"]}, trigger={"events": ["failed"]},
        criteria=None, notifications=[{"notification": n} for n in notifications],
    )
    stored = project.store_alert_config(alert_data)
    assert (stored.name, stored.state, stored.count) == ("failure", "inactive", 0)
    fail(project, "train-job", {"error": "This function intentionally fails"})
    got = project.get_alert_config("failure")
    assert got.count == 1 and got.state == "inactive"  # auto reset
    slack = receiver.wait_for(1)[0]
    assert slack["path"] == "/slack"
    texts = [b["text"]["text"] for b in slack["body"]["blocks"]]
    assert texts[0] == "[warning] Running a job has failed"
    assert "*ID:*\ntrain-job" in texts and "*Event data:*\nerror: This function intentionally fails" in texts


def test_store_get_list_reset_delete(project, receiver):
    stored = project.store_alert_config(job_alert(project, "a1", receiver, count=2, period="1h", reset="manual"))
    assert stored.created is not None and stored.updated is not None
    got = project.get_alert_config("a1")
    assert (got.name, got.severity, got.reset_policy, got.criteria.count, got.criteria.period) == (
        "a1", "low", "manual", 2, "1h")
    assert got.notifications[0].notification.secret_params != {"url": f"{receiver.url}/hook"}, "secrets are masked"
    project.store_alert_config(job_alert(project, "a2", receiver))
    assert [a.name for a in project.list_alerts_configs()] == ["a1", "a2"]
    assert [a.name for a in project.list_alerts_configs(limit=1, offset=1)] == ["a2"]

    fail(project)
    fail(project)
    got = project.get_alert_config("a1")
    assert (got.state, got.count) == ("active", 1), "read right after the event POST"
    # Storing what was read back (masked secret and all) keeps the alert as it is.
    project.store_alert_config(got)
    assert project.get_alert_config("a1").state == "active"
    project.reset_alert_config(alert_name="a1")
    assert project.get_alert_config("a1").state == "inactive"
    project.delete_alert_config(alert_name="a1")
    with pytest.raises(mlrun.errors.MLRunNotFoundError):
        project.get_alert_config("a1")
    project.delete_alert_config(alert_name="a1")  # deleting what is gone succeeds
    with pytest.raises(mlrun.errors.MLRunNotFoundError):
        project.reset_alert_config(alert_name="a1")


def test_templates(project):
    names = [t.template_name for t in project.list_alert_templates()]
    assert names[:11] == ["data_drift_detected", "data_drift_suspected", "concept_drift_detected",
                          "concept_drift_suspected", "model_performance_detected", "model_performance_suspected",
                          "model_serving_performance_detected", "model_serving_performance_suspected",
                          "mm_app_anomaly_detected", "mm_app_anomaly_suspected", "failed"]
    assert names[11:] == ["JobFailed", "DataDriftDetected", "DataDriftSuspected"]
    t = project.get_alert_template("JobFailed")
    assert (t.severity, t.trigger.events, t.system_generated) == ("medium", ["failed"], True)
    with pytest.raises(mlrun.errors.MLRunNotFoundError):
        project.get_alert_template("NoSuchTemplate")


def test_alert_from_a_template(project, receiver):
    config = mlrun.alerts.alert.AlertConfig(
        project=project.name, name="drift", template="data_drift_detected",
        entities=ao.EventEntities(kind=ao.EventEntityKind.MODEL_ENDPOINT_RESULT, project=project.name, ids=["ep1.app.res"]),
        notifications=[ao.AlertNotification(notification=webhook(receiver))],
    )
    stored = project.store_alert_config(config)
    assert stored.severity == "high" and stored.trigger.events == ["data-drift-detected"]


def test_mlrun_manual_scenario_then_auto(project, receiver):
    """MLRun's acceptance scenario, through its client."""
    project.store_alert_config(job_alert(project, "m", receiver, count=3, period="1h", reset="manual", entity="job1"))
    for _ in range(3):
        fail(project)
    a = project.get_alert_config("m")
    assert (a.state, a.count) == ("active", 1)
    for _ in range(3):
        fail(project)
    assert project.get_alert_config("m").count == 1
    project.reset_alert_config(alert_name="m")
    fail(project)
    a = project.get_alert_config("m")
    assert (a.state, a.count) == ("inactive", 1)
    project.store_alert_config(job_alert(project, "m", receiver, count=3, period="1h", reset="auto", entity="job1"))
    for _ in range(3):
        fail(project)
    a = project.get_alert_config("m")
    assert (a.state, a.count) == ("inactive", 2)


def test_activations_with_filters_and_pages(project, receiver):
    project.store_alert_config(job_alert(project, "alpha", receiver))
    high = job_alert(project, "beta", receiver)
    high.severity = ao.AlertSeverity.HIGH
    project.store_alert_config(high)
    before = datetime.datetime.now(datetime.timezone.utc)
    for i in range(5):
        fail(project, f"job-{i}")
    db = mlrun.get_run_db()
    acts = db.list_alert_activations(project=project.name)
    assert len(acts) == 10
    assert [a.id for a in acts] == sorted((a.id for a in acts), reverse=True), "newest first"
    assert {a.name for a in db.list_alert_activations(project=project.name, name="alpha")} == {"alpha"}
    assert len(db.list_alert_activations(project=project.name, name="~lph")) == 5
    assert len(db.list_alert_activations(project=project.name, entity="~job-[0-9]")) == 0
    assert len(db.list_alert_activations(project=project.name, entity="~job-*")) == 10
    assert len(db.list_alert_activations(project=project.name, entity="job-3")) == 2
    assert {a.severity for a in db.list_alert_activations(project=project.name, severity=["high"])} == {"high"}
    assert len(db.list_alert_activations(project=project.name, event_kind="failed", entity_kind="job")) == 10
    assert len(db.list_alert_activations(project=project.name, since=before)) == 10
    assert len(db.list_alert_activations(project=project.name, until=before)) == 0

    page, token = db.paginated_list_alert_activations(project=project.name, page_size=4)
    seen = [a.id for a in page]
    while token:
        page, token = db.paginated_list_alert_activations(project=project.name, page_token=token)
        seen += [a.id for a in page]
    assert seen == [a.id for a in acts], "pages cover the listing once, in order"
    page3, _ = db.paginated_list_alert_activations(project=project.name, page=3, page_size=4)
    assert [a.id for a in page3] == seen[8:]
    one = db.get_alert_activation(project.name, acts[0].id)
    assert one.id == acts[0].id and one.number_of_events == 1
    by_alert = project.get_alert_config("beta").list_activations()
    assert {a.name for a in by_alert} == {"beta"} and len(by_alert) == 5


def test_refusals_map_to_the_clients_errors(project, tocsin, receiver):
    base = alert("fraud", "ok", notifications=[{"notification": {"kind": "webhook", "name": "w",
                                                                 "secret_params": {"url": receiver.url}}}])
    cases = [
        ({**base, "name": "bad name!"}, "bad%20name!", mlrun.errors.MLRunBadRequestError),
        ({**base, "criteria": {"count": 1, "period": "abc"}}, "ok", mlrun.errors.MLRunBadRequestError),
        ({**base, "entities": {"kind": "job", "project": "other", "ids": ["*"]}}, "ok", mlrun.errors.MLRunBadRequestError),
        ({**base, "notifications": base["notifications"] * 2}, "ok", mlrun.errors.MLRunBadRequestError),
        ({**base, "criteria": {"count": 10_000_000}}, "ok", mlrun.errors.MLRunPreconditionFailedError),
        ({**base, "severity": "huge"}, "ok", mlrun.errors.MLRunHTTPError),
        ({**base, "entities": {"kind": "planet", "project": "fraud", "ids": ["*"]}}, "ok", mlrun.errors.MLRunHTTPError),
        ({**base, "reset_policy": "sometimes"}, "ok", mlrun.errors.MLRunHTTPError),
        ({**base, "notifications": [{"notification": {"kind": "pigeon", "name": "p"}}]}, "ok", mlrun.errors.MLRunHTTPError),
    ]
    db = mlrun.get_run_db()
    for body, path_name, error in cases:
        with pytest.raises(error) as info:
            db.api_call("PUT", f"projects/fraud/alerts/{path_name}", body=__import__("json").dumps(body))
        detail = info.value.response.json()["detail"]
        assert detail and isinstance(detail, str), detail
    with pytest.raises(mlrun.errors.MLRunInvalidArgumentError):
        project.store_alert_config(mlrun.alerts.alert.AlertConfig(project="fraud", name=None,
                                   entities={"kind": "job", "project": "fraud", "ids": ["*"]},
                                   notifications=[{"notification": webhook(receiver)}]))
    with pytest.raises(mlrun.errors.MLRunNotFoundError):
        db.paginated_list_alert_activations(project="fraud", page_token="not-a-token")


def test_summary_templating(tocsin):
    put_alert(tocsin.api, alert("my-project123", "alert", entity="ddd",
                                summary="Alert {{name}}: Model {{project}}/{{entity}} is drifting."))
    r = requests.post(f"{tocsin.api}/projects/my-project123/events/failed",
                      json={"entity": {"kind": "job", "project": "my-project123", "ids": ["ddd"]}}, timeout=10)
    assert r.status_code == 200
    acts = requests.get(f"{tocsin.api}/projects/my-project123/alert-activations", timeout=10).json()["activations"]
    assert acts[0]["summary"] == "Alert alert: Model my-project123/ddd is drifting."
