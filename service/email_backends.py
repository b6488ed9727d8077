"""Where outgoing email goes: an outbox folder (local default), SMTP, or Amazon SES.

Every backend sends a fully built MIME message, so what a test reads from the outbox is what
SMTP or SES would have carried. Failures are classified for the queue: a 4xx SMTP reply,
throttling or a network error is retryable (a plain exception); a 5xx reply or a rejected
recipient is a PermanentJobError.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, SecretStr

from service.artifacts import raise_for_aws_error, write_atomic
from service.queue.errors import PermanentJobError
from service.settings import Settings, get_settings

if TYPE_CHECKING:
    from mypy_boto3_ses import SESClient

# SMTP replies from 500 up are permanent (RFC 5321 §4.2.1); 4xx mean "try again later".
SMTP_PERMANENT = 500


@dataclass(frozen=True)
class OutgoingEmail:
    """A built message and its envelope (Bcc recipients are in the envelope only)."""

    message: EmailMessage
    sender: str
    recipients: list[str]
    # Used to name the outbox file; stable across retries so a retry replaces, not duplicates.
    name: str = "message"


class SentEmail(BaseModel):
    """What a backend did with a message."""

    backend: str
    provider_message_id: str | None = None
    location: str | None = None
    accepted: list[str]
    refused: dict[str, str] = {}


class EmailBackend(Protocol):
    """Sends one message."""

    async def send(self, email: OutgoingEmail) -> SentEmail:
        """Deliver `email`; PermanentJobError for a failure a retry cannot fix."""


@dataclass(frozen=True)
class FileEmailBackend:
    """Writes each message as an .eml file (RFC 5322 bytes) to a folder."""

    outbox: Path

    async def send(self, email: OutgoingEmail) -> SentEmail:
        """Write `<outbox>/<name>.eml`."""
        # The name is a job id; anything but safe characters is replaced so it stays one file.
        name = re.sub(r"[^A-Za-z0-9._-]", "_", email.name).lstrip(".") or "message"
        path = self.outbox.expanduser().resolve() / f"{name}.eml"
        await asyncio.to_thread(write_atomic, path, email.message.as_bytes())
        return SentEmail(backend="file", location=path.as_uri(), accepted=email.recipients)


@dataclass(frozen=True)
class SmtpEmailBackend:
    """Sends through an SMTP server (smtplib, in a thread)."""

    host: str
    port: int
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    starttls: bool = True
    timeout_seconds: float = 20.0

    async def send(self, email: OutgoingEmail) -> SentEmail:
        """Send; some recipients refused is still a send (retrying would duplicate it to the
        others), so they are reported, not raised."""
        try:
            refused = await asyncio.to_thread(self._send_sync, email)
        except smtplib.SMTPRecipientsRefused as exc:
            raise _classify_refusal(exc) from exc
        except smtplib.SMTPAuthenticationError:
            # 535 is a 5xx, but it means our credentials, not the message: retrying gives the
            # operator the backoff window to fix them instead of dropping the mail.
            raise
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= SMTP_PERMANENT:
                raise PermanentJobError(
                    f"SMTP server refused the message: {exc.smtp_code} {_text(exc.smtp_error)}"
                ) from exc
            raise
        accepted = [r for r in email.recipients if r not in refused]
        return SentEmail(
            backend="smtp",
            accepted=accepted,
            refused={r: f"{code} {_text(msg)}" for r, (code, msg) in refused.items()},
        )

    def _send_sync(self, email: OutgoingEmail) -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_seconds) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username and self.password is not None:
                smtp.login(self.username, self.password.get_secret_value())
            return smtp.send_message(email.message, email.sender, email.recipients)


def _text(raw: bytes | str) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


def _classify_refusal(exc: smtplib.SMTPRecipientsRefused) -> Exception:
    reasons = "; ".join(f"{r}: {code} {_text(msg)}" for r, (code, msg) in exc.recipients.items())
    if all(code >= SMTP_PERMANENT for code, _ in exc.recipients.values()):
        return PermanentJobError(f"every recipient was refused: {reasons}")
    return RuntimeError(f"recipients temporarily refused: {reasons}")


class SesEmailBackend:
    """Sends through Amazon SES (SendRawEmail, so Cc/Bcc/Reply-To and HTML all carry)."""

    def __init__(self, client: SESClient) -> None:
        self.client = client

    async def send(self, email: OutgoingEmail) -> SentEmail:
        """Send; throttling/network errors retry, rejections (unverified sender...) do not."""
        try:
            reply = await asyncio.to_thread(
                self.client.send_raw_email,
                Source=email.sender,
                Destinations=email.recipients,
                RawMessage={"Data": email.message.as_bytes()},
            )
        except (ClientError, BotoCoreError) as exc:
            raise_for_aws_error(exc, "sending email through SES")
        return SentEmail(
            backend="ses", provider_message_id=reply["MessageId"], accepted=email.recipients
        )


def email_backend_from(settings: Settings) -> EmailBackend:
    """The backend EMAIL_BACKEND names, configured from the settings."""
    if settings.email_backend == "smtp":
        return SmtpEmailBackend(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            timeout_seconds=settings.smtp_timeout_seconds,
        )
    if settings.email_backend == "ses":
        # boto3 costs about a second to import; processes that never use SES skip it.
        import boto3

        return SesEmailBackend(boto3.client("ses", region_name=settings.aws_region))
    return FileEmailBackend(settings.email_outbox_dir)


def get_email_backend() -> EmailBackend:
    """The process's email backend, from the current settings."""
    return email_backend_from(get_settings())
