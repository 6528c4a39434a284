"""HTTP connections that go only to addresses they checked: the cure for DNS rebinding.

Checking a host's addresses and then letting the HTTP library resolve the name again to connect
leaves a gap: a name with a short TTL can answer a public address to the check and
``127.0.0.1`` or ``169.254.169.254`` to the connection. :class:`PinnedAdapter` is a requests
transport adapter whose urllib3 connections resolve the name once, through a
:data:`~scraper.addresses.Resolver` that refuses non-public addresses, and open the socket to
those very addresses. Everything else stays on the host name: the ``Host`` header, TLS SNI and
certificate verification are urllib3's own, since the connection's host is unchanged. A
connection kept alive for the next request is still the checked one; a redirect to another host
opens a new connection, checked again (the fetcher also checks each hop before requesting it).

Requests sent through a proxy connect to the proxy, not the host, and are left as they are.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.connection import create_connection

from anfe.scraper.addresses import Resolver, public_addresses


class _Pinned:
    """Mixin for urllib3 connections: open the socket to the addresses ``resolve`` checked."""

    resolve: Resolver  # set by pinned_pools

    def _new_conn(self) -> socket.socket:
        error: Exception = NewConnectionError(self, f"{self.host} has no address")
        for address in self.resolve(self.host, self.port):  # raises PrivateAddress
            try:
                sock = create_connection(
                    (str(address), self.port),  # an IP: the name is not looked up again
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError as exc:  # the messages and classes of urllib3's own _new_conn
                message = f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
                error = ConnectTimeoutError(self, message)
                error.__cause__ = exc
            except OSError as exc:
                error = NewConnectionError(self, f"Failed to establish a new connection: {exc}")
                error.__cause__ = exc
            else:
                sys.audit("http.client.connect", self, self.host, self.port)
                return sock
        raise error


def pinned_pools(resolve: Resolver) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pool classes by scheme whose connections go only to what ``resolve`` returns."""
    checked = {"resolve": staticmethod(resolve)}
    http = type("PinnedHTTPConnection", (_Pinned, HTTPConnection), checked)
    https = type("PinnedHTTPSConnection", (_Pinned, HTTPSConnection), checked)
    return {
        "http": type("PinnedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
        "https": type("PinnedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
    }


class PinnedAdapter(HTTPAdapter):
    """A requests adapter whose direct connections go only to addresses ``resolve`` checked."""

    def __init__(self, resolve: Resolver = public_addresses, **kwargs: Any) -> None:
        self.resolve = resolve
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = pinned_pools(self.resolve)
