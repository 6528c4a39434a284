"""Which hosts the scraper may connect to: public addresses only, unless told otherwise.

A seed list, a page or a redirect can name any host, including ``127.0.0.1``, the cloud
metadata service ``169.254.169.254`` or a machine on the local network, and spelled in ways a
string check misses (``http://2130706433/``, ``http://127.1/``, ``http://0x7f.0.0.1/``,
``//127.0.0.1`` as a redirect target). So the host is resolved the way the connection will
resolve it, and every address it gives is checked with :mod:`ipaddress`: loopback, private,
shared (100.64/10), link-local, unspecified, reserved and multicast addresses are refused. Test sites and local
mirrors pass ``allow_private=True`` (``anfe scrape --allow-private-hosts``).

Through a proxy the proxy resolves names, so only hosts written as addresses are checked.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from scraper.errors import FetchError, PrivateAddress


def refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a connection to this address would reach a private or special network."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        not address.is_global  # private, and 100.64/10 (carrier-grade NAT, Alibaba's metadata)
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_reserved
        or address.is_multicast
    )


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host written as an IP literal stands for (any form ``inet_aton`` takes)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))  # 2130706433, 127.1, 0x7f.0.0.1
    except (OSError, ValueError):
        return None


def check_public(url: str, resolve: bool = True) -> None:
    """Raise :class:`PrivateAddress` if the URL's host is, or resolves to, a non-public address.

    ``resolve=False`` (behind a proxy) checks only hosts written as addresses.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = literal_address(host)
    if literal is not None:
        addresses = [literal]
    elif not resolve:
        return
    else:
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as exc:
            raise FetchError(f"cannot resolve host {host[:100]!r}: {exc}") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        if refused(address):
            raise PrivateAddress(
                f"{parts.netloc[:100]} is the non-public address {address}; "
                "refused (--allow-private-hosts allows it for a local mirror)"
            )
