"""Where scraped images go: safe slugs, paths that cannot leave OUT, atomic writes, the manifest.

Layout: ``OUT/{female,male}/<person-slug>/<sha256[:16]>.<ext>`` (FaceScrub lists:
``OUT/{actresses,actors}/<person-slug>/…``) and ``OUT/manifest.jsonl``, one JSON object per URL
tried: ``url, person, gender, source, sha256, bytes, status, path, error, page, via, time``.

``status`` is ``saved`` (a new file), ``duplicate`` (the same bytes were already saved for this
person), or ``error`` (with ``error`` the code and ``transient`` whether a rerun tries again).
A rerun reads the manifest and never downloads a URL that is already ``saved``, ``duplicate`` or
failed for good. An image is first written to a hidden ``.<name>.part`` file and renamed when
complete, so a killed run never leaves a partial image. At the next start the leftovers are
removed: only files named exactly as :func:`write_atomic` names an image (``.<16 hex>.<ext>.<pid>
.part``) inside the scraper's own folders, never any other ``.part`` file a user keeps under OUT.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anfe.centroids.errors import InvalidParameter

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
MAX_SLUG = 80
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "WEBP": "webp"}
OWN_PARTIAL = re.compile(
    r"^\.[0-9a-f]{16}\.(" + "|".join(EXTENSIONS.values()) + r")\.[0-9]+\.part$"
)  # .<sha256[:16]>.<ext>.<pid>.part
# Latin letters that Unicode does not decompose into an ASCII letter plus accents.
_TRANSLIT = str.maketrans(
    {
        "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ø": "o", "Ø": "O", "ß": "ss", "æ": "ae",
        "Æ": "AE", "œ": "oe", "Œ": "OE", "þ": "th", "Þ": "Th", "ð": "d", "Ð": "D", "ı": "i",
    }
)  # fmt: skip


def slugify(name: str) -> str:
    """A safe folder name for a person: ASCII letters, digits and ``-``, at most 80 characters.

    ``Małgorzata Kożuchowska`` → ``malgorzata-kozuchowska``; ``../../x`` → ``x``. A name that
    leaves nothing (only symbols, or a script without Latin letters) or that had to be shortened
    gets a short hash of the full name, so two different names never share a folder by accident.
    """
    text = unicodedata.normalize("NFKD", name.translate(_TRANSLIT))
    text = text.encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    if not slug:
        return f"person-{digest}"
    if len(slug) > MAX_SLUG:
        return slug[: MAX_SLUG - 9].rstrip("-") + "-" + digest
    return slug


def safe_join(root: Path, *parts: str) -> Path:
    """``root/parts...``, refusing any result that would lie outside ``root``."""
    root = root.resolve()
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\\" in part or "\x00" in part:
            raise InvalidParameter(f"unsafe path component {part[:100]!r}")
    path = root.joinpath(*parts).resolve()
    if not path.is_relative_to(root):
        raise InvalidParameter(f"path {path.name!r} would be outside {root.name!r}")
    return path


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a hidden temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(partial_name(path))
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def partial_name(path: Path) -> str:
    """The temporary name :func:`write_atomic` writes ``path`` under before renaming it."""
    return f".{path.name}.{os.getpid()}.part"


def remove_partials(root: Path, folders: tuple[str, ...]) -> int:
    """Delete the image ``.part`` files a killed run left in ``root/<folder>/…``; return how many.

    Only names matching :data:`OWN_PARTIAL` (what :func:`write_atomic` makes of an image saved
    as ``<sha256[:16]>.<ext>``) are touched: other files, even hidden ``.part`` ones, stay.
    """
    n = 0
    for folder in folders:
        top = root / folder
        if not top.is_dir() or top.is_symlink():
            continue
        for p in top.rglob(".*.part"):
            if OWN_PARTIAL.match(p.name) and p.is_file() and not p.is_symlink():
                p.unlink()
                n += 1
    return n


@dataclass
class Entry:
    """One manifest line."""

    url: str
    person: str
    gender: str
    source: str
    status: str  # saved | duplicate | error
    sha256: str | None = None
    bytes: int | None = None
    path: str | None = None  # relative to OUT
    error: str | None = None
    transient: bool = False
    message: str | None = None
    page: str | None = None
    via: str | None = None  # the URL the image really came from, when not ``url``
    time: str = ""

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in self.__dict__.items() if v is not None})


class Manifest:
    """The append-only JSON-lines record of every URL tried, and the resume state derived from it."""

    def __init__(self, out: Path) -> None:
        self.path = out / MANIFEST
        self.done: set[str] = set()  # URLs never to fetch again
        self.per_person: Counter[tuple[str, str]] = Counter()  # (gender, slug) -> images kept
        self.files: dict[tuple[str, str, str], str] = {}  # (gender, slug, sha) -> path
        self.entries: list[dict[str, Any]] = []
        for rec in self._read():
            self._note(rec)

    def _read(self) -> Iterator[dict[str, Any]]:
        if not self.path.is_file():
            return
        with open(self.path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a kill
                    log.warning("manifest line %d is incomplete; ignored", n)
                    continue
                if isinstance(rec, dict) and "url" in rec:
                    yield rec

    def _note(self, rec: dict[str, Any]) -> None:
        self.entries.append(rec)
        status = rec.get("status")
        if status in ("saved", "duplicate") or (status == "error" and not rec.get("transient")):
            self.done.add(rec["url"])
        if status == "saved":
            key = (rec.get("gender", ""), slugify(rec.get("person", "")))
            self.per_person[key] += 1
            self.files[(*key, rec.get("sha256", ""))] = rec.get("path", "")

    def add(self, entry: Entry) -> None:
        entry.time = datetime.now(UTC).isoformat(timespec="seconds")
        line = entry.to_json()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            # A kill may have cut the last line short; start on a fresh line.
            if fh.tell() and not self._ends_with_newline():
                fh.write("\n")
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._note(json.loads(line))

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def summary(self) -> Counter[tuple[str, str]]:
        """Count of (gender, status or error code) over the whole manifest."""
        c: Counter[tuple[str, str]] = Counter()
        latest: dict[str, dict[str, Any]] = {}
        for rec in self.entries:
            latest[rec["url"]] = rec
        for rec in latest.values():
            what = rec["status"] if rec["status"] != "error" else rec.get("error", "error")
            c[(rec.get("gender", "?"), what)] += 1
        return c
