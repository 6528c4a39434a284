"""The polite fetcher against a real HTTP server on 127.0.0.1: robots, retries, limits, types."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "site"))
from fakesite import FakeSite, Reply  # noqa: E402

from scraper.errors import (  # noqa: E402
    BodyTooLarge,
    FetchTimeout,
    HttpStatus,
    NotAnImage,
    RobotsDisallowed,
)
from scraper.fetcher import Fetcher, FetchSettings  # noqa: E402


@pytest.fixture
def site():
    s = FakeSite()
    yield s
    s.close()


def fetcher(**kw) -> Fetcher:
    opts = dict(delay=0.0, retries=2, backoff=0.0, connect_timeout=2.0, read_timeout=2.0)
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


def test_robots_server_error_forbids_the_host(site, lfw_female):
    site.add("/robots.txt", "oops", "text/plain", status=503)
    url = site.photo("/files/a.jpg", lfw_female)
    with fetcher(retries=0) as f, pytest.raises(RobotsDisallowed):
        f.image(url)
    assert site.hits["/files/a.jpg"] == 0


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
