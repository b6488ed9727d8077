"""Checks on a request before any route sees it: credentials never in the URL, bodies in UTF-8.

An API key in the query string is refused (400) on every path, and scrubbed from the access log
line uvicorn writes for that refused request: URLs end up in logs, proxies and browser history,
so a key must travel in a header. JSON bodies must be UTF-8 (RFC 8259 §8.1): Python's JSON
parser would otherwise guess UTF-16 or UTF-32 from the bytes and accept them.
"""

from __future__ import annotations

import codecs
import logging
import re
from email.message import Message as MimeHeader

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import ApiError
from service.api.refusals import call_refusing, refuse

# Query parameter names that carry credentials in the conventions clients tend to copy.
CREDENTIAL_PARAMS = frozenset(
    {"api_key", "apikey", "api-key", "x-api-key", "key", "token", "access_token", "auth",
     "authorization", "bearer"}
)  # fmt: skip
_CREDENTIAL_IN_QUERY = re.compile(
    r"(?i)(?P<name>(?:^|[?&])(?:" + "|".join(re.escape(n) for n in CREDENTIAL_PARAMS) + r")=)"
    r"[^&\s\"]*"
)


def scrub_credentials(text: str) -> str:
    """`text` (a URL or a log line) with the value of every credential query parameter masked."""
    return _CREDENTIAL_IN_QUERY.sub(r"\g<name>***", text)


class ScrubCredentialsFilter(logging.Filter):
    """Masks credential query parameters in access-log records (uvicorn passes the path with
    its query string as one of the record's args)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's string args; never drops a record."""
        if isinstance(record.args, tuple):
            record.args = tuple(
                scrub_credentials(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def install_access_log_scrubbing(logger_name: str = "uvicorn.access") -> None:
    """Attach the scrubbing filter to the access logger once per process."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, ScrubCredentialsFilter) for f in logger.filters):
        logger.addFilter(ScrubCredentialsFilter())


class CredentialInUrlError(ApiError):
    """A request named a credential parameter in its query string."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(
            400,
            "credential_in_url",
            f"do not send API keys in the URL (query parameter {', '.join(names)}): URLs are "
            "logged; send the key as `X-API-Key: <key>` or `Authorization: Bearer <key>`",
            {"parameters": names},
        )


class NotUtf8Error(ApiError):
    """A JSON body that is not UTF-8 text."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            400,
            "invalid_encoding",
            f"the body must be JSON encoded as UTF-8: {reason}",
            {"reason": reason},
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _credential_params(scope: Scope) -> list[str]:
    query = scope.get("query_string", b"").decode("latin-1")
    names = {part.partition("=")[0].lower() for part in query.split("&") if part}
    return sorted(names & CREDENTIAL_PARAMS)


def _json_charset_problem(content_type: str | None) -> str | None:
    """Why a declared content type rules UTF-8 JSON out, or None if it is (or may be) JSON."""
    if content_type is None:
        return None
    header = MimeHeader()
    header["content-type"] = content_type
    charset = header.get_param("charset")
    if isinstance(charset, str) and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
        return f"charset {charset!r} was declared"
    return None


def _is_json(content_type: str | None) -> bool:
    # FastAPI reads a body as JSON when the type is JSON or not given at all.
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class RequestChecksMiddleware:
    """Refuse credentials in the URL, and JSON bodies that are not UTF-8, with the common
    error body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the URL at once and the body while it is read."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        names = _credential_params(scope)
        if names:
            await refuse(CredentialInUrlError(names), scope, receive, send)
            return
        content_type = _header(scope, b"content-type")
        if not _is_json(content_type):
            await self.app(scope, receive, send)
            return
        problem = _json_charset_problem(content_type)
        if problem:
            await refuse(NotUtf8Error(problem), scope, receive, send)
            return
        await call_refusing(self.app, scope, _utf8_checking(receive), send, refused=NotUtf8Error)


def _utf8_checking(receive: Receive) -> Receive:
    """`receive`, raising NotUtf8Error as soon as the body stops being UTF-8 JSON text.

    A NUL byte is refused too: JSON text never holds one raw, and UTF-16 text of ASCII
    characters is valid UTF-8 byte for byte except for its NULs.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")

    async def checking_receive() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            chunk: bytes = message.get("body", b"")
            if b"\x00" in chunk:
                raise NotUtf8Error("it holds NUL bytes (UTF-16 or UTF-32 text?)")
            try:
                decoder.decode(chunk, final=not message.get("more_body", False))
            except UnicodeDecodeError as exc:
                raise NotUtf8Error(f"byte {exc.object[exc.start]:#04x} is not UTF-8") from None
        return message

    return checking_receive
