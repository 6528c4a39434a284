"""Which hosts the scraper may connect to: public addresses only, unless told otherwise.

A seed list, a page or a redirect can name any host, including ``127.0.0.1``, the cloud
metadata service ``169.254.169.254`` or a machine on the local network, and spelled in ways a
string check misses (``http://2130706433/``, ``http://127.1/``, ``http://0x7f.0.0.1/``,
``//127.0.0.1`` as a redirect target). So the host is resolved the way the connection will
resolve it, and every address it gives is checked with :mod:`ipaddress`: loopback, private,
shared (100.64/10), link-local, unspecified, reserved and multicast addresses are refused. An
IPv6 address that carries an IPv4 address (IPv4-mapped ``::ffff:0:0/96``, IPv4-compatible
``::/96``, 6to4 ``2002::/16``, Teredo ``2001::/32``, NAT64 ``64:ff9b::/96``) is refused when
that IPv4 address would be. IPv4-mapped and NAT64 addresses are that IPv4 address reached
through IPv6, so they are judged by it alone (a DNS64 network answers every IPv4-only site with
a NAT64 address); the others by both addresses. NAT64's local-use prefix ``64:ff9b:1::/48`` is
refused whole.
Test sites and local mirrors pass ``allow_private=True`` (``anfe scrape --allow-private-hosts``).

A check alone does not stop DNS rebinding (a name that answers a public address to the check
and a private one to the connection): :mod:`anfe.scraper.pinning` makes the connection itself use
:func:`public_addresses`, so it goes only to addresses it checked.

Through a proxy the proxy resolves names and opens the connection, so the scraper checks what
it can from here (:func:`check_through_proxy`): hosts written as addresses; names that are local
by their form (``localhost``, ``*.local``, ``*.internal``, ``*.home.arpa``, a name without a dot,
such as ``metadata``); and names that resolve here, whose every address must be public. A name
that does not resolve here is left to the proxy.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from anfe.scraper.errors import FetchError, PrivateAddress

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[Address]]  # (host, port) -> checked addresses

NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 address in the last 32 bits
NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: local use, IPv4 anywhere
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: IPv4-mapped, 6to4, Teredo (server and
    client), NAT64 and IPv4-compatible; none for any other address."""
    found = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if address in NAT64 or address in IPV4_COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [a for a in found if a is not None]


def refused(address: Address) -> bool:
    """Whether a connection to this address would reach a private or special network."""
    if isinstance(address, ipaddress.IPv6Address):
        carried = embedded_ipv4(address)
        if address.ipv4_mapped is not None or address in NAT64:
            return refused(carried[0])  # the IPv4 address itself, reached through IPv6
        if address in NAT64_LOCAL or any(refused(v4) for v4 in carried):
            return True
    return (
        not address.is_global  # private, and 100.64/10 (carrier-grade NAT, Alibaba's metadata)
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_reserved
        or address.is_multicast
    )


def literal_address(host: str) -> Address | None:
    """The address a host written as an IP literal stands for (any form ``inet_aton`` takes)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))  # 2130706433, 127.1, 0x7f.0.0.1
    except (OSError, ValueError):
        return None


def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` stands for, in the resolver's order; an IP literal is itself."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"cannot resolve host {host[:100]!r}: {exc}") from None
    return list(dict.fromkeys(ipaddress.ip_address(i[4][0].split("%")[0]) for i in infos))


def public_addresses(host: str, port: int) -> list[Address]:
    """Resolve ``host`` once and return its addresses, all of them public.

    Raises :class:`PrivateAddress` if any of them is not (a name that also answers a private
    address is refused whole), :class:`FetchError` if the name does not resolve.
    """
    addresses = resolve(host, port)
    for address in addresses:
        if refused(address):
            raise PrivateAddress(
                f"{host[:100]} is the non-public address {address}; "
                "refused (--allow-private-hosts allows it for a local mirror)"
            )
    return addresses


# suffixes of names that only a local network answers (RFC 6761, 6762, 8375; ICANN's .internal)
LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".localdomain", ".lan")


def local_name(host: str) -> bool:
    """Whether a host name stands for a local machine by its form alone: ``localhost``, a name
    under a local-only suffix, or a single label (``metadata``, ``intranet``) that a resolver
    completes with its search domains."""
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(LOCAL_SUFFIXES) or "." not in name


def check_through_proxy(host: str, port: int, resolver: Resolver = public_addresses) -> None:
    """What can be checked of a host a proxy will resolve and connect to: an address literal as
    usual; a name local by its form is refused; a name that resolves here must resolve to public
    addresses only; a name that does not resolve here is the proxy's to resolve."""
    if literal_address(host) is not None:
        public_addresses(host, port)
        return
    if local_name(host):
        raise PrivateAddress(
            f"{host[:100]} is a local host name; refused behind the proxy too "
            "(--allow-private-hosts allows it for a local mirror)"
        )
    try:
        resolver(host, port)
    except PrivateAddress:
        raise
    except FetchError:
        pass  # unknown here: only the proxy can resolve it


def check_public(url: str, resolve: bool = True, resolver: Resolver = public_addresses) -> None:
    """Raise :class:`PrivateAddress` if the URL's host is, or resolves to, a non-public address.

    ``resolve=False`` (behind a proxy) checks what :func:`check_through_proxy` can; ``resolver``
    resolves and checks names (see :func:`public_addresses`).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if resolve:
        resolver(host, port)
    else:
        check_through_proxy(host, port, resolver)
