"""Operating `tocsin serve`: a real Prometheus (Debian's) scrapes `/metrics` and its numbers
match what the test did; `promtool check metrics` passes on the exposition; readiness says why
not; SIGHUP and `POST /-/reload` re-read the rule files; JSON logs."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest
import requests

from conftest import AUTH, BIN, Tocsin, free_port, make_token
from helpers import alert, event, get_alert, put_alert, send

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(AUTH, reason="runs its own servers with and without auth")


class Prometheus:
    """Debian's prometheus on a loopback port, scraping `targets` every 500 ms."""

    def __init__(self, directory, target, token=None):
        assert PROMETHEUS, "tests/run installs Debian's prometheus"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        job = {
            "job_name": "tocsin",
            "scrape_interval": "500ms",
            "scrape_timeout": "400ms",
            "static_configs": [{"targets": [target]}],
        }
        if token:
            job["authorization"] = {"type": "Bearer", "credentials": token}
        config = os.path.join(directory, "prometheus.yml")
        with open(config, "w") as f:
            json.dump({"global": {"scrape_interval": "500ms"}, "scrape_configs": [job]}, f)  # YAML reads JSON
        self.log = open(os.path.join(directory, "prometheus.log"), "ab")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={directory}/tsdb",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=self.log,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/-/ready", timeout=0.5).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError("prometheus did not become ready")

    def query(self, expr):
        r = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        assert r.ok, r.text
        result = r.json()["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr, expected, timeout=30):
        """The query's value once it equals `expected` (Prometheus scrapes on its own clock)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.query(expr)
            if value == expected:
                return value
            assert time.monotonic() < deadline, f"{expr} = {value}, expected {expected}"
            time.sleep(0.25)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture
def prometheus_factory():
    started = []
    with tempfile.TemporaryDirectory() as tmp:
        def make(target, token=None):
            p = Prometheus(tempfile.mkdtemp(dir=tmp), target, token)
            started.append(p)
            return p
        yield make
        for p in started:
            p.stop()


def webhook(name, url):
    return {"notification": {"kind": "webhook", "name": name, "params": {"url": url}}}


def test_prometheus_scrapes_the_events_activations_and_deliveries_the_test_caused(
        tocsin_factory, receiver, prometheus_factory):
    t = tocsin_factory(env={"TOCSIN_NOTIFICATIONS__INITIAL_BACKOFF_MS": "50"})
    prom = prometheus_factory(f"127.0.0.1:{t.port}")
    api, p = t.api, "ops"
    # One alert per delivery outcome, each fired once by its own entity.
    receiver.script("/flaky", [503])  # one retry, then sent
    receiver.script("/refused", [400])  # refused for good
    for name, severity in (("sent", "high"), ("flaky", "medium"), ("refused", "medium")):
        put_alert(api, alert(p, name, entity=f"job-{name}", severity=severity, reset="manual",
                             notifications=[webhook("w", f"{receiver.url}/{'ok' if name == 'sent' else name}")]))
    for entity in ("job-sent", "job-flaky", "job-refused"):
        send(api, p, entity)
    # Two more accepted (one key repeated: one duplicate), and three refused.
    send(api, p, "job-other", headers={"Idempotency-Key": "k1"})
    send(api, p, "job-other", headers={"Idempotency-Key": "k1"})
    for _ in range(3):
        r = requests.post(f"{api}/projects/{p}/events/failed", json=event("elsewhere", "job-1"), timeout=5)
        assert r.status_code == 400, r.text
    # A batch: 4 accepted.
    r = requests.post(f"{api}/projects/{p}/events",
                      json={"events": [{**event(p, f"job-b{i}"), "kind": "failed"} for i in range(4)]}, timeout=5)
    assert r.ok, r.text
    receiver.wait_for(1, path="/ok")
    receiver.wait_for(2, path="/flaky")
    receiver.wait_for(1, path="/refused")

    events = 'sum(tocsin_events_total{project="ops",outcome="%s"})'
    assert prom.wait_for(events % "accepted", 3 + 1 + 4) == 8
    assert prom.wait_for(events % "duplicate", 1) == 1
    assert prom.wait_for('sum(tocsin_events_total{project="ops",outcome="refused",reason="invalid"})', 3) == 3
    assert prom.wait_for('sum(tocsin_activations_total{project="ops"})', 3) == 3
    assert prom.wait_for('tocsin_activations_total{project="ops",severity="high"}', 1) == 1
    deliveries = 'sum(tocsin_deliveries_total{channel="webhook",outcome="%s"})'
    assert prom.wait_for(deliveries % "sent", 2) == 2
    assert prom.wait_for(deliveries % "retried", 1) == 1
    assert prom.wait_for(deliveries % "failed", 1) == 1
    assert prom.wait_for('tocsin_delivery_latency_seconds_count{channel="webhook"}', 2) == 2
    assert prom.wait_for('tocsin_alerts{state="configured"}', 3) == 3
    # Manual reset: the three that fired stay active.
    assert prom.wait_for('tocsin_alerts{state="active"}', 3) == 3
    assert prom.wait_for("tocsin_outbox_activations", 0) == 0
    # 9 requests with events: 5 single accepted or duplicate, 3 refused, 1 batch.
    assert prom.wait_for("tocsin_ingest_duration_seconds_count", 9) == 9
    assert prom.query("tocsin_store_commit_duration_seconds_count") > 0
    assert prom.query("tocsin_store_log_bytes") > 0
    assert prom.query('up{job="tocsin"}') == 1


def test_the_exposition_passes_promtool(tocsin, receiver):
    assert PROMTOOL, "tests/run installs Debian's prometheus (promtool)"
    put_alert(tocsin.api, alert("ops", "a", notifications=[webhook("w", receiver.url + "/ok")]))
    send(tocsin.api, "ops", "job-1")
    receiver.wait_for(1)
    text = requests.get(f"{tocsin.url}/metrics", timeout=5)
    assert text.ok and text.headers["content-type"].startswith("text/plain")
    assert "tocsin_deliveries_total" in text.text
    out = subprocess.run([PROMTOOL, "check", "metrics"], input=text.text, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_with_auth_on_metrics_need_a_reader_of_every_project(tmp_path, prometheus_factory):
    directory = str(tmp_path)
    store = os.path.join(directory, "store")
    reader = make_token(store, role="viewer", project="*", name="prometheus")
    one_project = make_token(store, role="admin", project="ops", name="ops-admin")
    t = Tocsin(directory, env={"TOCSIN_AUTH__ENABLED": "true"})
    t.start()
    try:
        assert requests.get(f"{t.url}/metrics", timeout=5).status_code == 401
        r = requests.get(f"{t.url}/metrics", headers={"Authorization": f"Bearer {one_project}"}, timeout=5)
        assert r.status_code == 403, r.text
        assert "detail" in r.json()
        assert requests.get(f"{t.url}/-/ready", timeout=5).ok  # probes stay open
        prom = prometheus_factory(f"127.0.0.1:{t.port}", token=reader)
        assert prom.wait_for('up{job="tocsin"}', 1) == 1
        assert prom.wait_for('tocsin_alerts{state="configured"}', 0) == 0
    finally:
        t.stop()


def test_ready_says_why_not_when_the_disk_is_short_and_healthy_still_answers(tocsin_factory):
    t = tocsin_factory(env={"TOCSIN_SERVER__MIN_FREE_BYTES": str(10**18)})
    r = requests.get(f"{t.url}/-/ready", timeout=5)
    assert r.status_code == 503, r.text
    assert "min_free_bytes" in r.json()["detail"]
    assert requests.get(f"{t.url}/-/healthy", timeout=5).json() == {"status": "healthy"}
    fine = tocsin_factory()
    assert requests.get(f"{fine.url}/-/ready", timeout=5).json() == {"status": "ready"}


RULES = """project ops

alert job-failed {
  summary "Job {{entity}} failed"
  severity medium
  on failed
  entity job "*"
  when count >= %d within 10m per entity
}
"""


def wait_until(check, timeout=10):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_sighup_and_reload_apply_changed_rule_files_and_a_broken_one_changes_nothing(tmp_path, tocsin_factory):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "ops.tocsin").write_text(RULES % 3)
    t = tocsin_factory(args=["--alerts", str(rules)])
    count = lambda: requests.get(f"{t.api}/projects/ops/alerts/job-failed", timeout=5).json()["criteria"]["count"]
    assert count() == 3

    # SIGHUP: the changed file is stored.
    (rules / "ops.tocsin").write_text(RULES % 5)
    t.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: count() == 5)
    wait_until(lambda: "reloaded the rule files" in t.log())

    # A file that does not check: 400 with its diagnostic, and nothing changes.
    (rules / "ops.tocsin").write_text(RULES % 7)
    (rules / "broken.tocsin").write_text("project ops\nalert x {\n  on failed\n  when count >= \n}\n")
    r = requests.post(f"{t.url}/-/reload", timeout=10)
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert "nothing changed" in detail and "broken.tocsin:" in detail, detail
    assert count() == 5

    # Fixed: the plan says what it did; an unchanged file is not stored again.
    (rules / "broken.tocsin").unlink()
    (rules / "more.tocsin").write_text((RULES % 2).replace("job-failed", "job-failed-twice"))
    r = requests.post(f"{t.url}/-/reload", timeout=10)
    assert r.ok, r.text
    assert r.json() == {"created": ["ops/job-failed-twice"], "updated": ["ops/job-failed"],
                        "unchanged": 0, "silences": 0}
    assert count() == 7
    again = requests.post(f"{t.url}/-/reload", timeout=10).json()
    assert again == {"created": [], "updated": [], "unchanged": 2, "silences": 0}


def test_reload_without_rule_files_says_so(tocsin):
    r = requests.post(f"{tocsin.url}/-/reload", timeout=5)
    assert r.status_code == 400
    assert "--alerts" in r.json()["detail"]


def test_json_logs_are_one_object_a_line_with_a_line_per_refused_request(tocsin_factory):
    t = tocsin_factory(args=["--log-format", "json"])
    r = requests.post(f"{t.api}/projects/ops/events/failed", json=event("elsewhere", "job-1"), timeout=5)
    assert r.status_code == 400
    t.stop()
    lines = [line for line in t.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line parses
    access = [r for r in records if r.get("target") == "tocsin::access"]
    assert any(a["status"] == 400 and a["path"] == "/api/v1/projects/ops/events/failed" and "micros" in a
               for a in access), access
    assert any(r.get("message") == "tocsin is serving" for r in records)


def test_text_logs_into_a_file_carry_no_colour_codes(tocsin_factory):
    t = tocsin_factory()
    requests.post(f"{t.api}/projects/ops/events/failed", json=event("elsewhere", "job-1"), timeout=5)
    t.stop()
    assert "tocsin is serving" in t.log()
    assert "\x1b[" not in t.log()


def listing(api, project):
    alerts = requests.get(f"{api}/projects/{project}/alerts", timeout=5).json()["alerts"]
    acts = requests.get(f"{api}/projects/{project}/alert-activations", timeout=5).json()["activations"]
    return ({a["name"]: (a["state"], a["count"]) for a in alerts},
            [(a["id"], a["name"], a["entity_id"], a["number_of_events"], a.get("reset_time")) for a in acts])


def test_backup_while_events_arrive_and_restore_into_a_new_data_directory(tmp_path, tocsin_factory):
    t = tocsin_factory()
    api = t.api
    for entity in ("job-a", "job-b", "job-c"):
        put_alert(api, alert("steady", f"watch-{entity}", entity=entity, count=3, period="1h", reset="manual"))
    put_alert(api, alert("busy", "all", count=99, period="1h", reset="manual"))
    for entity in ["job-a"] * 3 + ["job-b"] * 2 + ["job-c"] * 3:  # a and c fire; b counts 2
        send(api, "steady", entity)
    requests.post(f"{api}/projects/steady/alerts/watch-job-c/reset", timeout=5).raise_for_status()
    before = listing(api, "steady")
    assert before[0]["watch-job-a"][0] == "active" and before[0]["watch-job-c"][0] == "inactive"
    assert len(before[1]) == 2
    assert before[0]["watch-job-b"] == ("inactive", 0), before  # two events in its window

    # Ingest goes on while the backup is taken.
    answers, stop = [], threading.Event()

    def producer():
        while not stop.is_set():
            r = requests.post(f"{api}/projects/busy/events/failed", json=event("busy", "job-1"), timeout=10)
            answers.append(r.status_code)

    thread = threading.Thread(target=producer)
    thread.start()
    time.sleep(0.3)
    backup = tmp_path / "backup.ndjson"
    with open(backup, "wb") as f:
        out = subprocess.run([BIN, "backup", "--server", t.url], stdout=f, stderr=subprocess.PIPE, timeout=60)
    during = len(answers)
    time.sleep(0.3)
    stop.set()
    thread.join()
    assert out.returncode == 0, out.stderr
    assert len(answers) > during > 0 and set(answers) == {200}, "ingest went on, every event answered"
    lines = backup.read_text().splitlines()
    assert json.loads(lines[0])["backup"] == "tocsin"
    assert json.loads(lines[-1])["end"]["activations"] >= 2  # busy may have fired too

    restored = tmp_path / "restored"
    out = subprocess.run([BIN, "restore", "--data-dir", str(restored), str(backup)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "activations" in out.stderr
    second = tmp_path / "second"
    second.mkdir()
    os.rename(restored, second / "store")  # where a Tocsin of `second` keeps its data
    r = Tocsin(str(second)).start()
    try:
        assert listing(r.api, "steady") == before  # the windows' counts, the states, the activations
        busy = requests.get(f"{r.api}/projects/busy/alerts/all", timeout=5).json()
        assert busy["state"] in ("active", "inactive") and busy["count"] <= len(answers)
        # The window's two events of job-b were restored: a third fires it.
        send(r.api, "steady", "job-b")
        assert get_alert(r.api, "steady", "watch-job-b")["state"] == "active"
        # The restored server goes on from there: job-c (reset) fires again, with a new id.
        send(r.api, "steady", "job-c")
        send(r.api, "steady", "job-c")
        send(r.api, "steady", "job-c")
        after = listing(r.api, "steady")
        assert after[0]["watch-job-c"][0] == "active"
        assert max(a[0] for a in after[1]) > max(a[0] for a in before[1])
    finally:
        r.stop()


def test_restore_refuses_a_cut_off_backup_and_a_directory_in_use(tmp_path, tocsin):
    put_alert(tocsin.api, alert("p", "a"))
    send(tocsin.api, "p", "job-1")
    whole = subprocess.run([BIN, "backup", "--server", tocsin.url], capture_output=True, timeout=60)
    assert whole.returncode == 0, whole.stderr
    cut = whole.stdout[: len(whole.stdout) - 20]
    out = subprocess.run([BIN, "restore", "--data-dir", str(tmp_path / "r")], input=cut, capture_output=True,
                         timeout=60)
    assert out.returncode == 1
    assert b"cut off" in out.stderr or b"line" in out.stderr, out.stderr
    assert not (tmp_path / "r").exists(), "nothing is left of a refused restore"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    out = subprocess.run([BIN, "restore", "--data-dir", str(tmp_path / "full")], input=whole.stdout,
                         capture_output=True, timeout=60)
    assert out.returncode == 1 and b"not empty" in out.stderr
    # The data directory of a running server is not opened a second time.
    out = subprocess.run([BIN, "backup", "--data-dir", os.path.join(tocsin.data_dir, "store")],
                         capture_output=True, timeout=60)
    assert out.returncode == 1 and b"--server" in out.stderr, out.stderr
    # A stopped server's directory backs up the same alerts.
    tocsin.stop()
    offline = subprocess.run([BIN, "backup", "--data-dir", os.path.join(tocsin.data_dir, "store")],
                             capture_output=True, timeout=60)
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout.splitlines()[-1])["end"]["activations"] == 1
