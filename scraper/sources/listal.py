"""listal.com: a person's picture pages, each picture's viewimage page, the full image on lisimg.com.

Page structure assumed (fix the selectors below when the site changes):

- picture list ``https://www.listal.com/<slug>/pictures`` and ``…/pictures/<n>`` for page n:
  every picture is a link ``<a href="https://www.listal.com/viewimage/<id>">`` around its
  thumbnail; the pager links the other pages as ``<a href="…/<slug>/pictures/<n>">``.
- viewimage page ``https://www.listal.com/viewimage/<id>``: the picture is an
  ``<img src="https://ilarge.lisimg.com/image/<id>/<size>full-<slug>.jpg">``; we ask for the
  ``1080full`` size. When the page shows no such image, that URL is built from the id and slug.

A seed URL may be the person page ``https://www.listal.com/<slug>`` or any of its picture pages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

from bs4 import BeautifulSoup

from scraper.errors import SeedError
from scraper.sources.base import GetPage, Record, Seed, host_matches

DEFAULT_BASE = "https://www.listal.com/"
DEFAULT_IMAGE_BASE = "https://ilarge.lisimg.com/"
IMAGE_DOMAIN = "lisimg.com"
# -- selectors: the only lines that know listal's HTML -----------------------------------------
VIEWIMAGE_LINK = 'a[href*="/viewimage/"]'
VIEWIMAGE_ID = re.compile(r"/viewimage/(\d+)")
PAGER_LINK = 'a[href*="/pictures/"]'
PAGER_NUMBER = re.compile(r"/pictures/(\d+)/?$")
FULL_IMAGE = 'img[src*="/image/"]'
FULL_IMAGE_PATH = re.compile(r"/image/(\d+)/(\d+)full-([^/]+)$")
FULL_SIZE = "1080"
MAX_PAGES = 500


class Listal:
    """Harvests every picture of one listal person, page after page."""

    name = "listal"

    def __init__(
        self,
        base: str = DEFAULT_BASE,
        image_base: str = DEFAULT_IMAGE_BASE,
        image_domain: str = IMAGE_DOMAIN,
    ) -> None:
        self.base = base if base.endswith("/") else base + "/"
        self.image_base = image_base if image_base.endswith("/") else image_base + "/"
        self.image_domain = image_domain

    def handles(self, url: str) -> bool:
        return url.startswith(self.base) or (
            self.base == DEFAULT_BASE and host_matches(url, "listal.com")
        )

    def slug(self, url: str) -> str:
        """The person slug of a listal person or pictures URL."""
        path = urlsplit(url).path
        base_path = urlsplit(self.base).path
        rest = path[len(base_path) :] if path.startswith(base_path) else path.lstrip("/")
        slug = rest.strip("/").split("/")[0]
        if not slug or slug == "viewimage":
            raise SeedError(f"{url} is not a listal person page")
        return slug

    def records(self, seed: Seed, get_page: GetPage) -> Iterator[Record]:
        slug = self.slug(seed.url)
        url = f"{self.base}{slug}/pictures"
        seen_pages, seen_ids = set(), set()
        page_no = 1
        while url and len(seen_pages) < MAX_PAGES:
            seen_pages.add(url)
            final, html = get_page(url)
            soup = BeautifulSoup(html, "html.parser")
            for image_id, view_url in self._viewimage_links(soup, final):
                if image_id in seen_ids:
                    continue
                seen_ids.add(image_id)
                image = self._full_image(image_id, view_url, slug, get_page)
                yield Record(seed.name, seed.gender, image, self.name, page=view_url)
            page_no += 1
            url = self._page_link(soup, final, page_no)
            if url in seen_pages:
                break

    def _viewimage_links(self, soup: BeautifulSoup, page_url: str) -> list[tuple[str, str]]:
        out = []
        for a in soup.select(VIEWIMAGE_LINK):
            href = urljoin(page_url, a.get("href", ""))
            m = VIEWIMAGE_ID.search(urlsplit(href).path)
            if m:
                out.append((m.group(1), href))
        return out

    def _page_link(self, soup: BeautifulSoup, page_url: str, number: int) -> str | None:
        for a in soup.select(PAGER_LINK):
            href = urljoin(page_url, a.get("href", ""))
            m = PAGER_NUMBER.search(urlsplit(href).path)
            if m and int(m.group(1)) == number:
                return href
        return None

    def _full_image(self, image_id: str, view_url: str, slug: str, get_page: GetPage) -> str:
        final, html = get_page(view_url)
        soup = BeautifulSoup(html, "html.parser")
        for img in soup.select(FULL_IMAGE):
            src = urljoin(final, img.get("src", ""))
            m = FULL_IMAGE_PATH.search(urlsplit(src).path)
            if m and m.group(1) == image_id and host_matches(src, self.image_domain):
                start, end = m.span(2)
                path = urlsplit(src).path
                prefix = src[: src.index(path)]
                return prefix + path[:start] + FULL_SIZE + path[end:]
        return f"{self.image_base}image/{image_id}/{FULL_SIZE}full-{slug}.jpg"
