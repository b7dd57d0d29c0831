"""The SAM template under the SAM CLI's own local emulation, against moto on loopback.

`sam local start-api` serves the API function behind SAM's API Gateway emulation (payload format
2.0) and MLRun's own client talks to it; `sam local invoke` runs the evaluator on an SQS batch
and the notifier on the SNS record that the API published; `sam local start-lambda` runs the
scheduled sweep. Every function runs in a container of the base image tests/aws/sam/setup.sh
built, on Docker's host network: all traffic stays on 127.0.0.1.

Needs: TOCSIN_MOTO_URL (moto, started by tests/run), SAM_VENV (the SAM CLI's venv), the functions
built by `sam build` into .aws-sam/build, and the `create-stack` example built.
"""

import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import mlrun
import mlrun.alerts
import mlrun.common.schemas.alert as ao
import mlrun.errors
import pytest
import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../.."))
MOTO = os.environ["TOCSIN_MOTO_URL"]
SAM = os.path.join(os.environ["SAM_VENV"], "bin", "sam")
TEMPLATE = os.path.join(ROOT, ".aws-sam", "build", "template.yaml")
CREATE_STACK = os.environ.get("TOCSIN_CREATE_STACK", os.path.join(ROOT, "target/debug/examples/create-stack"))
ARCH = {"x86_64": "x86_64", "aarch64": "arm64"}[os.uname().machine]
AWS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
       "AWS_DEFAULT_REGION": "us-east-1"}
# Every `sam local` timing line ("REPORT ... Init Duration: ... Duration: ..."), for BENCHMARKS.md.
TIMINGS = os.environ.get("TOCSIN_SAM_TIMINGS")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def boto(service):
    return boto3.client(service, endpoint_url=MOTO, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


class Receiver:
    """A real HTTP listener on loopback playing the webhook: records (path, key, body)."""

    def __init__(self):
        self.seen = []
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with outer.cond:
                    outer.seen.append({"path": self.path, "key": self.headers.get("idempotency-key"),
                                       "body": json.loads(body or b"null")})
                    outer.cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, n, timeout=30):
        with self.cond:
            self.cond.wait_for(lambda: len(self.seen) >= n, timeout)
            return list(self.seen)


def record_timings(text):
    if TIMINGS:
        with open(TIMINGS, "a") as f:
            for line in text.splitlines():
                if "REPORT RequestId" in line:
                    f.write(line.strip() + "\n")


def make_stack():
    """A table, topic and queue on moto (the create-stack example), and an SQS queue subscribed
    to the topic that shows what SNS published."""
    table = f"sam-{uuid.uuid4().hex[:8]}"
    out = subprocess.run([CREATE_STACK, "--env-json"],
                         env={**os.environ, **AWS, "AWS_ENDPOINT_URL": MOTO, "TOCSIN_TABLE": table},
                         capture_output=True, text=True, check=True).stdout
    env = json.loads(out)["Parameters"]
    sqs, sns = boto("sqs"), boto("sns")
    observer = sqs.create_queue(QueueName=f"{table}-observer")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=observer, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=env["TOCSIN_TOPIC_ARN"], Protocol="sqs", Endpoint=arn)
    work = tempfile.mkdtemp(prefix="tocsin-sam-")
    # Variables for every function (only those the template declares can be set this way).
    env_file = os.path.join(work, "env.json")
    with open(env_file, "w") as f:
        json.dump({"Parameters": env, "NotifierFunction": {"TOCSIN_SWEEP_AFTER_SECS": "0"}}, f)
    return {"env": env, "observer": observer, "env_file": env_file, "work": work}


@pytest.fixture(scope="module")
def stack():
    return make_stack()


def drain(queue_url):
    """Every message waiting in a queue: (message id, body)."""
    sqs, got = boto("sqs"), []
    while True:
        msgs = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            return got
        for m in msgs:
            got.append((m["MessageId"], m["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


def sam_args(stack):
    return ["--template", TEMPLATE, "--env-vars", stack["env_file"], "--skip-pull-image",
            "--docker-network", "host",
            "--parameter-overrides", f"Architecture={ARCH} EndpointUrl={MOTO}"]


def sam_env():
    return {**os.environ, **AWS, "SAM_CLI_TELEMETRY": "0",
            "PATH": os.path.join(os.environ["SAM_VENV"], "bin") + os.pathsep + os.environ["PATH"]}


def invoke(stack, function, event):
    """`sam local invoke FUNCTION -e EVENT`: the function's answer, as JSON."""
    path = os.path.join(stack["work"], f"{function}-{uuid.uuid4().hex[:6]}.json")
    with open(path, "w") as f:
        json.dump(event, f)
    done = subprocess.run([SAM, "local", "invoke", function, "-e", path, *sam_args(stack)],
                          cwd=ROOT, env=sam_env(), capture_output=True, text=True, timeout=180)
    record_timings(done.stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [l for l in done.stdout.splitlines() if l.strip()]
    assert lines, f"no answer from {function}: {done.stderr[-3000:]}"
    return json.loads(lines[-1])


class Server:
    """A `sam local start-api` or `start-lambda` process, stopped at the end."""

    def __init__(self, stack, command, ready_path, *extra):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(stack["work"], f"{command}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [SAM, "local", command, "--host", "127.0.0.1", "--port", str(self.port),
             "--warm-containers", "LAZY", *extra, *sam_args(stack)],
            cwd=ROOT, env=sam_env(), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.text()
            try:
                if ready_path is None:  # listening is enough; nothing reaches a function
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                else:
                    requests.get(self.url + ready_path, timeout=1)
                return
            except (OSError, requests.RequestException):
                time.sleep(0.3)
        raise AssertionError("sam local did not start: " + self.text())

    def text(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()[-4000:]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        record_timings(self.text())


@pytest.fixture(scope="module")
def api(stack):
    # The template's authorizer (IAM, or JWT by AuthMode) is API Gateway's, which SAM does not
    # emulate (it runs Lambda authorizers only): requests reach the function as if authorized.
    server = Server(stack, "start-api", "/api/v1/healthz", "--disable-authorizer")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def webhook_alert(project, name, receiver, count, reset):
    return mlrun.alerts.alert.AlertConfig(
        project=project.name, name=name, summary="Job {{entity}} failed", severity=ao.AlertSeverity.HIGH,
        reset_policy=reset,
        entities=ao.EventEntities(kind=ao.EventEntityKind.JOB, project=project.name, ids=["*"]),
        trigger=ao.AlertTrigger(events=[ao.EventKind.FAILED]),
        criteria=ao.AlertCriteria(count=count, period="10m"),
        notifications=[ao.AlertNotification(notification=mlrun.model.Notification(
            kind="webhook", name="hook", message="failed", severity="warning", when=["now"], condition="failed",
            secret_params={"url": f"{receiver.url}/hook"}).to_dict())],
    )


def fail(project, entity):
    ev = ao.Event(kind=ao.EventKind.FAILED,
                  entity=ao.EventEntities(kind=ao.EventEntityKind.JOB, project=project.name, ids=[entity]),
                  value_dict={"error": "OOM"})
    mlrun.get_run_db().generate_event(ao.EventKind.FAILED, ev, project=project.name)


@pytest.fixture(scope="module")
def project(api):
    mlrun.mlconf.dbpath = api.url
    mlrun.db.get_run_db(api.url, force_reconnect=True)
    return mlrun.projects.MlrunProject.from_dict({"metadata": {"name": "fraud"}, "spec": {}})


def test_the_mlrun_client_through_sams_api_gateway(project, receiver):
    stored = project.store_alert_config(webhook_alert(project, "job-failures", receiver, 2, "manual"))
    assert (stored.name, stored.state, stored.count) == ("job-failures", "inactive", 0)
    fail(project, "train-1")
    fail(project, "train-2")
    got = project.get_alert_config("job-failures")
    assert (got.state, got.count) == ("active", 1), "read right after the events, through API Gateway"
    activations = mlrun.get_run_db().list_alert_activations(project=project.name)
    assert [(a.name, a.number_of_events, a.entity_id) for a in activations] == [("job-failures", 2, "train-2")]
    project.reset_alert_config(alert_name="job-failures")
    assert project.get_alert_config("job-failures").state == "inactive"
    project.delete_alert_config(alert_name="job-failures")
    with pytest.raises(mlrun.errors.MLRunNotFoundError):
        project.get_alert_config("job-failures")


def test_the_notifier_delivers_what_the_api_published(stack, project, receiver):
    drain(stack["observer"])
    project.store_alert_config(webhook_alert(project, "deliveries", receiver, 1, "auto"))
    fail(project, "train-3")
    published = drain(stack["observer"])
    assert len(published) == 1, published
    envelope = json.loads(published[0][1])
    message = json.loads(envelope["Message"])
    assert message["activation"]["name"] == "deliveries"
    before = len(receiver.seen)
    answer = invoke(stack, "NotifierFunction",
                    {"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0",
                                  "Sns": {"Type": "Notification", "MessageId": envelope["MessageId"],
                                          "TopicArn": stack["env"]["TOCSIN_TOPIC_ARN"],
                                          "Message": envelope["Message"], "Timestamp": envelope["Timestamp"],
                                          "MessageAttributes": envelope.get("MessageAttributes", {})}}]})
    assert answer == {"delivered": 1}
    seen = receiver.wait_for(before + 1)
    hook = seen[before]
    assert hook["path"] == "/hook"
    assert hook["key"] == f"{message['activation']['id']}:hook", "the delivery key"
    got = requests.get(f"{project_api(project)}/alert-activations/{message['activation']['id']}").json()
    assert [d["status"] for d in got["deliveries"]] == ["sent"]


def project_api(project):
    return f"{mlrun.mlconf.dbpath}/api/v1/projects/{project.name}"


def test_the_evaluator_reports_a_broken_message_as_a_partial_batch_failure(stack, project, receiver):
    project.store_alert_config(webhook_alert(project, "queued", receiver, 3, "manual"))
    events = [{"kind": "failed", "entity": {"kind": "job", "project": project.name, "ids": [f"q-{i}"]}}
              for i in range(3)]
    answer = requests.post(f"{project_api(project)}/events", json={"events": events}).json()
    assert answer == {"accepted": 3, "queued": True}
    queued = drain(stack["env"]["TOCSIN_QUEUE_URL"])
    assert [len(json.loads(body)["events"]) for _, body in queued] == [3], "one message carries the batch"
    records = [{"messageId": mid, "receiptHandle": "r", "body": body, "attributes": {}, "messageAttributes": {},
                "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                "awsRegion": "us-east-1"} for mid, body in queued]
    records.insert(1, {**records[0], "messageId": "broken-1", "body": "{not an event"})
    answer = invoke(stack, "EvaluatorFunction", {"Records": records})
    assert answer == {"batchItemFailures": [{"itemIdentifier": "broken-1"}]}
    got = project.get_alert_config("queued")
    assert (got.state, got.count) == ("active", 1), "the good message's three events were counted"


def test_the_scheduled_sweep_through_start_lambda(stack, project, receiver):
    # An activation whose notification is still pending (nobody delivered it yet).
    drain(stack["observer"])
    project.store_alert_config(webhook_alert(project, "swept", receiver, 1, "auto"))
    fail(project, "train-9")
    published = [json.loads(json.loads(b)["Message"])["activation"]["name"] for _, b in drain(stack["observer"])]
    assert "swept" in published, published
    # An absence alert on a job that never reports (a Tocsin extension: through the API, not
    # MLRun's client): the scheduled run is the clock that fires it.
    silent = webhook_alert(project, "silent-job", receiver, 1, "auto").to_dict()
    silent["entities"]["ids"] = ["sam-nightly"]
    silent["criteria"] = {"absent": "2s"}
    stored = requests.put(f"{project_api(project)}/alerts/silent-job", json=silent)
    assert stored.status_code == 200, stored.text
    time.sleep(3)
    server = Server(stack, "start-lambda", "/")
    try:
        lam = boto3.client("lambda", endpoint_url=server.url, region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test")
        out = lam.invoke(FunctionName="NotifierFunction", Payload=b"{}")
        answer = json.loads(out["Payload"].read())
    finally:
        server.stop()
    assert answer["republished"] >= 1, answer
    assert answer["absences"] == 1, answer
    republished = [json.loads(json.loads(b)["Message"])["activation"] for _, b in drain(stack["observer"])]
    assert "swept" in [a["name"] for a in republished]
    # Published when it fired, and perhaps again by the same run's sweep (it is still pending,
    # and this stack sweeps at once): one activation either way.
    absent = {(a["id"], a["entity_id"], a["number_of_events"]) for a in republished if a["name"] == "silent-job"}
    assert [(e, n) for _, e, n in absent] == [("sam-nightly", 0)], absent
