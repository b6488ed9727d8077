"""Request body size limit, enforced while the body is read.

Content-Length is checked first (a cheap early 413), but a client can lie or stream chunked, so
the bytes actually received are counted too and reading stops at the limit.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import ApiError
from service.api.refusals import call_refusing, refuse


class BodyTooLargeError(ApiError):
    """The body passed the limit while being read.

    An HTTPException on purpose: FastAPI turns any other exception raised while it reads the
    body into a 400, but re-raises HTTPExceptions to the common error handler.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            413,
            "payload_too_large",
            f"the request body is over the {max_bytes}-byte limit",
            {"max_bytes": max_bytes},
        )


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` with 413 and the common error body."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, path_limits: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Exact paths with a limit of their own (POST /flows takes a whole tree of jobs).
        self.path_limits = path_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with a counting `receive`; answer 413 when it overflows."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope.get("path", ""), self.max_bytes)
        if self._declared_length(scope) > limit:
            await self._reject(scope, receive, send, limit)
            return
        await call_refusing(
            self.app, scope, self._counting(receive, limit), send, refused=BodyTooLargeError
        )

    def _counting(self, receive: Receive, limit: int) -> Receive:
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        return counting_receive

    @staticmethod
    def _declared_length(scope: Scope) -> int:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0  # malformed: the server rejects it; the counter still guards
        return 0

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        await refuse(BodyTooLargeError(limit), scope, receive, send)
