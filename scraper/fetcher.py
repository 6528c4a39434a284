"""The polite HTTP client that every source uses; it knows nothing of any particular site.

- one ``requests.Session`` with a clear User-Agent, optional proxies and extra headers;
- robots.txt of every host is read once (through the same session) and honoured, including a
  ``Crawl-delay`` longer than ours; a robots.txt that cannot be read because of a server error
  forbids the host (a missing one, 4xx, allows everything, as ``urllib.robotparser`` does);
- at least ``delay`` seconds between two requests to the same host;
- retries with exponential backoff on connection errors, 429 and 5xx through urllib3's
  ``Retry`` (which honours ``Retry-After``, capped at ``max_retry_after`` seconds);
- connect and read timeouts, plus a deadline for the whole body (a server trickling bytes);
- a maximum download size, checked on ``Content-Length`` and while streaming;
- for images: a ``Content-Type`` of ``image/*`` and the first bytes of a known image format;
- redirects are followed only to http(s) URLs (never ``file:``, ``ftp:``, ``data:``...).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.robotparser
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from centroids.images import sniff_format
from scraper.errors import (
    BodyTooLarge,
    FetchError,
    FetchTimeout,
    HttpStatus,
    NotAnImage,
    RedirectRefused,
    RobotsDisallowed,
)

log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = (
    "anfe-scraper/0.1 (research; gender-recognition dataset builder; "
    "+https://github.com/anfe-project/anfe)"
)
RETRY_STATUSES = (429, 500, 502, 503, 504)


@dataclass
class FetchSettings:
    """Everything that makes the fetcher polite; all of it is configurable from the CLI."""

    user_agent: str = DEFAULT_USER_AGENT
    delay: float = 1.0  # seconds between two requests to the same host
    retries: int = 3
    backoff: float = 0.5  # urllib3 backoff_factor: 0.5, 1, 2, ... seconds
    max_retry_after: int = 120  # longest Retry-After we wait for
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    body_deadline: float = 60.0  # the whole body must arrive within this many seconds
    max_bytes: int = 15 * 1024 * 1024
    max_page_bytes: int = 5 * 1024 * 1024
    obey_robots: bool = True
    proxies: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Response:
    """A fetched body with the URL it finally came from (after redirects)."""

    url: str
    status: int
    content_type: str
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class Fetcher:
    """GET pages and images politely. One instance per run; not shared between processes."""

    def __init__(self, settings: FetchSettings | None = None) -> None:
        self.settings = s = settings or FetchSettings()
        self.session = requests.Session()
        self.session.headers["User-Agent"] = s.user_agent
        self.session.headers.update(s.headers)
        if s.proxies:
            self.session.proxies.update(s.proxies)
        retry = Retry(
            total=s.retries,
            connect=s.retries,
            read=min(1, s.retries),  # a hung server is asked once more, not many times
            status=s.retries,
            other=0,
            backoff_factor=s.backoff,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "HEAD"}),
            respect_retry_after_header=True,
            retry_after_max=s.max_retry_after,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.hooks["response"].append(_refuse_odd_redirect)
        self._robots: dict[str, urllib.robotparser.RobotFileParser] = {}
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self.requests_made = 0

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public ---------------------------------------------------------------------------------

    def page(self, url: str) -> Response:
        """GET an HTML page (robots.txt honoured, size capped)."""
        return self._get(url, self.settings.max_page_bytes)

    def image(self, url: str, referer: str | None = None) -> Response:
        """GET an image: refuse a body that is not ``image/*`` or not a known image format."""
        headers = {"Referer": referer} if referer else None
        resp = self._get(url, self.settings.max_bytes, headers=headers, want_image=True)
        if sniff_format(resp.body) is None:
            raise NotAnImage(f"{url} is not a JPEG, PNG, WebP, BMP or GIF image")
        return resp

    def allowed(self, url: str) -> bool:
        """Whether robots.txt of the URL's host lets our user agent fetch it."""
        if not self.settings.obey_robots:
            return True
        parser = self._robots_for(url)
        return parser.can_fetch(self.settings.user_agent, url)

    # -- internals ------------------------------------------------------------------------------

    def _get(
        self,
        url: str,
        max_bytes: int,
        headers: dict[str, str] | None = None,
        want_image: bool = False,
    ) -> Response:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise FetchError(f"not an http(s) URL: {url[:200]!r}")
        if not self.allowed(url):
            raise RobotsDisallowed(f"robots.txt of {parts.netloc} disallows {url}")
        self._wait(parts.netloc, self._crawl_delay(url))
        s = self.settings
        try:
            with self.session.get(
                url,
                headers=headers,
                timeout=(s.connect_timeout, s.read_timeout),
                stream=True,
                allow_redirects=True,
            ) as r:
                self.requests_made += 1
                if r.status_code >= 400:
                    raise HttpStatus(f"{url} answered HTTP {r.status_code}", r.status_code)
                ctype = r.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if want_image and not ctype.startswith("image/"):
                    raise NotAnImage(f"{url} has content type {ctype or 'none'}, not an image")
                length = r.headers.get("Content-Length", "")
                if length.isdigit() and int(length) > max_bytes:
                    raise BodyTooLarge(f"{url} has {length} bytes; the limit is {max_bytes}")
                body = self._read_body(r, url, max_bytes)
                return Response(url=r.url, status=r.status_code, content_type=ctype, body=body)
        except (requests.Timeout, requests.exceptions.ConnectionError) as exc:
            if _is_timeout(exc):
                raise FetchTimeout(f"{url} timed out") from None
            raise FetchError(f"cannot connect to {parts.netloc}: {type(exc).__name__}") from None
        except requests.RequestException as exc:
            raise FetchError(f"{url} failed: {type(exc).__name__}: {exc}") from None
        finally:
            with self._lock:
                self._last[parts.netloc] = time.monotonic()

    def _read_body(self, r: requests.Response, url: str, max_bytes: int) -> bytes:
        deadline = time.monotonic() + self.settings.body_deadline
        chunks, size = [], 0
        for chunk in r.iter_content(chunk_size=64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                raise BodyTooLarge(f"{url} sent more than {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise FetchTimeout(f"{url} did not finish in {self.settings.body_deadline:g} s")
            chunks.append(chunk)
        return b"".join(chunks)

    def _wait(self, host: str, delay: float) -> None:
        with self._lock:
            last = self._last.get(host)
        if last is not None:
            pause = last + delay - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    def _crawl_delay(self, url: str) -> float:
        delay = self.settings.delay
        if self.settings.obey_robots:
            extra = self._robots_for(url).crawl_delay(self.settings.user_agent)
            if extra:
                delay = max(delay, float(extra))
        return delay

    def _robots_for(self, url: str) -> urllib.robotparser.RobotFileParser:
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}"
        parser = self._robots.get(key)
        if parser is not None:
            return parser
        parser = urllib.robotparser.RobotFileParser(key + "/robots.txt")
        s = self.settings
        self._wait(parts.netloc, s.delay)
        try:
            r = self.session.get(
                key + "/robots.txt", timeout=(s.connect_timeout, s.read_timeout), stream=True
            )
            with r:
                self.requests_made += 1
                status = r.status_code
                body = self._read_body(r, key + "/robots.txt", s.max_page_bytes)
        except (requests.RequestException, FetchError) as exc:
            log.warning("robots.txt of %s unreadable (%s): not fetching from it", key, exc)
            parser.disallow_all = True
            status, body = None, b""
        finally:
            with self._lock:
                self._last[parts.netloc] = time.monotonic()
        if status is not None:
            if status in (401, 403) or status >= 500:
                parser.disallow_all = True
            elif status >= 400:
                parser.allow_all = True
            else:
                parser.parse(body.decode("utf-8", errors="replace").splitlines())
        parser.modified()
        self._robots[key] = parser
        return parser


def _refuse_odd_redirect(r: requests.Response, *args, **kwargs) -> requests.Response:
    """Response hook, run before requests follows a redirect: only to http(s) URLs."""
    if r.is_redirect:
        target = urljoin(r.url, r.headers.get("Location", ""))
        if urlsplit(target).scheme not in ("http", "https"):
            r.close()
            raise RedirectRefused(f"{r.url} redirects to a non-http(s) URL: {target[:100]!r}")
    return r


def _is_timeout(exc: Exception) -> bool:
    if isinstance(exc, requests.Timeout):
        return True
    text = repr(exc)
    return "Timeout" in text or "timed out" in text
