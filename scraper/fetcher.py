"""The polite HTTP client that every source uses; it knows nothing of any particular site.

- one ``requests.Session`` with a clear User-Agent, optional proxies and extra headers;
- redirects are followed by hand (at most ``max_redirects``), so every hop is checked like the
  first URL: http(s) only (never ``file:``, ``ftp:``, ``data:``...), a public address (see
  :mod:`anfe.scraper.addresses`; ``allow_private_hosts`` for local mirrors), robots.txt and the
  per-host delay; a redirect back to a URL already visited ends as ``redirect_loop``;
- connections go only to the addresses they checked (:mod:`anfe.scraper.pinning`), so a name cannot
  answer a public address to the check and a private one to the connection (DNS rebinding);
- robots.txt of every host is read once (through the same checks) and honoured, including a
  ``Crawl-delay`` longer than ours. As RFC 9309 says, a missing robots.txt or any 4xx allows
  everything, while one that cannot be read (host down, timeout, 5xx) disallows the host *for
  now*: its URLs fail as ``robots_unreachable``, which is transient, so the next run asks again;
- a bot-protection challenge (403/429/503 with a challenge page) stops the host for the rest of
  the run as ``blocked_by_challenge``, said once in the log, never retried in a loop;
- at least ``delay`` seconds between two requests to the same host, retries included;
- retries with exponential backoff: connection errors in urllib3's ``Retry`` inside the
  session, 429 and 5xx through a second urllib3 ``Retry`` here (which honours ``Retry-After``,
  capped at ``max_retry_after`` seconds), after the challenge check and with the host's delay;
- connect and read timeouts, plus a deadline for the whole body (a server trickling bytes);
- a maximum download size, checked on ``Content-Length`` and while streaming;
- for images: a ``Content-Type`` of ``image/*`` and the first bytes of a known image format.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.robotparser
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from anfe.centroids.imaging.formats import sniff_format
from anfe.scraper.addresses import Resolver, check_public, public_addresses
from anfe.scraper.errors import (
    BlockedByChallenge,
    BodyTooLarge,
    FetchError,
    FetchTimeout,
    HttpStatus,
    NotAnImage,
    PrivateAddress,
    RedirectLoop,
    RedirectRefused,
    RobotsDisallowed,
    RobotsUnavailable,
)
from anfe.scraper.pinning import PinnedAdapter

log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = (
    "anfe-scraper/0.1 (research; gender-recognition dataset builder; "
    "+https://github.com/anfe-project/anfe)"
)
RETRY_STATUSES = (429, 500, 502, 503, 504)
CHALLENGE_STATUSES = (403, 429, 503)
# Text that bot-protection interstitials carry (Cloudflare, DataDome, PerimeterX, Imperva,
# Sucuri, DDoS-Guard, reCAPTCHA/hCaptcha walls); looked for in the first bytes of the body.
CHALLENGE_MARKERS = (
    b"cf-chl",
    b"challenge-platform",
    b"just a moment...",
    b"attention required! | cloudflare",
    b"captcha-delivery.com",
    b"px-captcha",
    b"_incapsula_resource",
    b"sucuri website firewall",
    b"ddos-guard",
    b"checking your browser",
    b"g-recaptcha",
    b"h-captcha",
)
CHALLENGE_PEEK = 64 * 1024
# redirects followed for robots.txt (RFC 9309: at least five); past them it is unreadable for now
ROBOTS_REDIRECTS = 5


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
    max_redirects: int = 10
    obey_robots: bool = True
    allow_private_hosts: bool = False  # only for local mirrors and test sites
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


def is_challenge(status: int, headers: Mapping[str, str], body_start: bytes) -> bool:
    """Whether an answer is a bot-protection challenge page rather than a real error."""
    if status not in CHALLENGE_STATUSES:
        return False
    if str(headers.get("cf-mitigated", "")).lower() == "challenge":
        return True
    low = body_start.lower()
    return any(m in low for m in CHALLENGE_MARKERS)


class Fetcher:
    """GET pages and images politely. One instance per run; not shared between processes.

    ``resolve`` turns a host name into its checked public addresses (the default refuses
    non-public ones); it is not used with ``allow_private_hosts``.
    """

    def __init__(
        self, settings: FetchSettings | None = None, resolve: Resolver = public_addresses
    ) -> None:
        self.settings = s = settings or FetchSettings()
        self.resolve = resolve
        self.session = requests.Session()
        self.session.headers["User-Agent"] = s.user_agent
        self.session.headers.update(s.headers)
        if s.proxies:
            self.session.proxies.update(s.proxies)
        # Connection errors are retried inside the session; statuses in _get (see _status_retry).
        retry = Retry(
            total=s.retries,
            connect=s.retries,
            read=min(1, s.retries),  # a hung server is asked once more, not many times
            status=0,
            other=0,
            backoff_factor=s.backoff,
            status_forcelist=(),
            allowed_methods=frozenset({"GET", "HEAD"}),
            respect_retry_after_header=False,
            raise_on_status=False,
        )
        if s.allow_private_hosts:
            adapter = HTTPAdapter(max_retries=retry)
        else:
            adapter = PinnedAdapter(resolve, max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._robots: dict[str, urllib.robotparser.RobotFileParser | FetchError] = {}
        self._blocked: dict[str, str] = {}  # host -> why the run stopped asking it
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
        """Whether robots.txt of the URL's host lets our user agent fetch it.

        Raises :class:`RobotsUnavailable` when robots.txt cannot be read for now.
        """
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
        status_retry = self._status_retry()
        visited: list[str] = []
        current = url
        while True:
            self._check_hop(current)
            if not self.allowed(current):
                raise RobotsDisallowed(
                    f"robots.txt of {urlsplit(current).netloc} disallows {current}"
                )
            with self._request(current, headers, self._crawl_delay(current)) as r:
                if r.is_redirect:
                    visited.append(current)
                    current = self._redirect_target(r, current, visited)
                    continue
                if r.status_code >= 400:
                    self._check_challenge(r, current)
                    if r.status_code in RETRY_STATUSES:
                        try:
                            status_retry = status_retry.increment("GET", current, response=r.raw)
                        except MaxRetryError:
                            raise HttpStatus(f"{current} answered HTTP {r.status_code}",
                                             r.status_code) from None  # fmt: skip
                        status_retry.sleep(r.raw)
                        continue
                    raise HttpStatus(f"{current} answered HTTP {r.status_code}", r.status_code)
                ctype = r.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if want_image and not ctype.startswith("image/"):
                    raise NotAnImage(f"{current} has content type {ctype or 'none'}, not an image")
                length = r.headers.get("Content-Length", "")
                if length.isdigit() and int(length) > max_bytes:
                    raise BodyTooLarge(f"{current} has {length} bytes; the limit is {max_bytes}")
                body = self._read_body(r, current, max_bytes)
                return Response(url=current, status=r.status_code, content_type=ctype, body=body)

    def _status_retry(self) -> Retry:
        s = self.settings
        return Retry(
            total=None,
            status=s.retries,
            backoff_factor=s.backoff,
            status_forcelist=RETRY_STATUSES,
            respect_retry_after_header=True,
            retry_after_max=s.max_retry_after,
        )

    def _check_hop(self, url: str) -> None:
        """What every URL, first or redirected to, must pass before it is requested."""
        host = urlsplit(url).netloc
        with self._lock:
            blocked = self._blocked.get(host)
        if blocked:
            raise BlockedByChallenge(blocked)
        if not self.settings.allow_private_hosts:
            proxied = bool(self.session.proxies.get(urlsplit(url).scheme))
            check_public(url, resolve=not proxied, resolver=self.resolve)

    def _redirect_target(
        self, r: requests.Response, current: str, visited: list[str], limit: int | None = None
    ) -> str:
        """Where ``r`` redirects to; :class:`RedirectLoop` past ``limit`` redirects (default:
        ``max_redirects``) or back to a URL in ``visited``."""
        limit = self.settings.max_redirects if limit is None else limit
        target = urljoin(current, r.headers.get("Location", ""))
        if urlsplit(target).scheme not in ("http", "https"):
            raise RedirectRefused(f"{current} redirects to a non-http(s) URL: {target[:100]!r}")
        if target in visited:
            raise RedirectLoop(f"{visited[0]} redirects in a loop (back to {target[:200]})")
        if len(visited) > limit:
            raise RedirectLoop(f"{visited[0]} redirects more than {limit} times")
        return target

    def _check_challenge(self, r: requests.Response, url: str) -> None:
        if r.status_code not in CHALLENGE_STATUSES:
            return
        try:
            start = r.raw.read(CHALLENGE_PEEK, decode_content=True) or b""
        except Exception:  # a body we cannot read is no evidence of a challenge
            start = b""
        if not is_challenge(r.status_code, r.headers, start):
            return
        host = urlsplit(url).netloc
        message = (
            f"{host} answered with a bot-protection challenge (HTTP {r.status_code}); "
            "no more requests to it in this run"
        )
        with self._lock:
            first = host not in self._blocked
            self._blocked[host] = message
        if first:
            log.warning("%s", message)
        raise BlockedByChallenge(message)

    def _request(self, url: str, headers: dict[str, str] | None, delay: float):
        """One GET, no redirects followed, after the host's delay; errors become FetchError."""
        s = self.settings
        netloc = urlsplit(url).netloc
        self._wait(netloc, delay)
        try:
            r = self.session.get(
                url,
                headers=headers,
                timeout=(s.connect_timeout, s.read_timeout),
                stream=True,
                allow_redirects=False,
            )
        except (requests.Timeout, requests.exceptions.ConnectionError) as exc:
            if _is_timeout(exc):
                raise FetchTimeout(f"{url} timed out") from None
            raise FetchError(f"cannot connect to {netloc}: {type(exc).__name__}") from None
        except requests.RequestException as exc:
            raise FetchError(f"{url} failed: {type(exc).__name__}: {exc}") from None
        finally:
            with self._lock:
                self._last[netloc] = time.monotonic()
        self.requests_made += 1
        return _Closing(r, netloc, self)

    def _read_body(self, r: requests.Response, url: str, max_bytes: int) -> bytes:
        deadline = time.monotonic() + self.settings.body_deadline
        chunks, size = [], 0
        try:
            for chunk in r.iter_content(chunk_size=64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise BodyTooLarge(f"{url} sent more than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise FetchTimeout(f"{url} did not finish in {self.settings.body_deadline:g} s")
                chunks.append(chunk)
        except requests.RequestException as exc:
            if _is_timeout(exc):
                raise FetchTimeout(f"{url} timed out while sending its body") from None
            raise FetchError(f"{url} failed: {type(exc).__name__}") from None
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
        found = self._robots.get(key)
        if found is None:
            found = self._robots[key] = self._read_robots(key)
        if isinstance(found, FetchError):
            raise type(found)(found.message)
        return found

    def _read_robots(self, key: str) -> urllib.robotparser.RobotFileParser | FetchError:
        """The parser of ``key``/robots.txt, or the error every URL of that host gets for now."""
        parser = urllib.robotparser.RobotFileParser(key + "/robots.txt")
        url, visited = key + "/robots.txt", []
        try:
            while True:
                self._check_hop(url)
                with self._request(url, None, self.settings.delay) as r:
                    if r.is_redirect:  # RFC 9309: follow at least five redirects
                        visited.append(url)
                        url = self._redirect_target(r, url, visited, ROBOTS_REDIRECTS)
                        continue
                    if r.status_code >= 400:
                        self._check_challenge(r, url)
                    status = r.status_code
                    body = self._read_body(r, url, self.settings.max_page_bytes)
                    break
        except (BlockedByChallenge, PrivateAddress) as exc:
            return exc
        except FetchError as exc:
            log.warning("robots.txt of %s unreadable (%s): not fetching from it for now", key, exc)
            return RobotsUnavailable(f"robots.txt of {key} cannot be read for now ({exc.code})")
        if status >= 500:
            log.warning(
                "robots.txt of %s answered HTTP %d: not fetching from it for now", key, status
            )
            return RobotsUnavailable(f"robots.txt of {key} answered HTTP {status}; try again later")
        if status >= 400:
            parser.allow_all = True  # RFC 9309 2.3.1.3: "unavailable" means no restrictions
        else:
            parser.parse(body.decode("utf-8", errors="replace").splitlines())
        parser.modified()
        return parser


class _Closing:
    """Context manager over a streamed response: closes it and notes the time of the request."""

    def __init__(self, r: requests.Response, netloc: str, fetcher: Fetcher) -> None:
        self.r, self.netloc, self.fetcher = r, netloc, fetcher

    def __enter__(self) -> requests.Response:
        return self.r

    def __exit__(self, *exc: object) -> None:
        self.r.close()
        with self.fetcher._lock:
            self.fetcher._last[self.netloc] = time.monotonic()


def _is_timeout(exc: Exception) -> bool:
    if isinstance(exc, requests.Timeout):
        return True
    text = repr(exc)
    return "Timeout" in text or "timed out" in text
