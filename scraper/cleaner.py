"""``anfe clean RAW --out CLEAN``: keep the usable images, quarantine the rest with a reason.

Every image of RAW (``{female,male}/<person>/…`` or the FaceScrub layout) is copied (``--move``:
moved) to ``CLEAN/{female,male}/<person>/…`` or to ``CLEAN/_quarantine/<reason>/<gender>/<person>/…``
(``build`` skips folders starting with ``_``). Reasons, checked in this order:

- ``unreadable``: not an image we can decode (truncated, corrupt, not an image at all);
- ``duplicate``: the same bytes (SHA-256) as another image anywhere in RAW. One copy of each
  photo is always kept: the one that belongs where it is (its face is nearest the other photos
  of its person folder, and the label review's centroids agree with its gender folder); ties go
  to the first in path order. So a man's photo copied into a woman's folder is quarantined
  there, and the original in his own folder stays;
- ``no_face`` / ``several_faces``: dlib's detector finds none, or more than one face;
- ``small_face``: the face box is narrower or lower than ``min_face`` pixels;
- ``near_duplicate``: within a person, an embedding closer than ``near_duplicate`` to an image
  kept before it (the same photo resized, recompressed or slightly cropped);
- ``other_person``: within a person with at least 3 kept images, farther than ``other_person``
  from the element-wise median embedding of that person (galleries often show co-stars).

Embeddings come from :func:`anfe.centroids.builder.extract.embed_paths` with the database cache, so a rerun
recomputes nothing. ``CLEAN/clean.jsonl`` holds one line per image (source, destination, hash,
reason and its numbers). Then the label review (:mod:`anfe.scraper.review`) lists the kept images
that lie nearer the other gender's centroid. Nothing is ever deleted: a rerun with other
thresholds moves earlier copies to their new place, also after ``--move`` emptied RAW (the
images are then found where the last run put them, through ``clean.jsonl``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anfe.centroids.builder import datasets
from anfe.centroids.builder.extract import embed_paths
from anfe.centroids.errors import DatasetError, InvalidParameter, NoCentroids
from anfe.centroids.imaging.formats import content_hash
from anfe.centroids.storage.store import Store, default_uri
from anfe.centroids.vision.settings import EmbeddingSettings
from anfe.scraper.output import write_atomic

QUARANTINE = "_quarantine"
MANIFEST = "clean.jsonl"
RELABELS = "relabels.jsonl"
REASONS = (
    "unreadable",
    "duplicate",
    "no_face",
    "several_faces",
    "small_face",
    "near_duplicate",
    "other_person",
)
MIN_PERSON_IMAGES = 3


@dataclass
class CleanOptions:
    move: bool = False
    min_face: int = 40
    near_duplicate: float = 0.2
    other_person: float = 0.5
    centroids: str | None = None
    review: bool = True
    jobs: int | None = None
    progress: bool = True
    settings: EmbeddingSettings = field(default_factory=EmbeddingSettings)

    def __post_init__(self) -> None:
        if self.min_face < 0:
            raise InvalidParameter("--min-face must not be negative")
        if not 0 <= self.near_duplicate < 2 or not 0 < self.other_person <= 2:
            raise InvalidParameter("distance thresholds must lie between 0 and 2")


@dataclass
class Decision:
    """Where one image of RAW goes and why."""

    src: Path
    path: Path  # where the file is now: ``src``, or CLEAN after an earlier --move
    rel: str  # path below its gender folder: <person>/<file> or <file>
    gender: str
    person: str | None
    sha256: str
    reason: str = "ok"
    detail: dict[str, Any] = field(default_factory=dict)
    vector: np.ndarray | None = None
    dest: Path | None = None

    def to_doc(self, raw: Path, out: Path) -> dict[str, Any]:
        return {
            "src": str(self.src),
            "dest": self.dest.relative_to(out).as_posix() if self.dest else None,
            "sha256": self.sha256,
            "gender": self.gender,
            "person": self.person,
            "reason": self.reason,
            **({"detail": self.detail} if self.detail else {}),
        }


@dataclass
class CleanResult:
    decisions: list[Decision]
    counts: Counter  # (reason, gender) -> images, over CLEAN's whole manifest
    review_rows: int | None = None
    review_path: Path | None = None
    review_note: str | None = None


def clean(
    raw: str | Path, out: str | Path, opts: CleanOptions | None = None, db: str | None = None
) -> CleanResult:
    """Sort RAW into CLEAN and its quarantine; write the manifest and the label review."""
    opts = opts or CleanOptions()
    raw, out = Path(raw).resolve(), Path(out).resolve()
    if raw == out or raw.is_relative_to(out):
        raise InvalidParameter("the clean folder must not be the raw folder or contain it")
    prior = _read_manifest(out)
    relabels = read_relabels(out)
    items = _items(raw, out, prior)
    with Store(db or default_uri()) as store:
        embedded = embed_paths(
            [it.path for it in items],
            opts.settings,
            store,
            labels=[it.gender for it in items],
            jobs=opts.jobs,
            progress=opts.progress,
            desc="cleaning",
        )
        decisions = _decide(raw, items, embedded, opts, relabels, lambda: _centroids(store, opts))
        _place(decisions, out, opts.move, prior)
        docs = _merge_manifest(prior, decisions, raw, out)
        write_atomic(out / MANIFEST, "".join(json.dumps(d) + "\n" for d in docs).encode())
        result = CleanResult(decisions, _count(docs))
        if opts.review:
            from anfe.scraper import review

            review.write_review(out, decisions, store, opts.centroids, result)
    return result


@dataclass(frozen=True)
class _Image:
    """An image to decide on: ``src`` its path in RAW (the manifest key), ``path`` where it is now."""

    src: Path
    path: Path
    gender: str
    person: str | None


def _items(raw: Path, out: Path, prior: dict[str, dict[str, Any]]) -> list[_Image]:
    """RAW's images, and the images an earlier ``--move`` took out of RAW (found via the manifest)."""
    try:
        found = [
            _Image(it.path, it.path, it.gender, it.person)
            for it in datasets.read_dataset(raw)
            if not it.path.resolve().is_relative_to(out)
        ]
    except DatasetError:
        if not prior:
            raise
        found = []
    present = {str(it.src) for it in found}
    for src, doc in sorted(prior.items()):
        dest = out / doc["dest"] if doc.get("dest") else None
        if src in present or Path(src).exists() or dest is None or not dest.is_file():
            continue
        folder = Path(src).relative_to(raw).parts[0] if Path(src).is_relative_to(raw) else ""
        gender = datasets.GENDER_FOLDERS.get(folder.lower())
        if gender:
            found.append(_Image(Path(src), dest, gender, doc.get("person")))
    if not found:
        raise DatasetError(f"no images found under {str(raw)!r}")
    return found


def _decide(raw, items, embedded, opts: CleanOptions, relabels, centroids) -> list[Decision]:
    decisions = []
    for it, emb in zip(items, embedded, strict=True):
        sha = emb.sha256 or _hash(it.path)
        d = Decision(
            src=it.src,
            path=it.path,
            rel=it.src.relative_to(_gender_root(raw, it.src)).as_posix(),
            gender=relabels.get(sha, it.gender),
            person=it.person,
            sha256=sha,
        )
        if emb.error:
            d.reason, d.detail = "unreadable", {"error": emb.error}
        elif emb.faces_found == 0:
            d.reason = "no_face"
        elif emb.faces_found > 1:
            d.reason, d.detail = "several_faces", {"faces": emb.faces_found}
        elif emb.box is not None and _side(emb.box) < opts.min_face:
            d.reason, d.detail = "small_face", {"side": _side(emb.box)}
        else:
            d.vector = emb.vector
        decisions.append(d)
    _keep_one_copy(decisions, opts, centroids)
    groups: dict[tuple[str, str], list[Decision]] = {}
    for d in decisions:
        if d.reason == "ok" and d.person is not None:
            groups.setdefault((d.gender, d.person), []).append(d)
    for group in groups.values():
        _group_checks(group, opts)
    return decisions


def _keep_one_copy(decisions: list[Decision], opts: CleanOptions, centroids) -> None:
    """Of each set of identical files keep the copy that belongs; the others are ``duplicate``."""
    copies: dict[str, list[Decision]] = {}
    for d in decisions:
        if d.reason != "unreadable" and d.sha256:
            copies.setdefault(d.sha256, []).append(d)
    groups = [g for g in copies.values() if len(g) > 1]
    if not groups:
        return
    people: dict[tuple[str, str | None], list[Decision]] = {}
    for d in decisions:
        if d.vector is not None:
            people.setdefault((d.gender, d.person), []).append(d)
    cs = centroids() if any(d.vector is not None for g in groups for d in g) else None
    for group in groups:
        with_face = [d for d in group if d.vector is not None]
        predicted = {}
        if cs is not None and with_face:
            genders = cs.classify(np.stack([d.vector for d in with_face])).gender
            predicted = {id(d): str(g) for d, g in zip(with_face, genders, strict=True)}

        members = {id(d) for d in group}

        def belonging(d: Decision, members=members, predicted=predicted) -> tuple:
            people_of_d = people.get((d.gender, d.person), [])
            others = [o.vector for o in people_of_d if id(o) not in members]
            dist = float("inf")
            if d.vector is not None and others and d.person is not None:
                dist = float(np.linalg.norm(np.median(np.stack(others), axis=0) - d.vector))
            misfits = (dist > opts.other_person) + (predicted.get(id(d), d.gender) != d.gender)
            return misfits, dist

        keeper = min(group, key=belonging)  # min() keeps the first of equals: path order
        for d in group:
            if d is not keeper:
                d.reason, d.detail, d.vector = "duplicate", {"same_as": str(keeper.src)}, None


def _centroids(store: Store, opts: CleanOptions):
    """The label review's centroid set, or None when the database holds none."""
    from anfe.centroids.storage.shipped import load_centroid_set

    try:
        return load_centroid_set(store, opts.centroids)
    except NoCentroids:
        return None


def _group_checks(group: list[Decision], opts: CleanOptions) -> None:
    kept: list[Decision] = []
    for d in group:
        if kept:
            dist = np.linalg.norm(np.stack([k.vector for k in kept]) - d.vector, axis=1)
            j = int(np.argmin(dist))
            if dist[j] < opts.near_duplicate:
                d.reason = "near_duplicate"
                d.detail = {"distance": round(float(dist[j]), 4), "same_as": str(kept[j].src)}
                continue
        kept.append(d)
    if len(kept) < MIN_PERSON_IMAGES:
        return
    vectors = np.stack([k.vector for k in kept])
    median = np.median(vectors, axis=0)
    dist = np.linalg.norm(vectors - median, axis=1)
    for d, dd in zip(kept, dist, strict=True):
        if dd > opts.other_person:
            d.reason, d.detail = "other_person", {"distance_to_median": round(float(dd), 4)}


def _place(decisions: list[Decision], out: Path, move: bool, prior: dict) -> None:
    for d in decisions:
        folder = out / d.gender if d.reason == "ok" else out / QUARANTINE / d.reason / d.gender
        dest = folder / d.rel
        if dest.exists() and _hash(dest) != d.sha256:  # a different file took this name
            dest = dest.with_name(f"{dest.stem}-{d.sha256[:8]}{dest.suffix}")
        d.dest = dest
        if dest.exists():  # placed by an earlier run (with --move, RAW keeps its copy)
            continue
        earlier = prior.get(str(d.src), {}).get("dest")
        if earlier and (out / earlier).exists() and _hash(out / earlier) == d.sha256:
            _move(out / earlier, dest)  # the decision changed since the last run
        elif move:
            _move(d.path, dest)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
            shutil.copy2(d.path, tmp)
            os.replace(tmp, dest)


def _move(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dest))


def _merge_manifest(prior: dict, decisions: list[Decision], raw: Path, out: Path) -> list[dict]:
    merged = dict(prior)
    for d in decisions:
        merged[str(d.src)] = d.to_doc(raw, out)
    return [merged[k] for k in sorted(merged)]


def _read_manifest(out: Path) -> dict[str, dict[str, Any]]:
    path = out / MANIFEST
    if not path.is_file():
        return {}
    docs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            doc = json.loads(line)
            docs[doc["src"]] = doc
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return docs


def read_relabels(out: Path) -> dict[str, str]:
    """sha256 → gender for every image a person relabelled through the review."""
    path = out / RELABELS
    if not path.is_file():
        return {}
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            doc = json.loads(line)
            found[doc["sha256"]] = doc["to"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return found


def _count(docs: list[dict]) -> Counter:
    c: Counter = Counter()
    for d in docs:
        c[(d["reason"], d["gender"])] += 1
    return c


def summary_table(result: CleanResult) -> str:
    """A text table of images per reason and gender."""
    rows = ["ok", *REASONS]
    lines = [f"{'reason':<16}{'female':>8}{'male':>8}{'total':>8}"]
    for r in rows:
        f, m = result.counts[(r, "female")], result.counts[(r, "male")]
        if r == "ok" or f or m:
            lines.append(f"{'kept' if r == 'ok' else r:<16}{f:>8}{m:>8}{f + m:>8}")
    tot_f = sum(v for (_, g), v in result.counts.items() if g == "female")
    tot_m = sum(v for (_, g), v in result.counts.items() if g == "male")
    lines.append(f"{'all':<16}{tot_f:>8}{tot_m:>8}{tot_f + tot_m:>8}")
    return "\n".join(lines)


def _gender_root(raw: Path, path: Path) -> Path:
    rel = path.relative_to(raw)
    return raw / rel.parts[0]


def _side(box) -> int:
    top, right, bottom, left = box
    return int(min(bottom - top, right - left))


def _hash(path: Path) -> str:
    try:
        return content_hash(path.read_bytes())
    except OSError:
        return ""
