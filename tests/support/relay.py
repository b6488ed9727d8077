"""Byte relays for tests that stand something between a client and the test server."""

from __future__ import annotations

import asyncio
import contextlib
import ssl


async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes from `reader` to `writer` until end of stream or a broken connection."""
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
