"""`tocsin explain` and `tocsin backtest` with the real binary: a backtest of the example rules
over a generated week agrees with `tocsin test` on the same events, and both commands work
against a running server (its recorded events survive a kill -9)."""

import json
import os
import random
import subprocess
from datetime import datetime, timedelta, timezone

import requests

from conftest import BIN

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
EXAMPLE = os.path.join(ROOT, "rules-dsl/examples/fraud-detection")
# `tocsin test`'s virtual clock starts here.
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
SECRETS = {"SLACK_WEBHOOK": "http://127.0.0.1:9/slack", "PAGER_URL": "http://127.0.0.1:9/pager"}


def run(*args, check=0, env=None):
    out = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **SECRETS, **(env or {})})
    assert out.returncode == check, f"exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def week(seed=7):
    """A week of the example project's events, as (seconds from EPOCH, kind, entity kind, entity, values)."""
    rnd = random.Random(seed)
    events = []
    t = 0
    end = 7 * 86_400
    while t < end:
        t += rnd.randint(20, 240)
        pick = rnd.random()
        if pick < 0.35:
            app = "shadow-x" if rnd.random() < 0.1 else "drift"
            ep = rnd.choice(["scoring-eu", "scoring-us", "scoring-apac"])
            kind = rnd.choice(["data_drift_detected", "data_drift_suspected"])
            events.append((t, kind, "model-endpoint-result", ep,
                           {"result_value": round(rnd.uniform(0.4, 1.0), 3), "app": app}))
        elif pick < 0.37:
            events.append((t, "concept_drift_detected", "model-endpoint-result", "scoring-main.fraud.concept", {}))
        elif pick < 0.42:
            events.append((t, "failed", "job", rnd.choice(["train-a", "train-b", "etl-x"]), {"error": "OOM"}))
        else:
            # train-b goes quiet on the third day for two hours: its absence fires.
            job = rnd.choice(["train-a", "train-b"])
            if job == "train-b" and 2 * 86_400 < t < 2 * 86_400 + 7_200:
                continue
            cpu = rnd.choice([rnd.randint(40, 69), rnd.randint(71, 99), rnd.randint(71, 99)])
            events.append((t, "job-cpu", "job", job, {"cpu": cpu}))
    return events


def test_a_backtest_of_the_example_rules_over_a_week_agrees_with_tocsin_test(tmp_path):
    events = week()
    assert len(events) > 3_000
    lines = tmp_path / "week.jsonl"
    with open(lines, "w") as f:
        for t, kind, entity_kind, entity, values in events:
            f.write(json.dumps({
                "project": "fraud-detection", "kind": kind, "entity_kind": entity_kind, "entity_id": entity,
                "value_dict": values, "at": (EPOCH + timedelta(seconds=t)).isoformat(),
                "idempotency_key": None, "chain": [],
            }) + "\n")
    end = events[-1][0] + 1
    report = json.loads(run(
        "backtest", EXAMPLE, "--events", str(lines), "--json",
        "--since", EPOCH.isoformat(), "--until", (EPOCH + timedelta(seconds=end)).isoformat(),
    ))
    assert report["events"] == len(events)
    fired = {a["name"]: a["would"]["fired"] for a in report["alerts"]}
    # The week exercises the rules: counting, sustained and calculated, manual, absence.
    for name in ["endpoint-drift", "concept-drift", "training-failed", "job-cpu-high", "hot-training-job",
                 "training-job-silent"]:
        assert fired[name] > 0, (name, fired)
    assert fired["concept-drift"] == 1, "a manual alert stays active until reset"

    # The same events as a `tocsin test` case, expecting the counts the backtest gave.
    def toml_value(v):
        return "{ " + ", ".join(f"{k} = {json.dumps(x)}" for k, x in v.items()) + " }"

    inputs = []
    for t, kind, entity_kind, entity, values in events:
        extra = f', entity_kind = "{entity_kind}"' if kind == "job-cpu" else ""
        inputs.append(f'  {{ at = "{t}s", kind = "{kind}", entity = "{entity}"{extra}, values = {toml_value(values)} }},')
    expects = [f'  {{ at = "{end}s", alert = "{name}", activations = {n} }},' for name, n in sorted(fired.items())]
    case = tmp_path / "week.test.toml"
    case.write_text(
        f'rules = [{json.dumps(os.path.join(EXAMPLE, "alerts.tocsin"))}]\n\n'
        '[[test]]\nname = "the generated week"\nevents = [\n' + "\n".join(inputs) + "\n]\n"
        "expect = [\n" + "\n".join(expects) + "\n]\n"
    )
    out = run("test", str(case))
    assert "the generated week" in out and "FAIL" not in out, out
    # And one count off is caught: the comparison can fail.
    wrong = case.read_text().replace(f'alert = "endpoint-drift", activations = {fired["endpoint-drift"]}',
                                     f'alert = "endpoint-drift", activations = {fired["endpoint-drift"] + 1}')
    case.write_text(wrong)
    run("test", str(case), check=1)


def test_explain_and_backtest_against_a_running_server(tocsin_factory, tmp_path):
    t = tocsin_factory(env=SECRETS, args=["--alerts", EXAMPLE])
    events = f"{t.api}/projects/fraud-detection/events"

    def drift(ep, value, app="drift"):
        r = requests.post(f"{events}/data_drift_detected", json={
            "entity": {"kind": "model-endpoint-result", "project": "fraud-detection", "ids": [ep]},
            "value_dict": {"result_value": value, "app": app}})
        assert r.status_code == 200, r.text

    for value, app in [(0.9, "drift"), (0.5, "drift"), (0.95, "shadow-x"), (0.8, "drift"), (0.99, "drift")]:
        drift("scoring-eu", value, app)
    # The third strong result of `drift` fired the alert.
    assert requests.get(f"{t.api}/projects/fraud-detection/alerts/endpoint-drift").json()["count"] == 1

    # Why: an event of my own, then the endpoint's recorded events.
    out = run("explain", "--server", t.url, "--project", "fraud-detection", "endpoint-drift",
              "--entity", "scoring-eu", "--value", "result_value=0.6", "--value", "app=drift")
    assert "✗ where" in out and "value.result_value > 0.7: the event has 0.6" in out, out
    out = run("explain", "--server", t.url, "--project", "fraud-detection", "endpoint-drift",
              "--entity", "scoring-eu", "--last", "5", "--json")
    verdicts = [e["verdict"]["outcome"] for e in json.loads(out)["explanations"]]
    assert verdicts == ["counted", "ignored", "ignored", "counted", "fires"], verdicts
    shadow = json.loads(out)["explanations"][2]
    where = next(c for c in shadow["clauses"] if c["clause"] == "where")
    assert "not value.app starts_with" in where["says"], where
    bad = subprocess.run([BIN, "explain", "--server", t.url, "--project", "fraud-detection", "nope",
                          "--entity", "x"], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "404" in bad.stderr, bad.stderr

    # The recorded events survive a kill -9 (they are the event log).
    t.kill()
    t.start()
    lines = [json.loads(line) for line in requests.get(events, params={"since": "1h"}).text.splitlines()]
    assert [e["value_dict"]["result_value"] for e in lines] == [0.9, 0.5, 0.95, 0.8, 0.99]

    # A stricter candidate: two results above 0.85 within 10 minutes.
    candidate = tmp_path / "strict.tocsin"
    candidate.write_text(open(os.path.join(EXAMPLE, "alerts.tocsin")).read()
                         .replace("where value.result_value > 0.7", "where value.result_value > 0.85")
                         .replace("when count >= 3 within 10m per entity", "when count >= 2 within 10m per entity"))
    report = json.loads(run("backtest", str(candidate), "--server", t.url, "--since", "1h", "--json"))
    drift_report = next(a for a in report["alerts"] if a["name"] == "endpoint-drift")
    assert drift_report["would"]["fired"] == 1, drift_report
    assert drift_report["did"]["fired"] == 1, drift_report
    assert drift_report["would"]["firings"][0]["events"] == 2
    text = run("backtest", str(candidate), "--server", t.url, "--since", "1h")
    assert "endpoint-drift: would fire 1 time(s); the stored alert fired 1" in text, text
    refused = subprocess.run([BIN, "backtest", EXAMPLE], capture_output=True, text=True, timeout=30, env={**os.environ, **SECRETS})
    assert refused.returncode != 0 and "--server URL or --events FILE" in refused.stderr
