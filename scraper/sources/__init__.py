"""Source adapters: each turns a seed into ``(person, gender, image_url)`` records.

:func:`default_sources` gives the known sites with their real base URLs; ``bases`` points any of
them elsewhere (a mirror, or the local test site). :func:`source_for` picks the adapter of a URL;
a URL that belongs to no known site is taken as a direct image URL.
"""

from __future__ import annotations

from anfe.scraper.sources.base import GetPage, Record, Seed, Source
from anfe.scraper.sources.direct import Direct
from anfe.scraper.sources.filmweb import Filmweb
from anfe.scraper.sources.listal import Listal

__all__ = ["GetPage", "Record", "Seed", "Source", "default_sources", "source_for"]


def default_sources(
    bases: dict[str, str] | None = None, image_domains: dict[str, str] | None = None
) -> list[Source]:
    """The site adapters, optionally with other base URLs / image hosts (``{"listal": URL}``)."""
    bases = bases or {}
    domains = image_domains or {}
    listal_kw = {"base": bases["listal"]} if "listal" in bases else {}
    if "listal" in domains:
        listal_kw["image_domain"] = domains["listal"]
    filmweb_kw = {"base": bases["filmweb"]} if "filmweb" in bases else {}
    if "filmweb" in domains:
        filmweb_kw["image_domain"] = domains["filmweb"]
    return [Listal(**listal_kw), Filmweb(**filmweb_kw)]


def source_for(url: str, sources: list[Source]) -> Source:
    """The adapter that knows this URL, else the direct-image source."""
    for s in sources:
        if s.handles(url):
            return s
    return Direct()
