"""The channels on-call teams use, each against a real listener on loopback that speaks the
provider's documented API (`providers.py`): git (GitHub and GitLab over TLS, from a CA Tocsin is
told to trust), PagerDuty, Microsoft Teams, Opsgenie and Discord; firing, acknowledged and
resolved messages, the providers' error bodies and rate limits, and test messages."""

import os
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import BIN
from helpers import alert, put_alert, send, wait_delivered
from providers import Providers, TestCa, conforms, fixture

FAST = {
    "TOCSIN_NOTIFICATIONS__INITIAL_BACKOFF_MS": "100",
    "TOCSIN_NOTIFICATIONS__MAX_BACKOFF_MS": "2000",
    "TOCSIN_NOTIFICATIONS__GIVE_UP_AFTER_SECS": "4",
}
ROUTING_KEY = "R0UT1NGKEY0123456789abcdef012345"  # 32 characters, as PagerDuty wants


@pytest.fixture(scope="module")
def ca():
    with tempfile.TemporaryDirectory() as d:
        yield TestCa(d)


@pytest.fixture
def providers():
    p = Providers()
    yield p
    p.close()


@pytest.fixture
def git(ca):
    """GitHub and GitLab, over HTTPS with a certificate from the test CA."""
    p = Providers(tls=ca.server_context())
    yield p
    p.close()


@pytest.fixture
def trusting(tocsin_factory, ca):
    """A server that trusts the test CA (`[notifications] ca_file`)."""
    return tocsin_factory(env={**FAST, "TOCSIN_NOTIFICATIONS__CA_FILE": ca.ca})


def note(kind, name, secret=None, params=None, send_resolved=False, message=None):
    n = {"notification": {"kind": kind, "name": name, "secret_params": secret or {}, "params": params or {}}}
    if message:
        n["notification"]["message"] = message
    if send_resolved:
        n["send_resolved"] = True
    return n


def deliveries(activation):
    return {(d["notification"], d.get("resolved", False), d.get("acknowledged", False)): d
            for d in activation["deliveries"]}


def wait_for_delivery(api, project, name, timeout=20, **flags):
    """The activation once delivery `name` (of its phase) is settled."""
    deadline = time.monotonic() + timeout
    key = (name, flags.get("resolved", False), flags.get("acknowledged", False))
    while True:
        acts = requests.get(f"{api}/projects/{project}/alert-activations", timeout=10).json()["activations"]
        for a in acts:
            d = deliveries(a).get(key)
            if d and d["status"] not in ("pending", "retrying"):
                return a, d
        assert time.monotonic() < deadline, f"{key} not settled: {acts}"
        time.sleep(0.05)


def test_pagerduty_triggers_acknowledges_and_resolves_one_incident(tocsin_factory, providers):
    t = tocsin_factory(env=FAST)
    oncall = note("pagerduty", "oncall", secret={"routing_key": ROUTING_KEY},
                  params={"endpoint": providers.url, "link": "https://grafana.example.com/d/{{entity}}"},
                  send_resolved=True, message="{{entity}} failed {{count}} times")
    put_alert(t.api, alert("fraud", "train", entity="job1", reset="manual", severity="high", notifications=[oncall]))
    send(t.api, "fraud", "job1", values={"error": "OOM"})
    act, d = wait_for_delivery(t.api, "fraud", "oncall")
    assert (d["status"], d["attempts"]) == ("sent", 1), d

    r = requests.post(f"{t.api}/projects/fraud/alerts/train/acknowledge", json={"by": "dana"}, timeout=10)
    assert r.status_code == 200, r.text
    wait_for_delivery(t.api, "fraud", "oncall", acknowledged=True)
    r = requests.post(f"{t.api}/projects/fraud/alerts/train/reset", json={"by": "dana"}, timeout=10)
    assert r.status_code == 200, r.text
    _, resolved = wait_for_delivery(t.api, "fraud", "oncall", resolved=True)
    assert resolved["status"] == "sent", resolved

    hits = providers.wait_for(3, "pagerduty")
    bodies = [h["body"] for h in hits]
    assert [b["event_action"] for b in bodies] == ["trigger", "acknowledge", "resolve"]
    assert {b["dedup_key"] for b in bodies} == {f"tocsin/fraud/{act['id']}"}, "one incident"
    assert all(h["status"] == 202 for h in hits)
    trigger = bodies[0]
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["summary"] == "job1 failed 1 times"
    assert trigger["payload"]["source"] == "job1"
    assert trigger["payload"]["custom_details"]["event data"] == {"error": "OOM"}
    assert trigger["links"][0] == {"href": "https://grafana.example.com/d/job1", "text": "Overview"}
    doc = fixture("pagerduty")
    for body, example in zip(bodies, ("trigger", "acknowledge", "resolve")):
        assert conforms(body, doc[example], doc["free_form"]) == [], body


def test_pagerduty_refusal_is_recorded_with_what_it_said_and_a_429_is_retried(tocsin_factory, providers):
    t = tocsin_factory(env=FAST)
    bad = note("pagerduty", "bad", secret={"routing_key": "too-short"}, params={"endpoint": providers.url})
    put_alert(t.api, alert("p", "refused", entity="job1", notifications=[bad]))
    send(t.api, "p", "job1")
    _, d = wait_for_delivery(t.api, "p", "bad")
    assert d["status"] == "failed" and d["attempts"] == 1, d
    assert d["error"].startswith("400 from the receiver: "), d
    assert "Length of 'routing_key' is incorrect" in d["error"]
    assert providers.url not in d["error"] and "too-short" not in d["error"]

    providers.script("pagerduty", [(429, {"Retry-After": "1"}, b"")])
    ok = note("pagerduty", "ok", secret={"routing_key": ROUTING_KEY}, params={"endpoint": providers.url})
    put_alert(t.api, alert("p", "limited", entity="job2", notifications=[ok]))
    send(t.api, "p", "job2")
    _, d = wait_for_delivery(t.api, "p", "ok")
    assert (d["status"], d["attempts"]) == ("sent", 2), d
    hits = [h for h in providers.requests if h["body"].get("routing_key") == ROUTING_KEY]
    assert [h["status"] for h in hits] == [429, 202]
    assert hits[1]["at"] - hits[0]["at"] >= 0.9, "Retry-After: 1 was honoured"


def test_opsgenie_creates_acknowledges_and_closes_by_alias(tocsin_factory, providers):
    t = tocsin_factory(env=FAST)
    genie = note("opsgenie", "genie", secret={"api_key": "eb243592-faa2-4ba2-a551-1afdf565c889"},
                 params={"url": providers.url}, send_resolved=True)
    put_alert(t.api, alert("fraud", "drift", entity="ep1", kind="model-endpoint-result",
                           events=("data-drift-detected",), reset="manual", severity="high", notifications=[genie]))
    send(t.api, "fraud", "ep1", kind="data-drift-detected", entity_kind="model-endpoint-result")
    act, d = wait_for_delivery(t.api, "fraud", "genie")
    assert d["status"] == "sent", d
    requests.post(f"{t.api}/projects/fraud/alerts/drift/acknowledge", json={"by": "dana"}, timeout=10)
    wait_for_delivery(t.api, "fraud", "genie", acknowledged=True)
    requests.post(f"{t.api}/projects/fraud/alerts/drift/reset", json={"by": "dana"}, timeout=10)
    wait_for_delivery(t.api, "fraud", "genie", resolved=True)

    hits = providers.wait_for(3, "opsgenie")
    alias = f"tocsin-fraud-{act['id']}"
    assert [h["path"] for h in hits] == ["/v2/alerts", f"/v2/alerts/{alias}/acknowledge", f"/v2/alerts/{alias}/close"]
    assert all(h["query"].get("identifierType", ["alias"]) == ["alias"] for h in hits)
    assert all(h["headers"]["authorization"] == "GenieKey eb243592-faa2-4ba2-a551-1afdf565c889" for h in hits)
    assert all(h["status"] == 202 for h in hits)
    create = hits[0]["body"]
    assert create["alias"] == alias and create["priority"] == "P1" and create["entity"] == "ep1"
    assert "reset by dana" in hits[2]["body"]["note"]
    doc = fixture("opsgenie")
    assert conforms(create, doc["create"], doc["free_form"]) == [], create
    assert conforms(hits[1]["body"], doc["acknowledge"]) == []
    assert conforms(hits[2]["body"], doc["close"]) == []


def test_teams_posts_an_adaptive_card_for_a_firing_and_its_resolution(tocsin_factory, providers):
    t = tocsin_factory(env={**FAST, "TOCSIN_NOTIFICATIONS__PUBLIC_URL": "https://tocsin.example.com"})
    teams = note("teams", "channel", secret={"url": f"{providers.url}/workflows/abc/triggers/manual/paths/invoke"},
                 send_resolved=True)
    put_alert(t.api, alert("fraud", "train", entity="job1", reset="manual", notifications=[teams]))
    send(t.api, "fraud", "job1", values={"error": "OOM"})
    wait_for_delivery(t.api, "fraud", "channel")
    requests.post(f"{t.api}/projects/fraud/alerts/train/reset", json={"by": "dana"}, timeout=10)
    _, d = wait_for_delivery(t.api, "fraud", "channel", resolved=True)
    assert d["status"] == "sent", d
    hits = providers.wait_for(2, "teams")
    assert [h["status"] for h in hits] == [202, 202], "the listener found each card valid"
    firing, resolved = (h["body"]["attachments"][0]["content"] for h in hits)
    assert firing["body"][0]["text"].startswith("[medium] Job fraud/job1 failed")
    facts = {f["title"]: f["value"] for f in firing["body"][-1]["facts"]}
    assert facts["error"] == "OOM" and facts["Alert"] == "train"
    assert firing["actions"][0]["url"] == "https://tocsin.example.com/alerts?project=fraud&alert=train"
    assert resolved["body"][0]["text"].startswith("Resolved: ") and resolved["body"][0]["color"] == "Good"
    doc = fixture("teams")
    for h in hits:
        assert conforms(h["body"], doc["message"], doc["free_form"]) == [], h["body"]


def test_discord_waits_as_long_as_its_429_body_says(tocsin_factory, providers):
    t = tocsin_factory(env=FAST)
    doc = fixture("discord")
    # The header says 30 s; the body, which Discord documents as the one to read, 0.3 s.
    providers.script("discord", [(429, {"Retry-After": "30"}, {**doc["rate_limited"], "retry_after": 0.3})])
    hook = note("discord", "chat", secret={"webhook": f"{providers.url}/api/webhooks/123/tok3n"}, send_resolved=True)
    put_alert(t.api, alert("fraud", "train", entity="job1", reset="manual", notifications=[hook]))
    send(t.api, "fraud", "job1", values={"error": "OOM"})
    _, d = wait_for_delivery(t.api, "fraud", "chat", timeout=10)
    assert (d["status"], d["attempts"]) == ("sent", 2), d
    requests.post(f"{t.api}/projects/fraud/alerts/train/reset", json={"by": "dana"}, timeout=10)
    wait_for_delivery(t.api, "fraud", "chat", resolved=True)
    hits = providers.wait_for(3, "discord")
    assert [h["status"] for h in hits] == [429, 204, 204]
    assert 0.25 <= hits[1]["at"] - hits[0]["at"] < 5, "the body's retry_after, not the header's 30 s"
    firing, resolved = hits[1]["body"], hits[2]["body"]
    assert firing["embeds"][0]["color"] == 0xD03030 and resolved["embeds"][0]["color"] == 0x2EB886
    assert {"name": "error", "value": "OOM", "inline": True} in firing["embeds"][0]["fields"]
    for body in (firing, resolved):
        assert conforms(body, doc["execute"], doc["free_form"]) == [], body


def test_a_delivery_being_retried_reads_retrying_with_its_attempts_and_cause(tocsin_factory, providers):
    t = tocsin_factory(env={**FAST, "TOCSIN_NOTIFICATIONS__INITIAL_BACKOFF_MS": "1500",
                            "TOCSIN_NOTIFICATIONS__MAX_BACKOFF_MS": "1500",
                            "TOCSIN_NOTIFICATIONS__GIVE_UP_AFTER_SECS": "30"})
    providers.script("teams", [503, 503])
    teams = note("teams", "channel", secret={"url": f"{providers.url}/workflows/x"})
    put_alert(t.api, alert("p", "a", entity="job1", notifications=[teams]))
    send(t.api, "p", "job1")
    providers.wait_for(1, "teams")
    seen = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        act = requests.get(f"{t.api}/projects/p/alert-activations", timeout=10).json()["activations"][0]
        d = act["deliveries"][0]
        seen.append((d["status"], d["attempts"], d.get("error")))
        if d["status"] == "sent":
            break
        time.sleep(0.05)
    assert seen[-1][:2] == ("sent", 3), seen
    # Once the first attempt failed, never "pending with 0 attempts" again.
    after_first = seen[next(i for i, s in enumerate(seen) if s[0] == "retrying"):]
    assert all(s[0] in ("retrying", "sent") and s[1] >= 1 for s in after_first), seen
    assert ("retrying", 1, "503 from the receiver") in seen and ("retrying", 2, "503 from the receiver") in seen


def test_git_comments_on_a_github_issue_over_tls_from_a_trusted_ca(trusting, git):
    github = note("git", "pr", secret={"token": "ghp_test"},
                  params={"repo": "org/models", "issue": 12, "server": git.host}, send_resolved=True)
    put_alert(trusting.api, alert("fraud", "train", entity="job1", reset="manual", notifications=[github]))
    send(trusting.api, "fraud", "job1", values={"error": "OOM"})
    _, d = wait_for_delivery(trusting.api, "fraud", "pr")
    assert d["status"] == "sent", d
    requests.post(f"{trusting.api}/projects/fraud/alerts/train/reset", json={"by": "dana"}, timeout=10)
    wait_for_delivery(trusting.api, "fraud", "pr", resolved=True)
    hits = git.wait_for(2, "github")
    assert [(h["path"], h["status"]) for h in hits] == [("/repos/org/models/issues/12/comments", 201)] * 2
    assert hits[0]["headers"]["authorization"] == "token ghp_test"
    assert hits[0]["headers"]["accept"] == "application/vnd.github.v3+json"
    comment = hits[0]["body"]["body"]
    assert comment.startswith("### :rotating_light: [medium] Job fraud/job1 failed"), comment
    assert "- **Entity:** job job1" in comment and "error" in comment and "OOM" in comment
    assert hits[1]["body"]["body"].startswith("### :white_check_mark: Resolved: ")
    assert "reset by dana" in hits[1]["body"]["body"]
    doc = fixture("github")
    assert conforms(hits[0]["body"], doc["request"]) == []


def test_git_comments_on_a_gitlab_issue_and_merge_request(trusting, git):
    notes = [
        note("git", "issue", secret={"token": "glpat-test"},
             params={"repo": "org/models", "issue": 3, "server": git.host, "gitlab": True}),
        note("git", "mr", secret={"GIT_TOKEN": "glpat-test"},
             params={"repo": "org/models", "merge_request": "7", "server": git.host, "gitlab": True}),
    ]
    put_alert(trusting.api, alert("fraud", "train", entity="job1", notifications=notes))
    send(trusting.api, "fraud", "job1")
    act = wait_delivered(trusting.api, "fraud")
    assert {d["notification"]: d["status"] for d in act["deliveries"]} == {"issue": "sent", "mr": "sent"}, act
    hits = sorted(git.wait_for(2, "gitlab"), key=lambda h: h["path"])
    assert [(h["path"], h["status"]) for h in hits] == [
        ("/api/v4/projects/org%2Fmodels/issues/3/notes", 201),
        ("/api/v4/projects/org%2Fmodels/merge_requests/7/notes", 201),
    ]
    assert all(h["headers"]["private-token"] == "glpat-test" for h in hits)
    assert conforms(hits[0]["body"], fixture("gitlab")["request"]) == []


def test_git_failures_are_recorded_with_their_cause(tocsin_factory, trusting, git):
    # A wrong token: GitHub's documented 401, recorded with what it said, never the token.
    wrong = note("git", "pr", secret={"token": "ghp_wrong"}, params={"repo": "org/models", "issue": 1, "server": git.host})
    put_alert(trusting.api, alert("p", "a", entity="job1", notifications=[wrong]))
    send(trusting.api, "p", "job1")
    _, d = wait_for_delivery(trusting.api, "p", "pr")
    assert d["status"] == "failed" and d["attempts"] == 1, d
    assert d["error"].startswith("401 from the receiver: ") and "Bad credentials" in d["error"], d
    assert "ghp_wrong" not in d["error"] and git.host not in d["error"]

    # A server that does not trust the CA: the certificate is refused, and the record says so.
    untrusting = tocsin_factory(env=FAST)
    right = note("git", "pr", secret={"token": "ghp_test"}, params={"repo": "org/models", "issue": 1, "server": git.host})
    put_alert(untrusting.api, alert("p", "a", entity="job1", notifications=[right]))
    send(untrusting.api, "p", "job1")
    _, d = wait_for_delivery(untrusting.api, "p", "pr")
    assert d["status"] == "failed", d
    assert "certificate" in d["error"].lower(), d
    assert git.host not in d["error"] and "127.0.0.1" not in d["error"], d


def test_mlruns_client_stores_a_git_notification_and_the_comment_arrives(trusting, git):
    import mlrun
    import mlrun.alerts
    import mlrun.common.schemas.alert as ao

    mlrun.mlconf.dbpath = trusting.url
    mlrun.mlconf.httpdb.token = trusting.token or ""
    mlrun.db.get_run_db(trusting.url, force_reconnect=True)
    project = mlrun.projects.MlrunProject.from_dict({"metadata": {"name": "fraud"}, "spec": {}})
    notification = mlrun.model.Notification(
        kind="git", name="pr-comment", message="Training failed", severity="warning", when=["now"],
        condition="failed", params={"repo": "org/models", "issue": 42, "server": git.host},
        secret_params={"token": "ghp_test"},
    ).to_dict()
    config = mlrun.alerts.alert.AlertConfig(
        project="fraud", name="train-failed", summary="Job {{entity}} failed", severity=ao.AlertSeverity.HIGH,
        entities=ao.EventEntities(kind=ao.EventEntityKind.JOB, project="fraud", ids=["*"]),
        trigger=ao.AlertTrigger(events=[ao.EventKind.FAILED]), criteria=ao.AlertCriteria(count=1),
        notifications=[ao.AlertNotification(notification=notification)],
    )
    stored = project.store_alert_config(config)
    assert stored.notifications[0].notification.kind == "git"
    event = ao.Event(kind=ao.EventKind.FAILED, entity=ao.EventEntities(kind=ao.EventEntityKind.JOB, project="fraud",
                                                                      ids=["train-7"]), value_dict={"error": "OOM"})
    mlrun.get_run_db().generate_event(ao.EventKind.FAILED, event, project="fraud")
    hit = git.wait_for(1, "github")[0]
    assert (hit["path"], hit["status"]) == ("/repos/org/models/issues/42/comments", 201)
    assert hit["body"]["body"].startswith("### :rotating_light: [high] Training failed")
    act = wait_delivered(trusting.api, "fraud")
    assert act["deliveries"][0]["status"] == "sent"
    got = project.get_alert_config("train-failed")
    assert got.notifications[0].notification.kind == "git"


def test_notify_test_sends_a_marked_message_and_shows_what_came_back(tocsin_factory, providers):
    t = tocsin_factory(env=FAST)
    notes = [
        note("pagerduty", "oncall", secret={"routing_key": ROUTING_KEY}, params={"endpoint": providers.url}),
        note("discord", "chat", secret={"webhook": f"{providers.url}/api/webhooks/1/t"}),
        note("opsgenie", "genie", secret={"api_key": "k"}, params={"url": providers.url + "/nowhere"}),
    ]
    put_alert(t.api, alert("fraud", "train", entity="job1", notifications=notes))
    env = {**os.environ, "TOCSIN_TOKEN": t.token or ""}
    out = subprocess.run([BIN, "notify", "test", "--server", t.url, "--project", "fraud", "train"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 1, out  # Opsgenie's URL is wrong: not every message was taken
    lines = sorted(out.stdout.splitlines())
    assert lines[0] == "chat (discord): sent, HTTP 204", lines
    assert lines[1].startswith("genie (opsgenie): refused, HTTP 404"), lines
    assert lines[2].startswith("oncall (pagerduty): sent, HTTP 202, it said: {\"status\": \"success\""), lines
    pd = providers.wait_for(1, "pagerduty")[0]["body"]
    assert pd["payload"]["summary"].startswith("[test] ") and pd["payload"]["custom_details"]["test"] is True
    assert providers.wait_for(1, "discord")[0]["body"]["content"] == "[medium] [test] Job fraud/job1 failed"

    out = subprocess.run([BIN, "notify", "test", "--server", t.url, "--project", "fraud", "train", "chat"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0 and out.stdout == "chat (discord): sent, HTTP 204\n", out
    r = requests.post(f"{t.api}/projects/fraud/alerts/train/notifications/test", params={"notification": "nope"},
                      timeout=10)
    assert r.status_code == 404 and "no notification named `nope`" in r.json()["detail"]
    # Nothing was recorded: no activation, no count.
    assert requests.get(f"{t.api}/projects/fraud/alert-activations", timeout=10).json()["activations"] == []
    assert requests.get(f"{t.api}/projects/fraud/alerts/train", timeout=10).json()["count"] == 0
