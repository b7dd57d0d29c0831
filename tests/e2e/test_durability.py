"""Nothing accepted is lost: SIGKILL and restart keep windows, state, activations and
idempotency keys; concurrent threshold-crossing events fire exactly once."""

import concurrent.futures
import json
import os
import shutil
import subprocess

import requests

from conftest import Tocsin
from helpers import alert, get_alert, put_alert, send


def test_sigkill_keeps_windows_state_and_activations(tocsin):
    api = tocsin.api
    put_alert(api, alert("p", "window", entity="job1", count=3, period="1h"))
    put_alert(api, alert("p", "manual", entity="job2", count=1, reset="manual"))
    send(api, "p", "job1")
    send(api, "p", "job1", headers={"Idempotency-Key": "retry-me"})
    send(api, "p", "job2")
    assert get_alert(api, "p", "manual")["state"] == "active"

    tocsin.kill()
    tocsin.start()

    assert get_alert(api, "p", "manual")["state"] == "active", "state survived"
    send(api, "p", "job1", headers={"Idempotency-Key": "retry-me"})  # a client retry: not counted
    assert get_alert(api, "p", "window")["count"] == 0
    send(api, "p", "job1")  # the third event: fires only if the 2 before the kill were kept
    assert get_alert(api, "p", "window")["count"] == 1
    acts = requests.get(f"{api}/projects/p/alert-activations", timeout=10).json()["activations"]
    assert [(a["name"], a["id"]) for a in acts] == [("window", 2), ("manual", 1)], "ids are never reused"


def test_events_accepted_under_load_survive_sigkill(tocsin):
    """Every event answered 200 before the kill is counted after it."""
    api = tocsin.api
    put_alert(api, alert("p", "big", entity="*", count=99, period="1d", reset="manual"))
    with requests.Session() as s:
        for i in range(40):
            r = s.post(f"{api}/projects/p/events/failed",
                       json={"entity": {"kind": "job", "project": "p", "ids": [f"j{i}"]}}, timeout=10)
            assert r.status_code == 200
    tocsin.kill()
    tocsin.start()
    with requests.Session() as s:
        for i in range(59):
            s.post(f"{api}/projects/p/events/failed",
                   json={"entity": {"kind": "job", "project": "p", "ids": [f"k{i}"]}}, timeout=10)
    assert get_alert(api, "p", "big")["count"] == 1, "40 before + 59 after = 99 events"


def test_concurrent_threshold_crossing_fires_once(tocsin):
    api = tocsin.api
    put_alert(api, alert("p", "manual", entity="*", count=20, period="1h", reset="manual"))
    put_alert(api, alert("p", "auto", entity="*", count=50, period="1h", reset="auto"))

    def post(i):
        with requests.Session() as s:
            return s.post(f"{api}/projects/p/events/failed",
                          json={"entity": {"kind": "job", "project": "p", "ids": [f"job{i}"]}}, timeout=10).status_code

    for trial in range(3):
        requests.post(f"{api}/projects/p/alerts/manual/reset", timeout=10)
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            codes = list(pool.map(post, range(100)))
        assert codes == [200] * 100
        manual = get_alert(api, "p", "manual")
        assert (manual["state"], manual["count"]) == ("active", trial + 1), "one activation per trial"
    auto = get_alert(api, "p", "auto")
    assert auto["count"] == 6, "300 events, 50 per activation: exactly 6"
    acts = requests.get(f"{api}/projects/p/alerts/auto/activations", timeout=10).json()["activations"]
    assert len(acts) == 6 and all(a["number_of_events"] == 50 for a in acts)


def test_restart_loads_alert_files_without_resetting(tocsin_factory, tmp_path):
    alerts_dir = tmp_path / "alerts"
    alerts_dir.mkdir()
    (alerts_dir / "jobs.json").write_text(json.dumps([alert("p", "from-file", entity="job1", reset="manual")]))
    t = tocsin_factory(args=["--alerts", str(alerts_dir)])
    send(t.api, "p", "job1")
    assert get_alert(t.api, "p", "from-file")["state"] == "active"
    t.kill()
    t.start()
    assert get_alert(t.api, "p", "from-file")["state"] == "active", "an unchanged file does not reset its alert"
    shutil.rmtree(alerts_dir)


def test_a_full_disk_stops_the_store_and_a_restart_counts_every_answered_event_once(tmp_path):
    """Fail-stop: when the log cannot be written the store answers 503 (healthz too) instead of
    going on from a state the disk does not have; once space is freed and tocsin restarted,
    every event that was answered 200 is counted, exactly once."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"this test needs to mount a tmpfs (run as root): {mounted.stderr}"
    t = None
    try:
        t = Tocsin(str(mnt))
        t.log_path = str(tmp_path / "serve.log")  # the server's log is not on the small disk
        t.start()
        api = t.api
        put_alert(api, alert("p", "big", entity="*", count=99, period="1d", reset="manual"))
        # Fill the disk, then leave a few pages free: room for some events, not for 99.
        filler = mnt / "filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        size = filler.stat().st_size
        os.truncate(filler, size - 4096)
        answered, refused = 0, None
        with requests.Session() as s:
            for i in range(500):
                r = s.post(f"{api}/projects/p/events/failed",
                           json={"entity": {"kind": "job", "project": "p", "ids": [f"j{i}"]}}, timeout=10)
                if r.status_code != 200:
                    refused = r
                    break
                answered += 1
        assert refused is not None, "the disk never filled up"
        assert refused.status_code == 503 and "store failed" in refused.json()["detail"], refused.text
        assert 0 < answered < 99, answered
        assert requests.get(f"{api}/healthz", timeout=10).status_code == 503, "healthz tells the store stopped"
        # Later events are refused too: nothing is applied in memory only.
        r = requests.post(f"{api}/projects/p/events/failed",
                          json={"entity": {"kind": "job", "project": "p", "ids": ["late"]}}, timeout=10)
        assert r.status_code == 503

        filler.unlink()
        t.kill()
        t.start()
        assert get_alert(api, "p", "big")["count"] == 0
        with requests.Session() as s:
            for i in range(99 - answered - 1):
                s.post(f"{api}/projects/p/events/failed",
                       json={"entity": {"kind": "job", "project": "p", "ids": [f"k{i}"]}}, timeout=10)
        assert get_alert(api, "p", "big")["count"] == 0, "no refused event was counted"
        send(api, "p", "k-last")
        assert get_alert(api, "p", "big")["count"] == 1, f"{answered} answered before + {99 - answered} after = 99"
    finally:
        if t:
            t.stop()
        subprocess.run(["umount", "-l", str(mnt)], check=False)
