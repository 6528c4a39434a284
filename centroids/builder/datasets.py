"""Labelled image folders: which images there are, their gender, person and extra columns.

Layouts read (the first that matches):
- labelled folders ``ROOT/{female,male}/**`` (also ``women/men``, ``woman/man``); a first-level
  sub-folder under a gender is taken as the person (``OUT/female/<person>/<image>``, the
  scraper's output); files directly under the gender folder have no person;
- the FaceScrub layout ``ROOT/{actresses,actors}/<Person>/*``.

An optional ``ROOT/labels.csv`` (``path`` relative to ROOT, plus any columns such as ``gender``,
``person``, ``age``, ``race``) adds its columns to the images it names; a ``gender`` or ``person``
column there overrides what the folders say. Folders whose name starts with ``_`` or ``.``
(``_quarantine``) are skipped.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from anfe.centroids.errors import DatasetError, InvalidParameter

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
GENDER_FOLDERS = {
    "female": "female",
    "male": "male",
    "women": "female",
    "men": "male",
    "woman": "female",
    "man": "male",
    "actresses": "female",
    "actors": "male",
}
GENDER_WORDS = {
    "female": "female", "f": "female", "woman": "female", "1": "female",
    "male": "male", "m": "male", "man": "male", "0": "male",
}  # fmt: skip


@dataclass(frozen=True)
class Item:
    """One labelled image: its path, gender, person (or None) and extra label columns."""

    path: Path
    gender: str
    person: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


def _images_under(folder: Path) -> list[tuple[Path, str | None]]:
    """Every image file under ``folder`` (not under a ``_`` or ``.`` folder), with the name of
    the first-level sub-folder it is in (None directly under ``folder``).

    Walked with :func:`os.scandir` on strings (the entry types come with the listing): a
    ``Path`` and a ``stat`` per directory entry (``rglob``, ``relative_to``, ``is_file``) cost
    most of a fully cached build of 100k images.
    """
    out: list[tuple[Path, str | None]] = []

    def walk(here: str, person: str | None) -> None:
        with os.scandir(here) as entries:
            for entry in entries:
                if entry.name.startswith(("_", ".")):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    walk(entry.path, entry.name if person is None else person)
                elif (
                    os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES and entry.is_file()
                ):  # a file, or a link to one
                    out.append((Path(entry.path), person))

    walk(str(folder), None)
    return out


def layout(root: Path) -> str:
    """``"facescrub"`` or ``"gender_folders"``; raises :class:`DatasetError` for neither."""
    if not root.is_dir():
        raise DatasetError(f"dataset folder {str(root)!r} does not exist")
    names = {p.name.lower() for p in root.iterdir() if p.is_dir()}
    if {"actors", "actresses"} & names and not ({"female", "male"} & names):
        return "facescrub"
    if names & set(GENDER_FOLDERS):
        return "gender_folders"
    raise DatasetError(
        f"{str(root)!r} has neither female/ and male/ folders nor actresses/ and actors/ folders"
    )


def read_dataset(root: str | Path) -> list[Item]:
    """Every labelled image under ``root``, sorted by path (see the module doc for layouts)."""
    root = Path(root)
    layout(root)
    items: list[Item] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        gender = GENDER_FOLDERS.get(folder.name.lower())
        if gender is None:
            continue
        for path, person in _images_under(folder):
            items.append(Item(path=path, gender=gender, person=person))
    labels = read_labels(root)
    if labels:
        items = [
            _with_labels(item, labels.get(item.path.relative_to(root).as_posix())) for item in items
        ]
    if not items:
        raise DatasetError(f"no images found under {str(root)!r}")
    return sorted(items, key=lambda it: it.path.as_posix())


def read_labels(root: Path) -> dict[str, dict[str, str]]:
    """Rows of ``root/labels.csv`` keyed by their ``path`` column ({} when there is no file)."""
    path = root / "labels.csv"
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise DatasetError("labels.csv must have a 'path' column")
        return {row["path"].strip(): row for row in reader if row.get("path")}


def _with_labels(item: Item, row: dict[str, str] | None) -> Item:
    if not row:
        return item
    extra = {k: v for k, v in row.items() if k not in ("path", "gender", "person") and k}
    gender = GENDER_WORDS.get((row.get("gender") or "").strip().lower(), item.gender)
    person = (row.get("person") or "").strip() or item.person
    return Item(path=item.path, gender=gender, person=person, extra=extra)


def require_ages(items: list[Item], option: str = "--min-age") -> None:
    """Refuse an age filter on images none of which has an age: it would keep every one.

    :raises InvalidParameter: no item has a numeric ``age`` (no labels.csv, or no age column)
    """
    if items and not any(it.extra.get("age", "").strip().isdigit() for it in items):
        raise InvalidParameter(
            f"{option} needs ages, and no image has one: give the folder a labels.csv with an "
            "age column (path,gender,age), or leave out the option"
        )


def adults(items: list[Item], min_age: int = 18) -> list[Item]:
    """Items whose ``age`` column is at least ``min_age`` (items without an age are kept)."""
    out = []
    for it in items:
        age = it.extra.get("age", "")
        if not age.strip().isdigit() or int(age) >= min_age:
            out.append(it)
    return out


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def group_key(item: Item) -> str:
    """What must stay on one side of a split: the person, else the image content."""
    if item.person:
        return "person:" + normalise_name(item.person)
    return "image:" + file_hash(item.path)


def split(items: list[Item], fraction: float, seed: int) -> tuple[list[Item], list[Item], str]:
    """Split into (train, test, how): whole groups (persons, or identical images) go to a side.

    A group goes to the test side when a seeded hash of its key falls below ``fraction``, so the
    split of a group does not depend on which other images the folder holds.
    """
    by_person = all(it.person for it in items)
    train, test = [], []
    for it in items:
        digest = hashlib.sha256(f"{seed}:{group_key(it)}".encode()).digest()
        (test if int.from_bytes(digest[:8], "big") / 2**64 < fraction else train).append(it)
    how = "by person" if by_person else "by image content (no persons known)"
    if not train or not test:
        raise DatasetError(f"splitting {len(items)} images left one side empty")
    return train, test, how


def normalise_name(name: str) -> str:
    """``"Jennifer_Aniston"`` and ``"jennifer aniston"`` → ``"jennifer aniston"``."""
    return re.sub(r"[\s_.\-]+", " ", name).strip().lower()
