"""Email notifications through a real SMTP server."""

from helpers import alert, put_alert, send, wait_delivered


def test_email_arrives_readable_in_text_and_html(tocsin_factory, smtp):
    t = tocsin_factory(env={
        "TOCSIN_SMTP__HOST": "127.0.0.1", "TOCSIN_SMTP__PORT": str(smtp.port), "TOCSIN_SMTP__TLS": "none",
        "TOCSIN_SMTP__FROM": "Tocsin <alerts@example.com>",
    })
    note = {"notification": {"kind": "email", "name": "oncall", "message": "{{count}} failures of {{entity}}",
                             "params": {"email_addresses": ["ml-oncall@example.com", "lead@example.com"]}}}
    put_alert(t.api, alert("p", "jobs", entity="train", count=2, period="1h", notifications=[note]))
    send(t.api, "p", "train", values={"error": "<OOM> & more"})
    send(t.api, "p", "train", values={"error": "<OOM> & more"})
    mail = smtp.wait_for(1)[0]
    assert mail["from"] == "alerts@example.com"
    assert sorted(mail["to"]) == ["lead@example.com", "ml-oncall@example.com"]
    msg = mail["message"]
    assert msg["Subject"] == "[medium] jobs: 2 failures of train"
    assert msg["Message-ID"].endswith("@tocsin>")
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in msg.walk() if not p.is_multipart()}
    assert "Project: p" in parts["text/plain"] and "error: <OOM> & more" in parts["text/plain"]
    assert "&lt;OOM&gt; &amp; more" in parts["text/html"] and "<OOM>" not in parts["text/html"]
    act = wait_delivered(t.api, "p")
    assert act["deliveries"][0]["status"] == "sent"
    assert act["notifications"] == [{"kind": "mail", "err": None, "summary": {"failed": 0, "succeeded": 1}}]


def test_email_without_smtp_is_recorded_as_not_configured(tocsin):
    note = {"notification": {"kind": "email", "name": "oncall", "params": {"email_addresses": "a@example.com"}}}
    put_alert(tocsin.api, alert("p", "jobs", entity="train", notifications=[note]))
    send(tocsin.api, "p", "train")
    d = wait_delivered(tocsin.api, "p")["deliveries"][0]
    assert d["status"] == "failed" and "not configured" in d["error"] and d["attempts"] == 1
