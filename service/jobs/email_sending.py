"""`email-sending`: render a message from client-supplied templates and send it.

Templates come from API clients, so they run in Jinja2's SandboxedEnvironment (no attribute
access to internals, bounded `range`), in a child process that is killed at the render deadline
or when the job is cancelled or times out: a thread cannot be stopped, and nested loops with
empty bodies (`{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}`)
produce no output to check a deadline at. The HTML body is autoescaped; the subject and text
body are not (escaping `&` in plain text would be wrong). A variable the template uses but the
job does not give is an error, not an empty string.

With EMAIL_BACKEND=ses a sender must be configured (EMAIL_FROM, a verified SES identity); without
one an email job fails at once with a permanent error saying so, and nothing else is affected.

Addresses are checked at enqueue (a bad one is a 422); at send time a recipient the server
refuses with 5xx fails the job at once, a 4xx or a network error retries.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import time
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, parseaddr
from multiprocessing.connection import Connection
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.email_backends import OutgoingEmail, SentEmail, get_email_backend
from service.jobs.registry import JobTypeDefaults, job_type
from service.queue.errors import PermanentJobError
from service.queue.job_context import JobContext
from service.queue.options import Backoff
from service.settings import Settings, get_settings

# SES accepts at most 50 recipients per message; the same cap keeps SMTP sends bounded.
MAX_RECIPIENTS = 50
# A pragmatic addr-spec: dot-atom local part, a domain with at least one dot and no empty
# labels. Stricter than RFC 5322 on purpose (no quoted local parts, no IP literals).
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
_ADDRESS = re.compile(rf"^{_LOCAL}@{_DOMAIN}$")

# Bounds on one template's rendering (see render_bounded): far above any real email, far
# below what would stall a worker.
MAX_RENDERED_CHARS = 2_000_000
RENDER_DEADLINE_SECONDS = 10.0

# Children are forked from a forkserver, a clean process started once with this module loaded:
# forking the worker itself would copy its threads' locks mid-use; spawning would import
# everything again for each message (about a second), where a fork from the server takes ms.
# "__main__" too: a child then finds the main module (e.g. the `taskiq` or `jobqueue` script)
# already loaded in the server instead of running it again on every start.
_RENDERERS = multiprocessing.get_context("forkserver")
_RENDERERS.set_forkserver_preload(["__main__", __name__])

_TEXT_ENV = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined)
_HTML_ENV = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined)


def check_address(value: str) -> str:
    """`value` if it is `user@example.com` or `Name <user@example.com>`; ValueError otherwise."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"invalid email address {value!r}")
    # parseaddr reads only the first of "a@x.com, b@y.com": the header would then name both
    # while the envelope carried one. Each entry must be exactly one address.
    parsed = getaddresses([value])
    if len(parsed) != 1:
        raise ValueError(f"give one email address per entry, not {value!r}")
    address = parsed[0][1]
    if not address or not _ADDRESS.match(address) or len(address) > 254:
        raise ValueError(f"invalid email address {value!r}")
    return value.strip()


def _check_template(env: SandboxedEnvironment, source: str | None) -> str | None:
    if source is not None:
        try:
            env.parse(source)
        except TemplateError as exc:
            raise ValueError(f"template does not parse: {exc}") from exc
    return source


class EmailPayload(BaseModel):
    """Recipients, templates (Jinja2) and the variables they are rendered with."""

    model_config = ConfigDict(extra="forbid")

    to: list[str] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    cc: list[str] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    bcc: list[str] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    reply_to: str | None = None
    subject: str = Field(min_length=1, max_length=998)
    text: str | None = Field(default=None, max_length=1_000_000)
    html: str | None = Field(default=None, max_length=1_000_000)
    variables: dict[str, Any] = Field(default_factory=dict)

    @field_validator("to", "cc", "bcc")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        return [check_address(value) for value in values]

    @field_validator("reply_to")
    @classmethod
    def _reply_to(cls, value: str | None) -> str | None:
        return None if value is None else check_address(value)

    @field_validator("subject", "text")
    @classmethod
    def _text_template(cls, value: str | None) -> str | None:
        return _check_template(_TEXT_ENV, value)

    @field_validator("html")
    @classmethod
    def _html_template(cls, value: str | None) -> str | None:
        return _check_template(_HTML_ENV, value)

    @model_validator(mode="after")
    def _body_and_limits(self) -> EmailPayload:
        if self.text is None and self.html is None:
            raise ValueError("give a text or an html body (or both)")
        if len(self.to) + len(self.cc) + len(self.bcc) > MAX_RECIPIENTS:
            raise ValueError(f"at most {MAX_RECIPIENTS} recipients in all")
        return self


class RenderedEmail(BaseModel):
    """The rendered subject and bodies."""

    subject: str
    text: str | None
    html: str | None


class EmailResult(BaseModel):
    """How the message left."""

    message_id: str
    subject: str
    backend: str
    provider_message_id: str | None
    location: str | None
    accepted: list[str]
    refused: dict[str, str]


class TemplateTooBigError(Exception):
    """A template's output grew past the cap, or rendering ran past its deadline."""


def render_bounded(env: SandboxedEnvironment, source: str, variables: dict[str, Any]) -> str:
    """Render chunk by chunk, stopping a template that loops its way to a huge output.

    Rendering runs in a thread, which a job timeout cannot stop: without these bounds a
    client's `{% for i in range(99999) %}{% for j in range(99999) %}` would burn a CPU long
    after its job failed.
    """
    deadline = time.monotonic() + RENDER_DEADLINE_SECONDS
    parts: list[str] = []
    size = 0
    for chunk in env.from_string(source).generate(variables):
        size += len(chunk)
        if size > MAX_RENDERED_CHARS or time.monotonic() > deadline:
            raise TemplateTooBigError(
                f"output over {MAX_RENDERED_CHARS} characters or {RENDER_DEADLINE_SECONDS} s"
            )
        parts.append(chunk)
    return "".join(parts)


def render(payload: EmailPayload) -> RenderedEmail:
    """Render the templates; PermanentJobError for a template error (a retry renders the same)."""
    variables = payload.variables
    try:
        subject = render_bounded(_TEXT_ENV, payload.subject, variables)
        text = None if payload.text is None else render_bounded(_TEXT_ENV, payload.text, variables)
        html = None if payload.html is None else render_bounded(_HTML_ENV, payload.html, variables)
    except Exception as exc:  # SecurityError, UndefinedError, too big, or the template's bug
        raise PermanentJobError(f"template rendering failed: {type(exc).__name__}: {exc}") from exc
    # A header is one line: variables with newlines must not inject headers.
    return RenderedEmail(subject=" ".join(subject.split()), text=text, html=html)


def _render_in_child(payload_json: str, results: Connection) -> None:
    """The child process's work: render and send back the result or the permanent error."""
    try:
        results.send(("ok", render(EmailPayload.model_validate_json(payload_json)).model_dump()))
    except PermanentJobError as exc:
        results.send(("error", str(exc)))
    finally:
        results.close()


async def _readable(connection: Connection) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(connection.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(connection.fileno())


async def render_isolated(
    payload: EmailPayload, deadline_seconds: float = RENDER_DEADLINE_SECONDS
) -> RenderedEmail:
    """Render in a child process that is killed at `deadline_seconds`, or as soon as the
    awaiting job is cancelled (its timeout, a cancel request, shutdown): CPU is never spent
    on a template after its job has ended."""
    results, child_end = _RENDERERS.Pipe(duplex=False)
    child = _RENDERERS.Process(
        target=_render_in_child, args=(payload.model_dump_json(), child_end), daemon=True
    )
    child.start()
    child_end.close()  # the child holds its own copy; EOF then means the child is gone
    try:
        await asyncio.wait_for(_readable(results), deadline_seconds)
        kind, value = results.recv()
    except TimeoutError:
        raise PermanentJobError(
            f"template rendering failed: TemplateTooBigError: still rendering after "
            f"{deadline_seconds:g} s (the limit)"
        ) from None
    except EOFError:
        child.join(timeout=1)
        raise RuntimeError(f"the rendering process died (exit code {child.exitcode})") from None
    finally:
        child.kill()  # a no-op once it has exited
        child.join(timeout=1)
        results.close()
    if kind == "error":
        raise PermanentJobError(value)
    return RenderedEmail.model_validate(value)


def require_sender(settings: Settings) -> str:
    """The configured sender; PermanentJobError when SES has none it could send from.

    Deploys need no sender (email jobs are optional): the stack sets EMAIL_BACKEND=ses always,
    and EMAIL_FROM only when the operator named one. The default `jobqueue@localhost` can never
    be a verified SES identity, so it means "not configured".
    """
    sender = settings.email_from
    domain = parseaddr(sender)[1].rpartition("@")[2].lower()
    if settings.email_backend == "ses" and (not domain or domain == "localhost"):
        raise PermanentJobError(
            f"no email sender is configured (EMAIL_FROM is {sender!r}): set EMAIL_FROM to an "
            "address of a verified SES identity (the stack's `emailFrom`) to send email jobs"
        )
    return sender


def build_message(
    payload: EmailPayload, rendered: RenderedEmail, sender: str, message_id: str
) -> EmailMessage:
    """The MIME message: text, html, or multipart/alternative with both."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(payload.to)
    if payload.cc:
        message["Cc"] = ", ".join(payload.cc)
    if payload.reply_to:
        message["Reply-To"] = payload.reply_to
    message["Subject"] = rendered.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = message_id
    if rendered.text is not None:
        message.set_content(rendered.text)
        if rendered.html is not None:
            message.add_alternative(rendered.html, subtype="html")
    else:
        message.set_content(rendered.html or "", subtype="html")
    return message


def envelope_recipients(payload: EmailPayload) -> list[str]:
    """Bare addresses of every To, Cc and Bcc recipient."""
    return [parseaddr(value)[1] for value in (*payload.to, *payload.cc, *payload.bcc)]


@job_type(
    "email-sending",
    EmailPayload,
    defaults=JobTypeDefaults(
        attempts=5,
        # Greylisting servers ask senders to come back after minutes; 30 s doubling to 10 min
        # spans the usual windows within five attempts.
        backoff=Backoff(type="exponential", delay_seconds=30, max_delay_seconds=600),
        timeout_seconds=60,
        # Providers rate-limit senders (SES's default is 14 messages/s); a fleet-wide cap
        # keeps a bulk enqueue from turning into a wall of throttling errors.
        concurrency=10,
    ),
)
async def send_email(payload: EmailPayload, job: JobContext) -> EmailResult:
    """Render the templates, build the message and send it through the configured backend."""
    sender = require_sender(get_settings())
    rendered = await render_isolated(payload)
    await job.progress(30, "rendered")
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    # Stable across retries: a receiver that sees the same Message-ID twice can drop the copy.
    message_id = f"<{job.job_id}@{domain}>"
    message = build_message(payload, rendered, sender, message_id)
    email = OutgoingEmail(message, sender, envelope_recipients(payload), job.job_id)
    sent: SentEmail = await get_email_backend().send(email)
    await job.progress(100, f"sent to {len(sent.accepted)} recipient(s) via {sent.backend}")
    return EmailResult(
        message_id=message_id,
        subject=rendered.subject,
        backend=sent.backend,
        provider_message_id=sent.provider_message_id,
        location=sent.location,
        accepted=sent.accepted,
        refused=sent.refused,
    )
