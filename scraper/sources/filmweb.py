"""filmweb.pl: a person's portrait and photo gallery; the images are on fwcdn.pl.

Nothing here is confirmed on a saved filmweb page (none is in ../shared/fixtures). What is
**confirmed by public code and data** that reference filmweb images: gallery photos (film
stills) are ``fwcdn.pl/fph/<a>/<b>/<film id>/<photo id>_<n>.<size>.jpg`` and person portraits
are under ``fwcdn.pl/ppo/``; no ``/pph/`` URL appears anywhere (it is still accepted).
**Assumed** (fix the marked selectors below when the site differs):

- the JSON person API ``https://www.filmweb.pl/api/v1/person/<id>/info`` (used by several
  public clients) answers ``{"name": …, "imagePath": "/…/<n>.$.jpg"}``; the portrait is
  ``https://fwcdn.pl/ppo`` + that path with the size ``$`` as ``3``. It is asked first; when it
  does not answer (or names no image) the person page is read instead;
- person page ``https://www.filmweb.pl/person/<Name>-<id>``: the portrait is
  ``<meta property="og:image" content="https://fwcdn.pl/ppo/…jpg">``;
- gallery ``…/person/<Name>-<id>/photos`` (more pages as ``…/photos?page=<n>``): every photo
  is an ``<img>`` whose ``src`` or ``data-src`` is a ``.jpg``/``.webp`` on fwcdn.pl under a
  photo folder (site assets live elsewhere, e.g. ``/front/``, and are ignored).

Gallery photos are film stills with other people in them: ``anfe clean``'s ``other_person``
check is what keeps them honest. Filmweb renders much of its site with JavaScript and sits
behind bot protection at times; when the gallery comes back empty, the portrait is all this
adapter finds (see docs/scraping.md).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

from bs4 import BeautifulSoup

from anfe.centroids.errors import AnfeError
from anfe.scraper.errors import SeedError
from anfe.scraper.sources.base import GetPage, Record, Seed, host_matches, rebase

log = logging.getLogger(__name__)

DEFAULT_BASE = "https://www.filmweb.pl/"
SITE_HOSTS = ("www.filmweb.pl", "filmweb.pl")
IMAGE_DOMAIN = "fwcdn.pl"
# -- selectors: the only lines that know filmweb's HTML ----------------------------------------
PERSON_API = "api/v1/person/{id}/info"  # assumed
API_IMAGE_KEYS = ("imagePath", "posterPath")  # assumed
API_PORTRAIT = "/ppo{path}"  # assumed: on the image domain, the size "$" as API_SIZE
API_SIZE = "3"  # assumed
PORTRAIT = 'meta[property="og:image"]'  # assumed
PERSON_PATH = re.compile(r"/person/([^/?#]+-(\d+))")
GALLERY_LINK = 'a[href*="/photos"]'  # assumed
PHOTO = "img"  # assumed
PHOTO_ATTRS = ("data-src", "src")  # assumed
PHOTO_FOLDER = re.compile(r"/(ppo|fph|pph)/")  # ppo, fph confirmed by public code; pph assumed
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
        return url.startswith(self.base) or urlsplit(url).netloc.lower() in SITE_HOSTS

    def person_url(self, url: str) -> str:
        m = PERSON_PATH.search(urlsplit(rebase(url, SITE_HOSTS, self.base)).path)
        if not m:
            raise SeedError(f"{url} is not a filmweb person page (…/person/<Name>-<id>)")
        return f"{self.base}person/{m.group(1)}"

    def records(self, seed: Seed, get_page: GetPage) -> Iterator[Record]:
        person = self.person_url(seed.url)
        seen: set[str] = set()
        portrait = self._api_portrait(person, seed, get_page)
        if portrait:
            seen.add(portrait)
            yield Record(seed.name, seed.gender, portrait, self.name, page=person)
        else:
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

    def _api_portrait(self, person: str, seed: Seed, get_page: GetPage) -> str | None:
        """The portrait URL the person API gives, or None when it does not answer usefully."""
        m = PERSON_PATH.search(urlsplit(person).path)
        api = self.base + PERSON_API.format(id=m.group(2))
        try:
            _, text = get_page(api)
            info = json.loads(text)
        except (AnfeError, ValueError) as exc:
            log.info("filmweb person API %s gave no answer (%s); reading the person page", api,
                     getattr(exc, "code", "not JSON"))  # fmt: skip
            return None
        if not isinstance(info, dict):
            return None
        name = info.get("name")
        if isinstance(name, str) and name.strip() and name.strip() != seed.name:
            log.info("filmweb calls person %s %r; the seed says %r", m.group(2), name, seed.name)
        path = next((info[k] for k in API_IMAGE_KEYS if isinstance(info.get(k), str)), None)
        if not path:
            return None
        scheme = urlsplit(self.base).scheme
        src = f"{scheme}://{self.image_domain}" + API_PORTRAIT.format(path=path)
        src = src.replace("$", API_SIZE)
        return src if self._is_photo(src) else None

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
