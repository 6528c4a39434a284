"""uvicorn's HTTP/1.1 protocol (h11) with a deadline for each request's line and headers.

uvicorn times out idle kept-alive connections but not a request that never finishes its
headers: 300 connections sending a header byte now and then (slowloris) stayed open forever.
Here the request line and headers must arrive within ``ANFE_TIMEOUT_HEADERS`` seconds of the
connection opening (or of the first byte after a kept-alive response); then the connection is
closed. The body has its own timeout, in :mod:`anfe.app.limits`.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("anfe.app")


@functools.cache
def headers_timeout() -> float:
    """``ANFE_TIMEOUT_HEADERS``, read once per server process."""
    from anfe.app.settings import Settings

    return Settings().timeout_headers


class HeadersDeadlineProtocol(H11Protocol):
    """:class:`H11Protocol` that closes a connection whose request headers are late."""

    _headers_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._headers_timer is None and self._between_requests():
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if not self._between_requests():
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._headers_timer = self.loop.call_later(headers_timeout(), self._late)

    def _disarm(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def _late(self) -> None:
        self._headers_timer = None
        if self._between_requests() and not self.transport.is_closing():
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
            log.info("closed %s: no complete request headers in %g s", client, headers_timeout())
            self.transport.close()
