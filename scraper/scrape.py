"""The scrape loop: seeds → source records → polite downloads → files and manifest under OUT.

Resumable: the manifest says which URLs are finished (saved, duplicate, or failed for good) and
how many images each person already has, so a rerun fetches only what is missing. The same bytes
under two URLs are saved once per person (the second URL is recorded as ``duplicate``).
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from anfe.centroids.errors import AnfeError
from anfe.centroids.imaging.formats import content_hash, sniff_format
from anfe.scraper.errors import ChecksumMismatch, FetchError, PrivateAddress, RobotsDisallowed
from anfe.scraper.fetcher import Fetcher, Response
from anfe.scraper.output import (
    EXTENSIONS,
    Entry,
    Manifest,
    remove_partials,
    safe_join,
    slugify,
    write_atomic,
)
from anfe.scraper.sources import Record, Seed, Source, source_for
from anfe.scraper.sources.facescrub import FaceScrubList, iter_people

log = logging.getLogger(__name__)

FOLDERS = {
    "gender": {"female": "female", "male": "male"},
    "facescrub": {"female": "actresses", "male": "actors"},
}
CROPS = "crops"
NO_FALLBACK = (
    RobotsDisallowed,
    PrivateAddress,
)  # refusals a fallback page must not get around  # OUT/crops/{actresses,actors}/<Name>/: FaceScrub face crops


@dataclass
class Person:
    """One person to harvest and where their records come from."""

    name: str
    gender: str
    records: Iterable[Record] | None = None  # ready records (FaceScrub)
    seeds: list[Seed] = field(default_factory=list)  # or seeds to expand through sources


@dataclass
class Limits:
    max_per_person: int | None = None
    max_people: int | None = None


def people_from_seeds(seeds: list[Seed]) -> list[Person]:
    """Group seed rows by (name, gender), keeping the order of first appearance."""
    out: dict[tuple[str, str], Person] = {}
    for s in seeds:
        p = out.setdefault((s.name, s.gender), Person(s.name, s.gender))
        p.seeds.append(s)
    return list(out.values())


def people_from_facescrub(lists: list[FaceScrubList]) -> list[Person]:
    return [Person(n, g, records=recs) for n, g, recs in iter_people(lists)]


class Scraper:
    """Downloads the records of many people into OUT, with a manifest that makes it resumable."""

    def __init__(
        self, out: Path, fetcher: Fetcher, sources: list[Source], limits: Limits | None = None
    ) -> None:
        self.out = out
        self.out.mkdir(parents=True, exist_ok=True)
        own = tuple({f for layout in FOLDERS.values() for f in layout.values()}) + (CROPS,)
        removed = remove_partials(out, own)
        if removed:
            log.info("removed %d partial files left by an interrupted run", removed)
        self.fetcher = fetcher
        self.sources = sources
        self.limits = limits or Limits()
        self.manifest = Manifest(out)
        self.counts: Counter[str] = Counter()  # this run: saved, duplicate, error codes
        self.tried: set[str] = set()  # URLs tried in this run: a list naming one twice counts once

    def run(self, people: list[Person], progress: bool = True) -> Counter[str]:
        from tqdm import tqdm

        if self.limits.max_people is not None:
            people = people[: self.limits.max_people]
        bar = tqdm(people, desc="people", unit="person", disable=not progress, dynamic_ncols=True)
        try:
            for person in bar:
                self.person(person)
                bar.set_postfix(
                    saved=self.counts["saved"], dup=self.counts["duplicate"], failed=self.failed
                )
        finally:
            bar.close()
        return self.counts

    @property
    def failed(self) -> int:
        """URLs of this run that ended in an error (images, and person pages that failed)."""
        return sum(v for k, v in self.counts.items() if k not in ("saved", "duplicate"))

    def person(self, person: Person) -> None:
        key = (person.gender, slugify(person.name))
        cap = self.limits.max_per_person
        for rec in self._records(person):
            if cap is not None and self.manifest.per_person[key] >= cap:
                return
            if rec.url in self.manifest.done or rec.url in self.tried:
                continue
            self.download(rec)

    def _records(self, person: Person) -> Iterator[Record]:
        if person.records is not None:
            yield from person.records
            return
        for seed in person.seeds:
            source = source_for(seed.url, self.sources)
            try:
                yield from source.records(seed, self._get_page)
            except AnfeError as exc:  # a page failed: note it, go on with the next seed
                page = getattr(exc, "url", None) or seed.url
                self._error(Record(seed.name, seed.gender, page, source.name), exc)

    def _get_page(self, url: str) -> tuple[str, str]:
        try:
            resp = self.fetcher.page(url)
        except FetchError as exc:
            exc.url = url  # type: ignore[attr-defined]
            raise
        return resp.url, resp.text

    def download(self, rec: Record) -> None:
        """Fetch one image and save it (and its FaceScrub crop); record the outcome."""
        self.tried.add(rec.url)
        try:
            resp = self._fetch_image(rec)
            data = resp.body
            sha = content_hash(data)
            if rec.sha256 and sha != rec.sha256:
                raise ChecksumMismatch(
                    f"{rec.url} has sha256 {sha[:12]}…, the list says {rec.sha256[:12]}…"
                )
            folder = FOLDERS[rec.layout][rec.gender]
            slug = slugify(rec.person)
            name = f"{sha[:16]}.{EXTENSIONS[sniff_format(data) or 'JPEG']}"
            path = safe_join(self.out, folder, slug, name)
            rel = path.relative_to(self.out.resolve()).as_posix()
            if path.exists() and (rec.gender, slug, sha) in self.manifest.files:
                self._add(rec, "duplicate", sha=sha, size=len(data), path=rel, via=resp.url)
                return
            write_atomic(path, data)  # (also completes a file whose manifest line was lost)
            if rec.bbox is not None:
                self._save_crop(data, rec.bbox, safe_join(self.out, CROPS, folder, slug, name))
            self._add(rec, "saved", sha=sha, size=len(data), path=rel, via=resp.url)
        except AnfeError as exc:
            self._error(rec, exc)

    def _fetch_image(self, rec: Record) -> Response:
        """The image of ``rec``; if it fails for good, the one its source's fallback page shows."""
        try:
            return self.fetcher.image(rec.url, referer=rec.page)
        except FetchError as exc:
            if not rec.fallback or exc.transient or isinstance(exc, NO_FALLBACK):
                raise
            source = next((s for s in self.sources if s.name == rec.source), None)
            find = getattr(source, "fallback_image", None)
            other = find(rec, self._get_page) if find else None
            if not other or other == rec.url:
                raise
            log.info("%s failed (%s); using %s from %s", rec.url, exc.code, other, rec.fallback)
            return self.fetcher.image(other, referer=rec.fallback)

    def _save_crop(self, data: bytes, bbox: tuple[int, int, int, int], path: Path) -> None:
        try:
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
                x1, y1, x2, y2 = bbox
                box = (max(0, x1), max(0, y1), min(w, x2), min(h, y2))
                if box[2] <= box[0] or box[3] <= box[1]:
                    log.warning("face box %s lies outside the %dx%d image", bbox, w, h)
                    return
                buf = io.BytesIO()
                img.convert("RGB").crop(box).save(buf, "JPEG", quality=95)
        except Exception as exc:  # an image Pillow cannot crop still counts as downloaded
            log.warning("cannot crop %s: %s", path.name, exc)
            return
        write_atomic(path.with_suffix(".jpg"), buf.getvalue())

    def _add(self, rec: Record, status: str, *, sha: str, size: int, path: str, via: str) -> None:
        self.manifest.add(
            Entry(
                url=rec.url,
                person=rec.person,
                gender=rec.gender,
                source=rec.source,
                status=status,
                sha256=sha,
                bytes=size,
                path=path,
                page=rec.page,
                via=via if via != rec.url else None,
            )
        )
        self.counts[status] += 1

    def _error(self, rec: Record, exc: AnfeError) -> None:
        transient = bool(getattr(exc, "transient", False))
        log.info("%s: %s", exc.code, exc.message)
        self.manifest.add(
            Entry(
                url=rec.url,
                person=rec.person,
                gender=rec.gender,
                source=rec.source,
                status="error",
                error=exc.code,
                transient=transient,
                message=exc.message[:300],
                page=rec.page,
            )
        )
        self.counts[exc.code] += 1
