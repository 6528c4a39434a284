"""Refusing private addresses: IPv6 forms that carry an IPv4 address, and DNS rebinding.

The servers are real, on 127.0.0.1. A resolver stub at the ``socket.getaddrinfo`` level plays
names whose answer changes from one lookup to the next; a ``resolve`` passed to the fetcher
plays a public name that lives at 127.0.0.1, so that a checked connection has a server to reach.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import trustme

from anfe.scraper.addresses import check_public, embedded_ipv4, public_addresses, refused  # noqa: E402
from anfe.scraper.errors import FetchError, PrivateAddress  # noqa: E402
from anfe.scraper.fetcher import Fetcher, FetchSettings  # noqa: E402
from tests.scraper.site.fakesite import FakeSite, Reply

ANFE = str(Path(sys.executable).with_name("anfe"))
PUBLIC = "93.184.215.14"
NAME = "photos.example.invalid"


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


@pytest.fixture
def site():
    s = FakeSite()
    yield s
    s.close()


def pretend_public(*names: str):
    """A resolver that places ``names`` at 127.0.0.1 as if it were public; any other host is
    resolved and checked for real."""

    def resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return (
            [ipaddress.IPv4Address("127.0.0.1")] if host in names else public_addresses(host, port)
        )

    return resolve


def fetcher(**kw) -> Fetcher:
    resolve = kw.pop("resolve", public_addresses)
    opts = dict(delay=0.0, retries=1, backoff=0.0, connect_timeout=2.0, read_timeout=2.0)
    opts.update(kw)
    return Fetcher(FetchSettings(**opts), resolve=resolve)


def hosts_asked(site: FakeSite) -> set[str]:
    return {headers["Host"].rsplit(":", 1)[0] for _, _, headers in site.log}


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


# -- DNS rebinding: the connection goes only to addresses it checked ----------------------------


def test_second_lookup_cannot_move_the_connection_to_a_private_address(site, dns, lfw_female):
    site.photo("/files/a.jpg", lfw_female)
    port = site.server.server_address[1]
    dns.add("rebind.example.invalid", PUBLIC, "127.0.0.1")  # public to the check, then loopback
    with fetcher(obey_robots=False) as f, pytest.raises(PrivateAddress) as err:
        f.image(f"http://rebind.example.invalid:{port}/files/a.jpg")
    assert "127.0.0.1" in err.value.message
    assert dns.asked["rebind.example.invalid"] == 2  # the check passed; the connection refused
    assert not site.log  # nothing reached the server on 127.0.0.1


def test_pinned_connection_does_not_look_the_name_up_and_keeps_it_in_the_host_header(
    site, dns, lfw_female
):
    site.photo("/files/a.jpg", lfw_female)
    port = site.server.server_address[1]
    dns.add(NAME)  # were the name looked up by the HTTP library, it would not resolve
    with fetcher(resolve=pretend_public(NAME)) as f:
        assert f.image(f"http://{NAME}:{port}/files/a.jpg").body == lfw_female.read_bytes()
    assert dns.asked[NAME] == 0
    assert [h["Host"] for _, p, h in site.log if p == "/files/a.jpg"] == [f"{NAME}:{port}"]


def test_redirect_to_a_rebinding_name_is_checked_at_its_own_connection(site, dns, lfw_female):
    port = site.server.server_address[1]
    site.photo("/files/a.jpg", lfw_female)
    target = f"http://rebind.example.invalid:{port}/files/a.jpg"
    site.add("/files/moved.jpg", Reply(status=302, headers={"Location": target}))
    dns.add("rebind.example.invalid", PUBLIC, "127.0.0.1")
    with fetcher(resolve=pretend_public(NAME)) as f, pytest.raises(PrivateAddress):
        f.image(f"http://{NAME}:{port}/files/moved.jpg")
    assert site.hits["/files/moved.jpg"] == 1
    assert hosts_asked(site) == {NAME}  # not even robots.txt of the redirect target


def test_redirect_to_another_public_name_is_followed_on_a_checked_connection(site, dns, lfw_female):
    port = site.server.server_address[1]
    site.photo("/files/a.jpg", lfw_female)
    target = f"http://cdn.example.invalid:{port}/files/a.jpg"
    site.add("/files/moved.jpg", Reply(status=302, headers={"Location": target}))
    dns.add("cdn.example.invalid")
    with fetcher(resolve=pretend_public(NAME, "cdn.example.invalid")) as f:
        assert f.image(f"http://{NAME}:{port}/files/moved.jpg").body == lfw_female.read_bytes()
    assert hosts_asked(site) == {NAME, "cdn.example.invalid"}
    assert dns.asked["cdn.example.invalid"] == 0


# -- HTTPS: SNI and the certificate stay on the host name ---------------------------------------


@pytest.fixture
def ca(tmp_path, monkeypatch):
    """A certificate authority that requests trusts (through ``REQUESTS_CA_BUNDLE``)."""
    authority = trustme.CA()
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "ca.pem"))
    return authority


def tls_site(ca: trustme.CA, identity: str, sni: list[str | None]) -> FakeSite:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(identity).configure_cert(context)
    context.sni_callback = lambda sock, name, ctx: sni.append(name)
    return FakeSite(tls=context)


def test_pinned_https_sends_sni_and_verifies_the_certificate_for_the_host_name(ca, dns, lfw_female):
    sni: list[str | None] = []
    site = tls_site(ca, NAME, sni)
    try:
        site.photo("/files/a.jpg", lfw_female)
        port = site.server.server_address[1]
        dns.add(NAME)
        with fetcher(resolve=pretend_public(NAME)) as f:
            assert f.image(f"https://{NAME}:{port}/files/a.jpg").body == lfw_female.read_bytes()
        assert sni and set(sni) == {NAME}
        assert hosts_asked(site) == {NAME}
    finally:
        site.close()


@pytest.mark.parametrize("identity", ["other.example.invalid", "127.0.0.1"])
def test_pinned_https_refuses_a_certificate_for_another_name_or_the_address(
    ca, dns, lfw_female, identity
):
    site = tls_site(ca, identity, [])
    try:
        site.photo("/files/a.jpg", lfw_female)
        port = site.server.server_address[1]
        with fetcher(resolve=pretend_public(NAME), obey_robots=False) as f:
            with pytest.raises(FetchError, match="cannot connect"):
                f.image(f"https://{NAME}:{port}/files/a.jpg")
        assert not site.log
    finally:
        site.close()


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


# -- behind a proxy: what can be checked from here is checked -----------------------------------


@pytest.mark.parametrize(
    "host", ["localhost", "db.localhost", "printer.local", "metadata.google.internal",
             "router.home.arpa", "metadata", "intranet."],
)  # fmt: skip
def test_behind_a_proxy_names_local_by_their_form_are_refused(host):
    with pytest.raises(PrivateAddress, match="local host name"):
        check_public(f"http://{host}/a.jpg", resolve=False)


def test_behind_a_proxy_a_name_resolving_here_to_a_private_address_is_refused(dns):
    dns.add("rebind.example.invalid", "127.0.0.1")
    dns.add("v6.example.invalid", "2002:a9fe:a9fe::1")  # 6to4 carrying 169.254.169.254
    for host in ("rebind.example.invalid", "v6.example.invalid"):
        with pytest.raises(PrivateAddress, match="non-public address"):
            check_public(f"https://{host}/a.jpg", resolve=False)


def test_behind_a_proxy_a_name_unknown_here_is_left_to_the_proxy(dns):
    dns.add("proxied.example.invalid")  # no answer here: the proxy resolves it
    check_public("https://proxied.example.invalid/a.jpg", resolve=False)  # raises nothing
    dns.add("www.example.invalid", PUBLIC)
    check_public("https://www.example.invalid/a.jpg", resolve=False)


def test_fetcher_behind_a_proxy_refuses_a_name_that_resolves_to_loopback(site, dns, lfw_female):
    # The fake site acts as the proxy; the name resolves here to 127.0.0.1.
    site.add("http://inside.example.invalid/robots.txt", b"", "text/plain")
    site.add("http://inside.example.invalid/a.jpg", lfw_female.read_bytes(), "image/jpeg")
    dns.add("inside.example.invalid", "127.0.0.1")
    with fetcher(obey_robots=False, proxies={"http": site.base}) as f:
        with pytest.raises(PrivateAddress):
            f.image("http://inside.example.invalid/a.jpg")
    assert not site.log  # the proxy was never asked
