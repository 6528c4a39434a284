"""Refuse over-large or stalled request bodies while they arrive, before they are held in memory.

An ASGI middleware: a ``Content-Length`` over the limit is refused at once; otherwise the bytes
are counted as the server receives them and the upload is cut off with 413 at the limit (a
chunked upload has no length to check up front). A body that stops arriving for ``timeout``
seconds before its end is answered 408 and its connection closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from anfe.app.errors import BodyTimeout, send_error
from anfe.centroids.errors import ImageTooLarge
from anfe.centroids.imaging.formats import too_many_bytes

# room for multipart boundaries, part headers and other form fields
OVERHEAD = 64 * 1024


class BodyLimit:
    """Cap the body of each request at ``limit_for(path)`` bytes (None: no cap), and the wait
    for each of its pieces at ``timeout`` seconds."""

    def __init__(
        self, app, limit_for: Callable[[str], int | None], timeout: float | None = None
    ) -> None:
        self.app = app
        self.limit_for = limit_for
        self.timeout = timeout

    async def __call__(self, scope, receive, send) -> None:
        limit = self.limit_for(scope["path"]) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > limit:
            await send_error(send, too_many_bytes(length, limit, "the request"), close=True)
            return
        received = 0
        started = False
        complete = False

        async def limited_receive():
            nonlocal received, complete
            if complete:  # the body is read: what is left to wait for is the disconnect
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except TimeoutError:
                raise BodyTimeout(
                    f"no byte of the request body for {self.timeout:g} s; send it at once"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > limit:
                    raise too_many_bytes(limit, limit, "the request", exact=False)
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (ImageTooLarge, BodyTimeout) as exc:  # raised outside a route's error handling
            if not started:
                await send_error(send, exc, close=True)


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
