"""Errors of the scraper: each has a stable ``code`` that goes into the manifest.

``transient`` tells whether a later run should try the URL again (timeouts, server errors) or
whether the answer is final (robots.txt forbids it, the body is not an image, a checksum differs).
"""

from __future__ import annotations

from anfe.centroids.errors import AnfeError


class FetchError(AnfeError):
    """A URL could not be fetched as asked."""

    code = "fetch_failed"
    kind = "download"
    transient = True


class RobotsDisallowed(FetchError):
    """robots.txt of the host forbids our user agent to fetch this URL."""

    code = "robots_disallowed"
    transient = False


class RobotsUnavailable(FetchError):
    """robots.txt could not be read (host down, timeout, 5xx): disallowed for now, not forever.

    RFC 9309 (2.3.1.4): an unreachable robots.txt means "disallow" until it can be read, so the
    URLs are tried again on the next run.
    """

    code = "robots_unreachable"
    transient = True


class BlockedByChallenge(FetchError):
    """The host answered with a bot-protection challenge page: the run stops asking that host."""

    code = "blocked_by_challenge"
    transient = True


class PrivateAddress(FetchError):
    """The host is, or resolves to, a loopback, private, link-local or unspecified address.

    Transient: the refusal comes from this run's options (``--allow-private-hosts``) and the
    host's DNS, not from the server, so a later run decides again (no request was sent).
    """

    code = "private_address"
    transient = True


class RedirectLoop(FetchError):
    """The redirects came back to a URL already visited, or there were too many of them."""

    code = "redirect_loop"
    transient = False


class HttpStatus(FetchError):
    """The server answered with an error status (after the retries for 429 and 5xx)."""

    code = "http_error"

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.transient = status_code == 429 or status_code >= 500


class FetchTimeout(FetchError):
    """The server did not answer, or did not finish the body, in time."""

    code = "timeout"


class BodyTooLarge(FetchError):
    """The body is larger than the configured maximum download size."""

    code = "too_large"
    transient = False


class NotAnImage(FetchError):
    """The body is not an image (wrong content type, or its first bytes are no image format)."""

    code = "not_an_image"
    transient = False


class RedirectRefused(FetchError):
    """The server redirected to a URL that is not http(s) (``file:``, ``ftp:``, ...)."""

    code = "redirect_refused"
    transient = False


class ChecksumMismatch(FetchError):
    """The downloaded bytes do not have the SHA-256 that the list gives."""

    code = "sha256_mismatch"
    transient = False


class SeedError(AnfeError):
    """A seed (CSV row, list file, URL) is malformed or names no known source."""

    code = "seed_invalid"
    kind = "usage"
