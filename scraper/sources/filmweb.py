"""filmweb.pl: a person page and its photo gallery; the images are on fwcdn.pl.

Page structure assumed (fix the selectors below when the site changes):

- person page ``https://www.filmweb.pl/person/<Name>-<id>``: the portrait is
  ``<meta property="og:image" content="https://fwcdn.pl/ppo/…jpg">``; the gallery is linked as
  ``<a href="/person/<Name>-<id>/photos">``.
- gallery ``…/person/<Name>-<id>/photos`` (more pages as ``…/photos?page=<n>``): every photo is
  an ``<img>`` whose ``src`` or ``data-src`` is a ``.jpg``/``.webp`` on fwcdn.pl under a photo
  folder (``/ppo/`` person portraits, ``/pph/`` person photos; site assets live elsewhere, e.g.
  ``/front/``, and are ignored); the pager links
  ``<a href="…/photos?page=<n>">``.

Filmweb renders much of its site with JavaScript and sits behind bot protection at times; when
the gallery comes back empty, the portrait is all this adapter finds (see docs/scraping.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

from bs4 import BeautifulSoup

from scraper.errors import SeedError
from scraper.sources.base import GetPage, Record, Seed, host_matches

DEFAULT_BASE = "https://www.filmweb.pl/"
IMAGE_DOMAIN = "fwcdn.pl"
# -- selectors: the only lines that know filmweb's HTML ----------------------------------------
PORTRAIT = 'meta[property="og:image"]'
PERSON_PATH = re.compile(r"/person/([^/?#]+-\d+)")
GALLERY_LINK = 'a[href*="/photos"]'
PHOTO = "img"
PHOTO_ATTRS = ("data-src", "src")
PHOTO_FOLDER = re.compile(r"/(ppo|pph)/")
PHOTO_SUFFIX = re.compile(r"\.(jpe?g|webp|png)$", re.IGNORECASE)
PAGER = re.compile(r"[?&]page=(\d+)")
MAX_PAGES = 200


class Filmweb:
    """Harvests the portrait and the gallery photos of one filmweb person."""

    name = "filmweb"

    def __init__(self, base: str = DEFAULT_BASE, image_domain: str = IMAGE_DOMAIN) -> None:
        self.base = base if base.endswith("/") else base + "/"
        self.image_domain = image_domain

    def handles(self, url: str) -> bool:
        return url.startswith(self.base) or (
            self.base == DEFAULT_BASE and host_matches(url, "filmweb.pl")
        )

    def person_url(self, url: str) -> str:
        m = PERSON_PATH.search(urlsplit(url).path)
        if not m:
            raise SeedError(f"{url} is not a filmweb person page (…/person/<Name>-<id>)")
        return f"{self.base}person/{m.group(1)}"

    def records(self, seed: Seed, get_page: GetPage) -> Iterator[Record]:
        person = self.person_url(seed.url)
        seen: set[str] = set()
        final, html = get_page(person)
        soup = BeautifulSoup(html, "html.parser")
        for meta in soup.select(PORTRAIT):
            src = urljoin(final, meta.get("content", ""))
            if self._is_photo(src) and src not in seen:
                seen.add(src)
                yield Record(seed.name, seed.gender, src, self.name, page=final)
        url: str | None = person + "/photos"
        pages: set[str] = set()
        number = 1
        while url and url not in pages and len(pages) < MAX_PAGES:
            pages.add(url)
            final, html = get_page(url)
            soup = BeautifulSoup(html, "html.parser")
            for img in soup.select(PHOTO):
                for attr in PHOTO_ATTRS:
                    src = urljoin(final, img.get(attr) or "")
                    if self._is_photo(src) and src not in seen:
                        seen.add(src)
                        yield Record(seed.name, seed.gender, src, self.name, page=final)
                        break
            number += 1
            url = self._page(soup, final, number)

    def _is_photo(self, src: str) -> bool:
        path = urlsplit(src).path
        return (
            host_matches(src, self.image_domain)
            and bool(PHOTO_FOLDER.search(path))
            and bool(PHOTO_SUFFIX.search(path))
        )

    def _page(self, soup: BeautifulSoup, page_url: str, number: int) -> str | None:
        for a in soup.select(GALLERY_LINK):
            href = urljoin(page_url, a.get("href", ""))
            m = PAGER.search(href)
            if m and int(m.group(1)) == number:
                return href
        return None
