"""email-sending: through a real local SMTP server (aiosmtpd), the outbox folder, and SES (moto)."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from email.message import EmailMessage

import boto3
import pytest
from aiosmtpd.controller import Controller
from botocore.exceptions import ClientError
from job_test_support import MailServerHandler, run_job
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from service.artifacts import raise_for_aws_error
from service.jobs.registry import REGISTRY
from service.queue.errors import InvalidJobError, PermanentJobError
from service.queue.queue import QueueConfig
from service.settings import get_settings

SENDER = "Job Queue <jobs@example.com>"
PAYLOAD = {
    "to": ["Alice <alice@example.com>"],
    "cc": ["carol@example.org"],
    "bcc": ["bob@example.net"],
    "reply_to": "support@example.com",
    "subject": "Order {{ order.id }} for {{ name }}",
    "text": "Hello {{ name }}, {{ order.lines | length }} item(s): {{ order.lines | join(', ') }}.",
    "html": (
        "<p>Hello <b>{{ name }}</b></p>"
        "<ul>{% for i in order.lines %}<li>{{ i }}</li>{% endfor %}</ul>"
    ),
    "variables": {"name": "Alice <script>", "order": {"id": 42, "lines": ["tea", "cake & jam"]}},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp_server(job_settings, monkeypatch) -> Iterator[MailServerHandler]:
    """A real SMTP server on localhost, and settings that send to it."""
    handler = MailServerHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("EMAIL_BACKEND", "smtp")
    monkeypatch.setenv("EMAIL_FROM", SENDER)
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(port))
    monkeypatch.setenv("SMTP_STARTTLS", "false")
    get_settings.cache_clear()
    try:
        yield handler
    finally:
        controller.stop()
        get_settings.cache_clear()


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def assert_rendered(message: EmailMessage, job_id: str) -> None:
    """The headers and both bodies, rendered, with the HTML escaped and the Bcc hidden."""
    assert message["Subject"] == "Order 42 for Alice <script>"
    assert message["From"] == SENDER
    assert message["To"] == "Alice <alice@example.com>"
    assert message["Cc"] == "carol@example.org"
    assert message["Reply-To"] == "support@example.com"
    assert message["Bcc"] is None
    assert message["Message-ID"] == f"<{job_id}@example.com>"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert text.strip() == "Hello Alice <script>, 2 item(s): tea, cake & jam."
    assert "<b>Alice &lt;script&gt;</b>" in html
    assert "<li>cake &amp; jam</li>" in html


async def test_smtp_delivers_the_rendered_message_to_every_recipient(queue, smtp_server):
    result, job = await run_job(queue, "email-sending", PAYLOAD)

    [envelope] = smtp_server.envelopes
    assert envelope.mail_from == "jobs@example.com"
    assert sorted(envelope.rcpt_tos) == [
        "alice@example.com",
        "bob@example.net",
        "carol@example.org",
    ]
    assert_rendered(parse(envelope.original_content), job.id)
    assert result["backend"] == "smtp"
    assert result["refused"] == {}
    assert result["message_id"] == f"<{job.id}@example.com>"
    assert job.progress == 100


async def test_a_display_name_with_a_comma_is_still_one_address(queue, smtp_server):
    data = {**PAYLOAD, "to": ['"Doe, Jane" <jane@example.com>'], "cc": [], "bcc": []}
    await run_job(queue, "email-sending", data)
    [envelope] = smtp_server.envelopes
    assert envelope.rcpt_tos == ["jane@example.com"]
    assert parse(envelope.original_content)["To"] == '"Doe, Jane" <jane@example.com>'


async def test_smtp_partly_refused_recipients_are_reported_not_retried(queue, smtp_server):
    result, _ = await run_job(queue, "email-sending", {**PAYLOAD, "cc": ["reject@example.org"]})
    assert [e.rcpt_tos for e in smtp_server.envelopes] == [["alice@example.com", "bob@example.net"]]
    assert result["refused"] == {"reject@example.org": "550 5.1.1 no such user"}


async def test_smtp_5xx_for_every_recipient_fails_permanently(queue, smtp_server):
    data = {**PAYLOAD, "to": ["reject@example.com"], "cc": [], "bcc": []}
    with pytest.raises(PermanentJobError, match="550"):
        await run_job(queue, "email-sending", data)
    assert smtp_server.envelopes == []


async def test_smtp_4xx_is_a_retryable_failure(queue, smtp_server):
    data = {**PAYLOAD, "to": ["later@example.com"], "cc": [], "bcc": []}
    with pytest.raises(Exception, match="451") as caught:
        await run_job(queue, "email-sending", data)
    assert not isinstance(caught.value, PermanentJobError)


async def test_smtp_server_down_is_a_retryable_failure(queue, job_settings, monkeypatch):
    monkeypatch.setenv("EMAIL_BACKEND", "smtp")
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(free_port()))  # nothing listens there
    get_settings.cache_clear()
    with pytest.raises(ConnectionRefusedError):
        await run_job(queue, "email-sending", PAYLOAD)


async def test_file_backend_writes_the_message_to_the_outbox(queue, job_settings, monkeypatch):
    monkeypatch.setenv("EMAIL_FROM", SENDER)
    get_settings.cache_clear()
    result, job = await run_job(queue, "email-sending", PAYLOAD)
    path = job_settings.email_outbox_dir / f"{job.id}.eml"
    assert result["location"] == path.resolve().as_uri()
    assert_rendered(parse(path.read_bytes()), job.id)


async def test_header_injection_through_a_variable_stays_in_the_subject(queue, job_settings):
    data = {
        **PAYLOAD,
        "subject": "Hi {{ name }}",
        "variables": {**PAYLOAD["variables"], "name": "x\r\nBcc: victim@example.com"},
    }
    result, job = await run_job(queue, "email-sending", data)
    message = parse((job_settings.email_outbox_dir / f"{job.id}.eml").read_bytes())
    assert message["Subject"] == "Hi x Bcc: victim@example.com"
    assert message["Bcc"] is None
    assert result["subject"] == "Hi x Bcc: victim@example.com"


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{{ missing }}", "UndefinedError"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "SecurityError"),
        (
            "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}",
            "TemplateTooBigError",
        ),
    ],
)
async def test_template_errors_fail_permanently(queue, job_settings, template, error):
    with pytest.raises(PermanentJobError, match=error):
        await run_job(queue, "email-sending", {**PAYLOAD, "text": template})


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"to": ["not-an-address"]}, "data.to"),
        ({"cc": ["a@b"]}, "data.cc"),
        ({"bcc": ["x@example.com\r\nSubject: hi"]}, "data.bcc"),
        ({"to": []}, "data.to"),
        # Two addresses in one entry: the header would name both, the envelope only the first.
        ({"to": ["alice@example.com, eve@example.net"]}, "data.to"),
        ({"cc": ["Carol <carol@example.org> eve@example.net"]}, "data.cc"),
        ({"reply_to": "@example.com"}, "data.reply_to"),
        ({"html": "{% for x in %}"}, "data.html"),
        ({"text": None, "html": None}, "data"),
        ({"to": [f"u{i}@example.com" for i in range(49)]}, "data"),
    ],
)
async def test_bad_payload_is_rejected_at_enqueue_naming_the_field(queue, change, field):
    with pytest.raises(InvalidJobError) as caught:
        REGISTRY.get("email-sending").build_spec({**PAYLOAD, **change}, QueueConfig())
    assert field in [error["field"] for error in caught.value.details["errors"]]


@pytest.fixture
def ses(job_settings, monkeypatch) -> Iterator:
    """SES under moto, with the sender's address verified."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("EMAIL_BACKEND", "ses")
    monkeypatch.setenv("EMAIL_FROM", SENDER)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    get_settings.cache_clear()
    with mock_aws():
        client = boto3.client("ses", region_name="us-east-1")
        yield client
    get_settings.cache_clear()


async def test_ses_sends_the_raw_message_to_every_recipient(queue, ses):
    ses.verify_email_identity(EmailAddress="jobs@example.com")
    result, job = await run_job(queue, "email-sending", PAYLOAD)

    sent = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages
    assert len(sent) == 1
    assert sent[0].id == result["provider_message_id"]
    # Our Destinations come first; moto then appends the To/Cc header addresses again.
    assert sent[0].destinations[:3] == ["alice@example.com", "carol@example.org", "bob@example.net"]
    assert sent[0].source == SENDER
    assert_rendered(parse(sent[0].raw_data.encode()), job.id)
    assert result["backend"] == "ses"


async def test_ses_rejection_of_an_unverified_sender_fails_permanently(queue, ses):
    with pytest.raises(PermanentJobError, match="MessageRejected"):
        await run_job(queue, "email-sending", PAYLOAD)


@pytest.mark.parametrize(
    ("code", "status"), [("Throttling", 400), ("ServiceUnavailable", 503), ("Anything", 500)]
)
def test_aws_throttling_and_5xx_are_retryable(code, status):
    error = ClientError(
        {"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "SendRawEmail",
    )
    with pytest.raises(RuntimeError, match="try later") as caught:
        raise_for_aws_error(error, "sending")
    assert not isinstance(caught.value, PermanentJobError)


async def test_ses_without_a_configured_sender_fails_at_once_saying_so(queue, ses, monkeypatch):
    # What a stack deployed without `emailFrom` runs: EMAIL_BACKEND=ses, EMAIL_FROM unset.
    monkeypatch.delenv("EMAIL_FROM")
    get_settings.cache_clear()
    with pytest.raises(PermanentJobError, match="no email sender is configured") as caught:
        await run_job(queue, "email-sending", PAYLOAD)
    assert "EMAIL_FROM" in str(caught.value)
    assert ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages == []
