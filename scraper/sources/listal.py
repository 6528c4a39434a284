"""listal.com: the picture pages of a person (or a movie), and each picture at its largest size.

Structure **confirmed on real saved pages** (``../shared/fixtures/scraper/listal``: Marilyn
Monroe's pictures page 1 and last page 371, and Batman (1989)'s page 1, from July 2018):

- picture list ``https://www.listal.com/<slug>/pictures`` (movies: ``movie/<name>``), 20
  pictures a page. Each is ``<div class='imagewrap-inner'><a href='http://www.listal.com/
  viewimage/<id>'><img src='http://i3.lisimg.com/<id>/176full.jpg' /></a></div>``: the link is
  absolute and uses http; the thumbnail is ``<id>/<size>full.jpg`` without a slug.
- the pager ``<div class='pages'>`` links pages as ``/<slug>/pictures//<n>`` for people (a
  **double slash**) and ``/movie/<name>/pictures/<n>`` for movies; page 1 is linked as
  ``/<slug>/pictures/``. On the last page "Next" is an unlinked ``<span class='nextprev'>``.

**Assumed** (no real page saved; from public scrapers, see docs/scraping.md):

- the CDN serves a picture at a larger size when the size number is raised, up to the
  original: we ask for ``<id>/10000full.jpg`` (gallery-dl and other public scrapers ask for a
  large number), built from the thumbnail, so no viewimage page is requested;
- when that image fails, the viewimage page ``https://www.listal.com/viewimage/<id>`` shows the
  picture as an ``<img>`` on ``lisimg.com`` whose path is ``…/<id>/<size>full[-<slug>].jpg``
  (gallery-dl: ``ilarge.lisimg.com/image/<id>/1030full-jim-carrey.jpg``); that URL is used as
  it stands.

Links to www.listal.com are moved onto ``base`` (a mirror, the test site), seeds included.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from bs4 import BeautifulSoup

from anfe.scraper.errors import SeedError
from anfe.scraper.sources.base import GetPage, Record, Seed, host_matches, rebase, unbase

DEFAULT_BASE = "https://www.listal.com/"
SITE_HOSTS = ("www.listal.com", "listal.com")
IMAGE_DOMAIN = "lisimg.com"
# -- selectors: the only lines that know listal's HTML -----------------------------------------
PICTURE = ".imagewrap-inner a[href]"  # confirmed
VIEWIMAGE_ID = re.compile(r"/viewimage/(\d+)")  # confirmed
PAGER = ".pages a[href]"  # confirmed
PICTURES_PATH = re.compile(r"^/(.+?)/pictures(?:/+(\d+))?/?$")  # confirmed: '//2' and '/2'
IMAGE_PATH = re.compile(r"/(\d+)/(\d+)full(-[^/]*)?\.jpg$")  # confirmed without slug
VIEW_IMAGE = "img[src]"  # assumed: the picture is an <img> of that id on the image domain
LARGEST = "10000"  # assumed: the CDN caps the size at the original's
MAX_PAGES = 1000


@dataclass
class Picture:
    """One picture of a list page: its id, its viewimage page and its thumbnail."""

    image_id: str
    view_url: str
    thumb: str | None


@dataclass
class PicturePage:
    """What one picture list page gives: its pictures and where the pager goes."""

    pictures: list[Picture]
    next_url: str | None
    last_page: int


class Listal:
    """Harvests every picture of one listal person, page after page."""

    name = "listal"

    def __init__(self, base: str = DEFAULT_BASE, image_domain: str = IMAGE_DOMAIN) -> None:
        self.base = base if base.endswith("/") else base + "/"
        self.image_domain = image_domain

    def handles(self, url: str) -> bool:
        return url.startswith(self.base) or urlsplit(url).netloc.lower() in SITE_HOSTS

    def _fetch_url(self, url: str) -> str:
        return rebase(url, SITE_HOSTS, self.base)

    def _link(self, href: str, page_url: str) -> str:
        """An href of a page fetched from ``page_url``, resolved as on the real site, rebased."""
        return self._fetch_url(urljoin(unbase(page_url, self.base, DEFAULT_BASE), href))

    def slug(self, url: str) -> str:
        """The slug of a listal person/movie or pictures URL: ``marilyn-monroe``, ``movie/batman``."""
        path = urlsplit(unbase(self._fetch_url(url), self.base, DEFAULT_BASE)).path
        m = PICTURES_PATH.match(path)
        slug = (m.group(1) if m else path).strip("/")
        if not slug or slug.startswith("viewimage") or "//" in slug:
            raise SeedError(f"{url} is not a listal person page")
        return slug

    def records(self, seed: Seed, get_page: GetPage) -> Iterator[Record]:
        slug = self.slug(seed.url)
        url: str | None = f"{self.base}{slug}/pictures"
        seen_pages: set[str] = set()
        seen_ids: set[str] = set()
        while url and url not in seen_pages and len(seen_pages) < MAX_PAGES:
            seen_pages.add(url)
            final, html = get_page(url)
            page = self.parse_pictures(html, final, slug)
            for pic in page.pictures:
                if pic.image_id in seen_ids:
                    continue
                seen_ids.add(pic.image_id)
                large = self.largest(pic)
                if large:
                    yield Record(seed.name, seed.gender, large, self.name, page=final,
                                 fallback=pic.view_url)  # fmt: skip
                    continue
                image = self.fallback_image(Record("", "", "", self.name, fallback=pic.view_url),
                                            get_page)  # fmt: skip
                if image:
                    yield Record(seed.name, seed.gender, image, self.name, page=pic.view_url)
            url = page.next_url

    def parse_pictures(self, html: str, page_url: str, slug: str) -> PicturePage:
        """The pictures of a list page fetched from ``page_url``, and the next page's URL."""
        soup = BeautifulSoup(html, "html.parser")
        pictures = []
        for a in soup.select(PICTURE):
            view = self._link(a.get("href", ""), page_url)
            m = VIEWIMAGE_ID.search(urlsplit(view).path)
            if not m:
                continue
            img = a.find("img")
            thumb = urljoin(page_url, img.get("src", "")) if img and img.get("src") else None
            pictures.append(Picture(m.group(1), view, thumb))
        current = _page_number(unbase(page_url, self.base, DEFAULT_BASE))
        next_url, last = None, current
        for a in soup.select(PAGER):
            link = self._link(a.get("href", ""), page_url)
            m = PICTURES_PATH.match(urlsplit(unbase(link, self.base, DEFAULT_BASE)).path)
            if not m or m.group(1) != slug:
                continue
            number = int(m.group(2) or 1)
            last = max(last, number)
            if number == current + 1:
                next_url = link
        return PicturePage(pictures, next_url, last)

    def largest(self, pic: Picture) -> str | None:
        """The picture at the largest size, built from its thumbnail when that is possible."""
        if not pic.thumb or not host_matches(pic.thumb, self.image_domain):
            return None
        path = urlsplit(pic.thumb).path
        m = IMAGE_PATH.search(path)
        if not m or m.group(1) != pic.image_id:
            return None
        start, end = m.span(2)
        prefix = pic.thumb[: pic.thumb.index(path)]
        return prefix + path[:start] + LARGEST + path[end:]

    def fallback_image(self, record: Record, get_page: GetPage) -> str | None:
        """The image URL the viewimage page of ``record`` shows, or None."""
        if not record.fallback:
            return None
        m = VIEWIMAGE_ID.search(urlsplit(record.fallback).path)
        if not m:
            return None
        final, html = get_page(record.fallback)
        found = []
        for img in BeautifulSoup(html, "html.parser").select(VIEW_IMAGE):
            src = urljoin(final, img.get("src", ""))
            p = IMAGE_PATH.search(urlsplit(src).path)
            if p and p.group(1) == m.group(1) and host_matches(src, self.image_domain):
                found.append((int(p.group(2)), src))
        return max(found)[1] if found else None


def _page_number(url: str) -> int:
    m = PICTURES_PATH.match(urlsplit(url).path)
    return int(m.group(2)) if m and m.group(2) else 1
