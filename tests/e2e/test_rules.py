"""Rules as code end to end: `tocsin check/fmt/test/apply/export` as a user runs them, against a
running `tocsin serve`, and MLRun's own client reading the applied alerts back."""

import json
import os
import shutil
import subprocess

import mlrun
import pytest
import requests

from conftest import BIN

ROOT = os.path.join(os.path.dirname(__file__), "../..")
EXAMPLE = os.path.join(ROOT, "rules-dsl/examples/fraud-detection/alerts.tocsin")


def run(*args, env=None, check=None):
    p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60,
                       env={**os.environ, **(env or {})})
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


@pytest.fixture
def rules(tmp_path, receiver):
    """The fraud-detection example in a directory of its own, with its secrets set."""
    shutil.copy(EXAMPLE, tmp_path / "alerts.tocsin")
    env = {"SLACK_WEBHOOK": f"{receiver.url}/slack", "PAGER_URL": f"{receiver.url}/pager"}
    return tmp_path, env


def names(api, project="fraud-detection"):
    return sorted(a["name"] for a in requests.get(f"{api}/projects/{project}/alerts").json()["alerts"])


def test_apply_shows_the_plan_stores_and_the_mlrun_client_reads_it_back(tocsin, rules):
    d, env = rules
    dry = run("apply", str(d), "--server", tocsin.url, "--dry-run", env=env, check=0)
    assert "+ endpoint-drift: create" in dry.stdout and "6 to create" in dry.stdout, dry.stdout
    assert "+ silence feature-store-maintenance: create" in dry.stdout, dry.stdout
    assert names(tocsin.api) == [], "a dry run stores nothing"

    out = run("apply", str(d), "--server", tocsin.url, env=env, check=0)
    assert out.stdout.rstrip().endswith("applied"), out.stdout
    assert names(tocsin.api) == ["concept-drift", "endpoint-drift", "hot-training-job", "job-cpu-high", "training-failed", "training-job-silent"]

    mlrun.mlconf.dbpath = tocsin.url
    mlrun.db.get_run_db(tocsin.url, force_reconnect=True)
    project = mlrun.projects.MlrunProject.from_dict({"metadata": {"name": "fraud-detection"}, "spec": {}})
    listed = {a.name: a for a in project.list_alerts_configs()}
    # Alerts on custom event kinds are left out for MLRun's client, whose enum lacks them.
    assert sorted(listed) == ["concept-drift", "endpoint-drift", "training-failed"]
    drift = project.get_alert_config("endpoint-drift")
    assert (drift.severity, drift.criteria.count, drift.criteria.period) == ("high", 3, "10m")
    assert [str(e) for e in drift.trigger.events] == ["data-drift-detected", "data-drift-suspected"] or \
        [e.value for e in drift.trigger.events] == ["data-drift-detected", "data-drift-suspected"]
    assert drift.entities.ids == ["scoring-*"]
    assert sorted(n.notification.name for n in drift.notifications) == ["ml-alerts", "oncall"]
    failed = listed["training-failed"]
    assert failed.reset_policy == "auto" and failed.summary == "Training job {{entity}} failed twice within an hour"

    silence = requests.get(f"{tocsin.api}/projects/fraud-detection/silences/feature-store-maintenance").json()
    assert silence["schedule"] == {"days": ["sat"], "from": "02:00", "to": "04:00", "time_zone": "Europe/Berlin"}
    assert silence["matchers"] == {"alert": "endpoint-drift"}

    again = run("apply", str(d), "--server", tocsin.url, env=env, check=0)
    assert "0 to create, 0 to update, 0 to delete, 6 unchanged" in again.stdout, again.stdout
    assert "= silence feature-store-maintenance: unchanged" in again.stdout, again.stdout


def test_the_plan_names_updates_that_reset_state_and_prune_deletes_only_applied_alerts(tocsin, rules, receiver):
    d, env = rules
    run("apply", str(d), "--server", tocsin.url, env=env, check=0)
    # An alert and a silence stored through the API, not from files: apply never removes them.
    requests.put(f"{tocsin.api}/projects/fraud-detection/alerts/by-hand", json={
        "severity": "low", "trigger": {"events": ["failed"]},
        "entities": {"kind": "job", "project": "fraud-detection", "ids": ["*"]}}).raise_for_status()
    requests.put(f"{tocsin.api}/projects/fraud-detection/silences/hand-made", json={
        "matchers": {"alert": "concept-*"}, "ends_at": "2099-01-01T00:00:00Z",
        "comment": "made by hand"}).raise_for_status()
    text = (d / "alerts.tocsin").read_text()
    # The file's silence goes too: `--prune` expires it, and only it.
    start = text.index("silence feature-store-maintenance {")
    text = text[:start] + text[text.index("}\n", start) + 2:]
    text = text.replace("when count >= 3 within 10m per entity", "when count >= 3 within 20m per entity")
    text = text.replace('summary "Concept drift on {{entity}}: the fraud labels moved"', 'summary "Concept drift on {{entity}}"')
    start = text.index("# Training must not fail twice")
    end = text.index("# Jobs report their CPU use")
    (d / "alerts.tocsin").write_text(text[:start] + text[end:])
    # Secrets are not needed for alerts the server already holds.
    plan = run("apply", str(d), "--server", tocsin.url, "--dry-run", "--prune", check=0)
    lines = plan.stdout.splitlines()
    assert "  ~ endpoint-drift: update (resets its state)" in lines, plan.stdout
    assert "  ~ concept-drift: update" in lines
    assert "  - training-failed: delete" in lines
    assert any(line.startswith("  ! by-hand: not in the files") for line in lines)
    assert "  - silence feature-store-maintenance: expire" in lines, plan.stdout
    assert "hand-made" not in plan.stdout
    kept = run("apply", str(d), "--server", tocsin.url, "--dry-run", check=0)
    assert "  ! silence feature-store-maintenance: not in the files; kept (no --prune)" in kept.stdout.splitlines()
    run("apply", str(d), "--server", tocsin.url, "--prune", check=0)
    silences = {s["id"]: s for s in requests.get(
        f"{tocsin.api}/projects/fraud-detection/silences?state=all").json()["silences"]}
    assert silences["feature-store-maintenance"]["state"] == "expired"
    assert silences["feature-store-maintenance"]["tocsin_rules"].endswith("alerts.tocsin")
    assert silences["hand-made"]["state"] == "active" and "tocsin_rules" not in silences["hand-made"]
    assert names(tocsin.api) == ["by-hand", "concept-drift", "endpoint-drift", "hot-training-job", "job-cpu-high",
                                 "training-job-silent"]
    drift = requests.get(f"{tocsin.api}/projects/fraud-detection/alerts/endpoint-drift").json()
    assert drift["criteria"]["period"] == "20m"
    # The stored Slack secret was kept: a drift still notifies the local "Slack".
    for i in range(3):
        requests.post(f"{tocsin.api}/projects/fraud-detection/events/data-drift-detected", json={
            "entity": {"kind": "model-endpoint-result", "project": "fraud-detection", "ids": ["scoring-eu"]},
            "value_dict": {"result_value": 0.9, "app": "drift"}}).raise_for_status()
    got = receiver.wait_for(1)
    assert got[0]["path"] == "/slack"


def test_a_new_alert_without_its_secrets_is_refused_before_anything_is_stored(tocsin, rules):
    d, _ = rules
    out = run("apply", str(d), "--server", tocsin.url, check=1)
    assert "set SLACK_WEBHOOK" in out.stderr, out.stderr
    assert names(tocsin.api) == []


def test_export_writes_rules_that_check_and_apply_as_unchanged(tocsin, rules, tmp_path):
    d, env = rules
    run("apply", str(d), "--server", tocsin.url, env=env, check=0)
    exported = run("export", "--server", tocsin.url, "--project", "fraud-detection", check=0)
    out = tmp_path / "exported"
    out.mkdir()
    (out / "fraud.tocsin").write_text(exported.stdout)
    run("check", str(out), check=0)
    run("fmt", "--check", str(out), check=0)
    plan = run("apply", str(out), "--server", tocsin.url, "--dry-run", check=0)
    # Same configs; only the marker naming the file they came from differs.
    assert "0 to create" in plan.stdout and "0 to delete" in plan.stdout, plan.stdout
    # The silence comes along as a block; like the alerts, only the file it names changes.
    assert 'silence feature-store-maintenance {' in exported.stdout, exported.stdout
    assert 'every sat 02:00 to 04:00 "Europe/Berlin"' in exported.stdout
    assert "~ silence feature-store-maintenance: update" in plan.stdout, plan.stdout
    run("apply", str(out), "--server", tocsin.url, check=0)
    again = run("apply", str(out), "--server", tocsin.url, "--dry-run", check=0)
    assert "= silence feature-store-maintenance: unchanged" in again.stdout, again.stdout


def test_serve_loads_a_rules_directory_at_start(tocsin_factory, rules):
    d, env = rules
    t = tocsin_factory(env=env, args=["--alerts", str(d)])
    assert names(t.api) == ["concept-drift", "endpoint-drift", "hot-training-job", "job-cpu-high", "training-failed", "training-job-silent"]


def test_check_exit_codes_and_json(tmp_path):
    clean = os.path.join(ROOT, "rules-dsl/examples")
    assert "checked 12 files: 0 errors, 0 warnings" in run("check", clean, check=0).stderr
    warn = tmp_path / "warn.tocsin"
    warn.write_text('project p\n\ntemplate unused {\n  severity low\n}\n\nalert a {\n  on failed\n  severity high\n}\n')
    assert "warning[W101]" in run("check", str(warn), check=3).stderr
    bad = tmp_path / "bad.tocsin"
    bad.write_text("project p\n\nalert a {\n  on faild\n  severity high\n}\n")
    human = run("check", str(bad), check=1).stderr
    assert f"{bad}:4:6" in human and "did you mean `failed`?" in human
    diags = json.loads(run("check", "--format", "json", str(bad), check=1).stdout)
    assert [(x["code"], x["line"], x["column"]) for x in diags] == [("E010", 4, 6)]
    assert run("check", str(tmp_path / "missing.tocsin"), check=2).stderr
    messy = tmp_path / "messy.tocsin"
    messy.write_text("project p\nalert a { on failed severity high }\n")
    run("fmt", "--check", str(messy), check=1)
    run("fmt", str(messy), check=0)
    assert messy.read_text() == "project p\n\nalert a {\n  on failed\n  severity high\n}\n"
    run("fmt", "--check", str(messy), check=0)


def test_rule_tests_run_from_the_command_line():
    out = run("test", os.path.join(ROOT, "rules-dsl/examples"), check=0)
    assert "20 passed, 0 failed" in out.stdout, out.stdout


def test_the_mlrun_client_reads_around_custom_event_kinds(tocsin):
    """Alerts and activations of custom kinds are Tocsin's; MLRun's client lists the rest."""
    api = f"{tocsin.api}/projects/mixed"
    for name, kind, entity_kind in [("deploys", "deploy-failed", "job"), ("jobs", "failed", "job")]:
        requests.put(f"{api}/alerts/{name}", json={
            "severity": "low", "trigger": {"events": [kind]},
            "entities": {"kind": entity_kind, "project": "mixed", "ids": ["*"]}}).raise_for_status()
        requests.post(f"{api}/events/{kind}", json={
            "entity": {"kind": entity_kind, "project": "mixed", "ids": ["svc-1"]}}).raise_for_status()
    plain = requests.get(f"{api}/alert-activations").json()["activations"]
    assert sorted(a["event_kind"] for a in plain) == ["deploy-failed", "failed"]
    mlrun.mlconf.dbpath = tocsin.url
    db = mlrun.db.get_run_db(tocsin.url, force_reconnect=True)
    assert [a.name for a in db.list_alert_activations(project="mixed")] == ["jobs"]
    project = mlrun.projects.MlrunProject.from_dict({"metadata": {"name": "mixed"}, "spec": {}})
    assert [a.name for a in project.list_alerts_configs()] == ["jobs"]
