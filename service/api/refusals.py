"""How the API's ASGI middlewares (limits.py, request_checks.py) refuse a request: with the
common error body, and only while no response has started."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import ApiError, error_response


async def refuse(exc: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer with `exc`'s status and the common error body."""
    response = error_response(exc.status_code, exc.code, exc.message, exc.details)
    await response(scope, receive, send)


async def call_refusing(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, refused: type[ApiError]
) -> None:
    """Run `app`; if it raises `refused` (from the middleware's own `receive`) before its
    response started, answer with that error instead. Once the response has started there is
    no answer left to give, so the error goes on up."""
    started = False

    async def send_tracking(message: Message) -> None:
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    try:
        await app(scope, receive, send_tracking)
    except refused as exc:
        if started:
            raise
        await refuse(exc, scope, receive, send)
