"""A limit on the requests one server process works on at once, answered in the service's JSON.

An ASGI middleware counts the HTTP requests in progress (from their headers to the end of their
answer, upload included); past ``ANFE_LIMIT_CONCURRENCY`` a request is answered at once
``503 server_busy`` with ``Retry-After``, before its body is read. ``/health`` and ``/metrics``
are not counted and always answered, so monitors still see the service while it is busy.

uvicorn's own ``limit_concurrency`` stays as a backstop on open connections, at
:func:`connection_backstop` of them: past it uvicorn answers a plain-text 503 itself.
"""

from __future__ import annotations

from anfe.app.errors import ServerBusy, send_error

# paths answered whatever the load: cheap, and what monitors and load balancers poll
UNLIMITED_PATHS = frozenset({"/health", "/metrics"})
# seconds a client told 503 server_busy should wait before trying again
RETRY_AFTER_SECONDS = 1
# open connections per allowed request before uvicorn's own plain-text 503 (idle kept-alive
# connections and connections still sending headers hold no request)
CONNECTIONS_PER_REQUEST = 4


def connection_backstop(limit: int) -> int:
    """uvicorn's ``limit_concurrency`` for a service allowing ``limit`` requests in progress."""
    return CONNECTIONS_PER_REQUEST * limit


class RequestLimit:
    """Answer ``503 server_busy`` to a request arriving while ``limit`` others are in progress."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_progress = 0  # one event loop per server process: no lock needed

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_progress >= self.limit:
            busy = ServerBusy(
                f"the server is working on its limit of {self.limit} requests; "
                f"try again in {RETRY_AFTER_SECONDS} s"
            )
            await send_error(send, busy, headers=[(b"retry-after", b"%d" % RETRY_AFTER_SECONDS)])
            return
        self.in_progress += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_progress -= 1
