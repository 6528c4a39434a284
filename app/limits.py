"""Refuse over-large request bodies while they arrive, before they are held in memory.

An ASGI middleware: a ``Content-Length`` over the limit is refused at once; otherwise the bytes
are counted as the server receives them and the upload is cut off with 413 at the limit (a
chunked upload has no length to check up front).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from app.errors import error_body
from centroids.errors import ImageTooLarge

# room for multipart boundaries, part headers and other form fields
OVERHEAD = 64 * 1024


class BodyLimit:
    """Cap the body of each request at ``limit_for(path)`` bytes (None: no cap)."""

    def __init__(self, app, limit_for: Callable[[str], int | None]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope, receive, send) -> None:
        limit = self.limit_for(scope["path"]) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > limit:
            await _send_413(send, f"the request has {length} bytes; the limit is {limit}")
            return
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise ImageTooLarge(f"the request has more than {limit} bytes")
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except ImageTooLarge as exc:  # raised outside a route's own error handling
            if not started:
                await _send_413(send, exc.message)


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send, message: str) -> None:
    body = json.dumps(error_body(ImageTooLarge.code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
