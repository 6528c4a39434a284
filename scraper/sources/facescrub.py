"""FaceScrub list files: ``facescrub_actors.txt`` (male) and ``facescrub_actresses.txt`` (female).

Each is tab-separated, ``name image_id face_id url bbox sha256``, where bbox is ``x1,y1,x2,y2``
and sha256 the hash of the original image. The original lists start with that header line;
copies found in public repositories often have none (and may end with a truncated line): both
are read. Records carry the expected hash (the
download is refused when it differs) and the box (the face crop is saved beside the photo), and
go into the FaceScrub layout ``OUT/{actors,actresses}/<Name>/``. A malformed line is skipped with
a warning naming its line number; it does not stop the list.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from anfe.scraper.errors import SeedError
from anfe.scraper.sources.base import Record

log = logging.getLogger(__name__)
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass
class FaceScrubList:
    """The records of one list file, and the lines that could not be read."""

    gender: str
    records: list[Record] = field(default_factory=list)
    bad_lines: list[int] = field(default_factory=list)


def gender_of_list(name: str) -> str:
    """``female`` for an actresses list, ``male`` for an actors list, from its file name."""
    low = name.lower()
    if "actress" in low:
        return "female"
    if "actor" in low:
        return "male"
    raise SeedError(
        f"cannot tell the gender of FaceScrub list {name!r}: its name should contain "
        "'actresses' or 'actors' (or give it as actresses=PATH / actors=PATH)"
    )


def parse_list(text: str, gender: str) -> FaceScrubList:
    """Parse a FaceScrub list; the gender comes from which list it is, never from the images."""
    out = FaceScrubList(gender=gender)
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or (n == 1 and line.lower().startswith("name\t")):
            continue
        cols = line.rstrip("\r\n").split("\t")
        try:
            name, image_id, face_id, url, bbox, sha = (c.strip() for c in cols[:6])
            box = tuple(int(float(v)) for v in bbox.split(","))
            if len(cols) < 6 or len(box) != 4 or not SHA256.match(sha) or not name:
                raise ValueError
            if not url.startswith(("http://", "https://")):
                raise ValueError
            x1, y1, x2, y2 = box
            if x2 <= x1 or y2 <= y1:
                raise ValueError
        except ValueError:
            log.warning("FaceScrub list line %d is malformed; skipped", n)
            out.bad_lines.append(n)
            continue
        out.records.append(
            Record(
                person=name,
                gender=gender,
                url=url,
                source="facescrub",
                sha256=sha.lower(),
                bbox=(x1, y1, x2, y2),
                face_id=face_id or image_id,
                layout="facescrub",
            )
        )
    return out


def by_person(records: list[Record]) -> dict[str, list[Record]]:
    """Records grouped by person, in list order."""
    groups: dict[str, list[Record]] = {}
    for r in records:
        groups.setdefault(r.person, []).append(r)
    return groups


def iter_people(lists: list[FaceScrubList]) -> Iterator[tuple[str, str, list[Record]]]:
    """(person, gender, records) for every person of every list."""
    for fl in lists:
        for person, recs in by_person(fl.records).items():
            yield person, fl.gender, recs
