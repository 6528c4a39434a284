"""The ``direct`` source: a seed whose URL is the image itself."""

from __future__ import annotations

from collections.abc import Iterator

from anfe.scraper.sources.base import GetPage, Record, Seed


class Direct:
    """Yields the seed's URL as the one image of that seed."""

    name = "direct"

    def handles(self, url: str) -> bool:
        return url.startswith(("http://", "https://"))

    def records(self, seed: Seed, get_page: GetPage) -> Iterator[Record]:
        yield Record(person=seed.name, gender=seed.gender, url=seed.url, source=self.name)
