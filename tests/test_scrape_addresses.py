"""Refusing private addresses: IPv6 forms that carry an IPv4 address, and DNS rebinding.

The servers are real, on 127.0.0.1. A resolver stub at the ``socket.getaddrinfo`` level plays
names whose answer changes from one lookup to the next; a ``resolve`` passed to the fetcher
plays a public name that lives at 127.0.0.1, so that a checked connection has a server to reach.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from scraper.addresses import check_public, embedded_ipv4, public_addresses, refused
from scraper.errors import PrivateAddress

ANFE = str(Path(sys.executable).with_name("anfe"))
PUBLIC = "93.184.215.14"


class FakeDNS:
    """Answers ``add``-ed names in turn (the last answer repeats; none: no such name); every
    other host, IP literals included, resolves as usual."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: dict[str, list[str]] = {}
        self.asked: Counter[str] = Counter()
        real = socket.getaddrinfo

        def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002
            if host not in self.answers:
                return real(host, port, family, type, proto, flags)
            self.asked[host] += 1
            queue = self.answers[host]
            if not queue:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            ip = queue.pop(0) if len(queue) > 1 else queue[0]
            if ":" in ip:
                return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, int(port), 0, 0))]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, int(port)))]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    def add(self, name: str, *answers: str) -> None:
        self.answers[name] = list(answers)


@pytest.fixture
def dns(monkeypatch):
    return FakeDNS(monkeypatch)


# -- IPv6 addresses that carry an IPv4 address --------------------------------------------------

EMBEDDED = [
    ("::ffff:169.254.169.254", "169.254.169.254"),  # IPv4-mapped
    ("::127.0.0.1", "127.0.0.1"),  # IPv4-compatible (deprecated)
    ("::a00:1", "10.0.0.1"),
    ("2002:7f00:1::", "127.0.0.1"),  # 6to4
    ("2002:a9fe:a9fe::1", "169.254.169.254"),
    ("2002:c0a8:101:1::1", "192.168.1.1"),
    ("2002:6464:64c8::", "100.100.100.200"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1"),  # Teredo client (server public)
    ("2001:0:a00:1::1", "10.0.0.1"),  # Teredo server
    ("64:ff9b::7f00:1", "127.0.0.1"),  # NAT64 well-known prefix
    ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
    ("64:ff9b::a00:8", "10.0.0.8"),
    ("64:ff9b::6464:64c8", "100.100.100.200"),
]


@pytest.mark.parametrize("address, ipv4", EMBEDDED)
def test_ipv6_carrying_a_private_ipv4_address_is_refused(address, ipv4):
    assert ipaddress.IPv4Address(ipv4) in embedded_ipv4(ipaddress.IPv6Address(address))
    assert refused(ipaddress.IPv6Address(address))
    with pytest.raises(PrivateAddress, match="non-public address"):
        check_public(f"http://[{address}]:8080/a.jpg")


def test_nat64_local_use_prefix_is_refused_whatever_it_carries():
    with pytest.raises(PrivateAddress):
        check_public("http://[64:ff9b:1::5db8:d70e]/a.jpg")


@pytest.mark.parametrize("address", ["64:ff9b::a9fe:a9fe", "2002:7f00:1::", "::ffff:10.0.0.1"])
def test_a_name_answering_an_embedded_private_address_is_refused(dns, address):
    dns.add("v6.example.invalid", address)
    with pytest.raises(PrivateAddress, match=re.escape(str(ipaddress.ip_address(address)))):
        check_public("https://v6.example.invalid/a.jpg")


@pytest.mark.parametrize(
    "host",
    [PUBLIC, "[2606:2800:21f:cb07:6820:80da:af6b:8b2c]", "[::ffff:93.184.215.14]",
     "[64:ff9b::5db8:d70e]"],
)  # fmt: skip
def test_public_addresses_still_pass(host):
    check_public(f"http://{host}/a.jpg")  # raises nothing


def test_a_name_answering_a_public_address_passes(dns):
    dns.add("www.example.invalid", PUBLIC)
    assert public_addresses("www.example.invalid", 443) == [ipaddress.IPv4Address(PUBLIC)]
    check_public("https://www.example.invalid/a.jpg")


# -- the command line ---------------------------------------------------------------------------


def test_cli_refuses_an_embedded_private_address_in_one_line(tmp_path):
    url = "http://[64:ff9b::7f00:1]:8080/facescrub_actors.txt"  # NAT64 for 127.0.0.1
    result = subprocess.run(
        [ANFE, "scrape", "--facescrub", url, "--out", str(tmp_path / "out"), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 6
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("anfe: error: ")
    assert "64:ff9b::7f00:1 is the non-public address" in lines[0]
