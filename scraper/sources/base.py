"""What every source adapter shares: the seed it starts from and the records it yields.

An adapter turns a :class:`Seed` into :class:`Record` s by reading pages through a ``get_page``
callable (the fetcher's, so it knows nothing of retries, robots.txt or disk). Gender always comes
from the seed, never from the image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

GetPage = Callable[[str], tuple[str, str]]  # url -> (final url, html text)


@dataclass(frozen=True)
class Seed:
    """A person to harvest: name, gender (female/male) and a person page or image URL."""

    name: str
    gender: str
    url: str
    line: int = 0  # where the seed came from, for messages


@dataclass(frozen=True)
class Record:
    """One image to download, labelled with the seed's person and gender."""

    person: str
    gender: str
    url: str
    source: str
    page: str | None = None  # the page the image was found on (sent as Referer)
    sha256: str | None = None  # expected content hash, when the list gives one
    bbox: tuple[int, int, int, int] | None = None  # face box x1, y1, x2, y2 (FaceScrub)
    face_id: str | None = None
    layout: str = "gender"  # "gender": OUT/{female,male}; "facescrub": OUT/{actresses,actors}
    fallback: str | None = None  # a page that shows the image, asked only if ``url`` fails


class Source(Protocol):
    name: str

    def handles(self, url: str) -> bool: ...

    def records(self, seed: Seed, get_page: GetPage) -> Iterator[Record]: ...


class HasFallback(Protocol):
    """A source whose records may name a ``fallback`` page to read when the image fails."""

    def fallback_image(self, record: Record, get_page: GetPage) -> str | None: ...


def host_matches(url: str, domain: str) -> bool:
    """Whether the URL's host (with port) is ``domain`` or a sub-domain of it."""
    netloc = urlsplit(url).netloc.lower()
    domain = domain.lower()
    return netloc == domain or netloc.endswith("." + domain)


def rebase(url: str, hosts: tuple[str, ...], base: str) -> str:
    """``url`` moved onto ``base`` when its host is one of the site's own ``hosts``.

    ``https://www.listal.com/a/pictures`` with base ``http://127.0.0.1:8000/listal/`` becomes
    ``http://127.0.0.1:8000/listal/a/pictures``: seeds, and the absolute links real pages carry,
    then reach the mirror the user named (``--base``). Other URLs are returned unchanged.
    """
    parts = urlsplit(url)
    if parts.netloc.lower() not in hosts:
        return url
    return base + parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")


def unbase(url: str, base: str, site: str) -> str:
    """The inverse of :func:`rebase`: a URL under ``base`` as the real ``site`` writes it."""
    return site + url[len(base) :] if url.startswith(base) else url
