"""The polite fetcher against a real HTTP server on 127.0.0.1: robots, retries, limits, types."""

from __future__ import annotations

import time

import pytest

from anfe.scraper.addresses import check_public  # noqa: E402
from anfe.scraper.errors import (  # noqa: E402
    BlockedByChallenge,
    BodyTooLarge,
    FetchTimeout,
    HttpStatus,
    NotAnImage,
    PrivateAddress,
    RedirectLoop,
    RobotsDisallowed,
    RobotsUnavailable,
)
from anfe.scraper.fetcher import Fetcher, FetchSettings  # noqa: E402
from tests.helpers import free_port  # noqa: E402
from tests.scraper.site.fakesite import FakeSite, Reply


@pytest.fixture
def site():
    s = FakeSite()
    yield s
    s.close()


def fetcher(**kw) -> Fetcher:
    opts = dict(delay=0.0, retries=2, backoff=0.0, connect_timeout=2.0, read_timeout=2.0)
    opts["allow_private_hosts"] = True  # the fake site is on 127.0.0.1
    opts.update(kw)
    return Fetcher(FetchSettings(**opts))


def test_robots_disallow_refuses_without_requesting_the_url(site, lfw_female):
    url = site.photo("/private/secret.jpg", lfw_female)
    with fetcher() as f, pytest.raises(RobotsDisallowed):
        f.image(url)
    assert site.hits["/private/secret.jpg"] == 0
    assert site.hits["/robots.txt"] == 1


def test_robots_is_read_once_per_host(site, lfw_female):
    a = site.photo("/files/a.jpg", lfw_female)
    b = site.photo("/files/b.jpg", lfw_female)
    with fetcher() as f:
        f.image(a)
        f.image(b)
    assert site.hits["/robots.txt"] == 1


def test_robots_server_error_is_transient_and_asked_again_next_run(site, lfw_female):
    site.add("/robots.txt", "oops", "text/plain", status=503)
    url = site.photo("/files/a.jpg", lfw_female)
    with fetcher(retries=0) as f:
        for _ in range(2):  # the host is not asked again in this run
            with pytest.raises(RobotsUnavailable) as err:
                f.image(url)
            assert err.value.transient and err.value.code == "robots_unreachable"
    assert site.hits["/files/a.jpg"] == 0 and site.hits["/robots.txt"] == 1
    site.add("/robots.txt", b"User-agent: *\nDisallow:\n", "text/plain")
    with fetcher(retries=0) as f:  # the next run reads it again, and it now answers
        assert f.image(url).body == lfw_female.read_bytes()


@pytest.mark.parametrize("status", [401, 403, 404, 410])
def test_robots_4xx_allows_everything(site, lfw_female, status):
    site.add("/robots.txt", "no", "text/plain", status=status)
    url = site.photo("/files/a.jpg", lfw_female)
    with fetcher() as f:
        assert f.image(url).body == lfw_female.read_bytes()


def test_robots_of_a_host_that_is_down_is_transient():
    port = free_port()  # nothing listens there
    with fetcher(retries=0) as f, pytest.raises(RobotsUnavailable) as err:
        f.image(f"http://127.0.0.1:{port}/a.jpg")
    assert err.value.transient


CLOUDFLARE = (
    b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
    b"<script src='/cdn-cgi/challenge-platform/h/b/orchestrate/chl_page/v1'></script></body></html>"
)


@pytest.mark.parametrize("status", [403, 503])
def test_challenge_page_stops_the_host_once_without_retrying(site, lfw_female, caplog, status):
    a = site.add("/files/a.jpg", CLOUDFLARE, status=status)
    b = site.photo("/files/b.jpg", lfw_female)
    with fetcher(retries=3) as f:
        for url in (a, b, a):
            with pytest.raises(BlockedByChallenge) as err:
                f.image(url)
            assert err.value.code == "blocked_by_challenge"
    assert site.hits["/files/a.jpg"] == 1 and site.hits["/files/b.jpg"] == 0
    assert sum("challenge" in r.message for r in caplog.records) == 1


def test_challenge_on_robots_txt_stops_the_host(site, lfw_female):
    site.add("/robots.txt", CLOUDFLARE, status=403)
    url = site.photo("/files/a.jpg", lfw_female)
    with fetcher() as f, pytest.raises(BlockedByChallenge):
        f.image(url)
    assert site.hits["/files/a.jpg"] == 0


def test_plain_503_is_still_retried(site, lfw_female):
    data = lfw_female.read_bytes()
    url = site.add("/files/a.jpg", [Reply(b"<h1>busy</h1>", status=503), Reply(data, "image/jpeg")])
    with fetcher() as f:
        assert f.image(url).body == data


def test_429_waits_for_retry_after_then_succeeds(site, lfw_female):
    data = lfw_female.read_bytes()
    url = site.add(
        "/files/busy.jpg",
        [Reply(b"slow down", "text/plain", 429, {"Retry-After": "1"}), Reply(data, "image/jpeg")],
    )
    with fetcher() as f:
        resp = f.image(url)
    assert resp.body == data
    first, second = site.times("/files/busy.jpg")
    assert second - first >= 0.9


def test_500_then_success_is_retried(site, lfw_female):
    data = lfw_female.read_bytes()
    url = site.add(
        "/files/flaky.jpg", [Reply(b"err", "text/plain", 500), Reply(data, "image/jpeg")]
    )
    with fetcher() as f:
        assert f.image(url).body == data
    assert site.hits["/files/flaky.jpg"] == 2


def test_persistent_500_gives_a_transient_http_error(site):
    url = site.add("/files/down.jpg", b"err", "text/plain", status=500)
    with fetcher(retries=1) as f, pytest.raises(HttpStatus) as err:
        f.image(url)
    assert err.value.status_code == 500 and err.value.transient
    assert site.hits["/files/down.jpg"] == 2


def test_hung_response_times_out(site, lfw_female):
    url = site.photo("/files/hung.jpg", lfw_female, delay=3.0)
    with fetcher(read_timeout=0.4, retries=0) as f, pytest.raises(FetchTimeout):
        f.image(url)


def test_html_served_as_jpeg_is_not_an_image(site):
    url = site.add("/files/fake.jpg", b"<html><body>login first</body></html>", "image/jpeg")
    with fetcher() as f, pytest.raises(NotAnImage) as err:
        f.image(url)
    assert not err.value.transient


def test_image_with_html_content_type_is_refused(site, lfw_female):
    url = site.add("/files/typed.jpg", lfw_female.read_bytes(), "text/html")
    with fetcher() as f, pytest.raises(NotAnImage):
        f.image(url)


@pytest.mark.parametrize("send_length", [True, False])
def test_oversized_body_is_refused(site, lfw_female, send_length):
    big = lfw_female.read_bytes() + b"\0" * 300_000
    url = site.add("/files/big.jpg", Reply(big, "image/jpeg", send_length=send_length))
    with fetcher(max_bytes=100_000) as f, pytest.raises(BodyTooLarge):
        f.image(url)


def test_delay_spaces_requests_to_one_host(site, lfw_female):
    a = site.photo("/files/a.jpg", lfw_female)
    b = site.photo("/files/b.jpg", lfw_female)
    with fetcher(delay=0.5) as f:
        f.image(a)
        f.image(b)
    assert site.times("/files/b.jpg")[0] - site.times("/files/a.jpg")[0] >= 0.45


def test_user_agent_referer_and_extra_headers_are_sent(site, lfw_female):
    url = site.photo("/files/a.jpg", lfw_female)
    with fetcher(user_agent="anfe-test/1", headers={"Accept-Language": "pl"}) as f:
        f.image(url, referer=site.url("/listal/x"))
    headers = [h for _, p, h in site.log if p == "/files/a.jpg"][0]
    assert headers["User-Agent"] == "anfe-test/1"
    assert headers["Accept-Language"] == "pl"
    assert headers["Referer"] == site.url("/listal/x")


def test_proxy_setting_routes_requests_through_the_proxy(site, lfw_female):
    # The fake site answers any absolute-form request line, so it can act as the proxy.
    site.add("http://images.example.invalid/robots.txt", b"", "text/plain")
    site.add("http://images.example.invalid/p.jpg", lfw_female.read_bytes(), "image/jpeg")
    with fetcher(proxies={"http": site.base}) as f:
        assert f.image("http://images.example.invalid/p.jpg").body == lfw_female.read_bytes()
    assert site.hits["http://images.example.invalid/p.jpg"] == 1


# -- private addresses and redirects ------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "2130706433", "127.1", "0x7f.0.0.1", "0177.0.0.1", "[::1]", "0.0.0.0",
     "169.254.169.254", "10.0.0.8", "192.168.1.1", "[::ffff:127.0.0.1]", "localhost",
     "100.100.100.200"],
)  # fmt: skip
def test_private_and_loopback_hosts_are_refused(host):
    with pytest.raises(PrivateAddress):
        check_public(f"http://{host}:8080/a.jpg")


def test_public_address_passes():
    check_public("http://93.184.215.14/a.jpg")  # a literal public address: no lookup needed


def test_fetcher_refuses_a_loopback_seed_before_any_request(site, lfw_female):
    url = site.photo("/files/a.jpg", lfw_female)
    port = site.server.server_address[1]
    with fetcher(allow_private_hosts=False) as f:
        for u in (url, f"http://2130706433:{port}/files/a.jpg"):
            with pytest.raises(PrivateAddress) as err:
                f.image(u)
            assert err.value.transient  # decided again by a later run, with its options
    assert not site.log  # not even robots.txt was asked


@pytest.mark.parametrize("location", ["http://2130706433:{port}/files/a.jpg",
                                      "//127.0.0.1:{port}/files/a.jpg",
                                      "http://[::1]:{port}/files/a.jpg"])  # fmt: skip
def test_redirect_to_a_private_address_is_refused(site, lfw_female, location):
    # The fake site acts as a proxy for a public name; behind a proxy only literal
    # addresses can be checked, which is what these redirects use.
    port = site.server.server_address[1]
    site.add("http://images.example.invalid/robots.txt", b"", "text/plain")
    site.add("http://images.example.invalid/moved.jpg",
             Reply(status=302, headers={"Location": location.format(port=port)}))  # fmt: skip
    site.photo("/files/a.jpg", lfw_female)
    with fetcher(allow_private_hosts=False, proxies={"http": site.base}) as f:
        with pytest.raises(PrivateAddress):
            f.image("http://images.example.invalid/moved.jpg")
    assert site.hits["http://images.example.invalid/moved.jpg"] == 1
    assert not [p for p in site.hits if p.endswith("/files/a.jpg")]


def test_redirect_loop_ends_cleanly_after_one_request_each(site):
    site.add("/files/a.jpg", Reply(status=302, headers={"Location": "/files/b.jpg"}))
    site.add("/files/b.jpg", Reply(status=301, headers={"Location": "/files/a.jpg"}))
    with fetcher() as f, pytest.raises(RedirectLoop) as err:
        f.image(site.url("/files/a.jpg"))
    assert not err.value.transient
    assert site.hits["/files/a.jpg"] == 1 and site.hits["/files/b.jpg"] == 1


def test_endless_redirect_chain_stops(site):
    for n in range(30):
        site.add(f"/files/{n}.jpg", Reply(status=302, headers={"Location": f"/files/{n + 1}.jpg"}))
    with fetcher(max_redirects=5) as f, pytest.raises(RedirectLoop):
        f.image(site.url("/files/0.jpg"))
    assert sum(n for p, n in site.hits.items() if p.startswith("/files/")) == 6


def test_endless_robots_txt_redirect_chain_stops_after_five(site, lfw_female):
    site.add("/robots.txt", Reply(status=302, headers={"Location": "/r/0"}))
    for n in range(30):
        site.add(f"/r/{n}", Reply(status=302, headers={"Location": f"/r/{n + 1}"}))
    url = site.photo("/files/a.jpg", lfw_female)
    with fetcher() as f, pytest.raises(RobotsUnavailable) as err:
        f.image(url)
    assert err.value.transient
    assert (
        site.hits["/robots.txt"] + sum(n for p, n in site.hits.items() if p.startswith("/r/")) == 6
    )
    assert site.hits["/files/a.jpg"] == 0


def test_redirect_target_obeys_robots_txt(site, lfw_female):
    site.photo("/private/secret.jpg", lfw_female)
    url = site.add("/files/a.jpg", Reply(status=302, headers={"Location": "/private/secret.jpg"}))
    with fetcher() as f, pytest.raises(RobotsDisallowed):
        f.image(url)
    assert site.hits["/private/secret.jpg"] == 0


def test_redirect_to_another_host_reads_its_robots_and_keeps_the_delay(site, lfw_female):
    other = FakeSite()
    try:
        other.add("/robots.txt", b"User-agent: *\nCrawl-delay: 1\n", "text/plain")
        target = other.photo("/files/a.jpg", lfw_female)
        url = site.add("/files/moved.jpg", Reply(status=302, headers={"Location": target}))
        with fetcher() as f:
            f.image(target)
            start = time.monotonic()
            assert f.image(url).body == lfw_female.read_bytes()
        assert other.hits["/robots.txt"] == 1 and other.hits["/files/a.jpg"] == 2
        first, second = other.times("/files/a.jpg")
        assert second - first >= 0.95 and time.monotonic() - start >= 0.9
    finally:
        other.close()


def test_redirect_on_the_same_host_waits_the_delay(site, lfw_female):
    site.photo("/files/face.jpg", lfw_female)
    url = site.add("/files/moved.jpg", Reply(status=301, headers={"Location": "/files/face.jpg"}))
    with fetcher(delay=0.5) as f:
        f.image(url)
    assert site.times("/files/face.jpg")[0] - site.times("/files/moved.jpg")[0] >= 0.45
