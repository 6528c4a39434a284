"""The label review: kept images that lie nearer the other gender's centroid, and relabelling them.

``CLEAN/review.csv`` has one row per disagreeing image, strongest disagreement first:
``path`` (below CLEAN), ``person``, ``gender`` (its folder), ``predicted``, ``d_female``, ``d_male``,
``disagreement`` (distance to its own centroid minus distance to the other), ``action``.
A person writes ``relabel`` in ``action`` for the rows that are wrong; ``anfe clean --apply-review``
moves those images to the other gender folder and notes them in ``CLEAN/relabels.jsonl``, so a
later ``anfe clean`` keeps them there. Actions already written survive a rerun of ``anfe clean``.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anfe.centroids.errors import InvalidParameter, NoCentroids
from anfe.centroids.imaging.formats import content_hash
from anfe.centroids.storage.shipped import load_centroid_set
from anfe.centroids.storage.store import Store
from anfe.scraper.output import write_atomic

REVIEW = "review.csv"
COLUMNS = ["path", "person", "gender", "predicted", "d_female", "d_male", "disagreement", "action"]
OTHER = {"female": "male", "male": "female"}


def write_review(out: Path, decisions, store: Store, cid: str | None, result) -> None:
    """Classify the kept images with centroid set ``cid``; write the disagreeing ones."""
    kept = [d for d in decisions if d.reason == "ok" and d.vector is not None]
    path = out / REVIEW
    try:
        cs = load_centroid_set(store, cid)
    except NoCentroids as exc:
        result.review_note = f"label review skipped: {exc.message}"
        print(result.review_note)
        return
    previous = {row["path"]: row.get("action", "") for row in read_review(path)}
    rows = []
    if kept:
        preds = cs.classify(np.stack([d.vector for d in kept]))
        for i, d in enumerate(kept):
            if preds.gender[i] == d.gender:
                continue
            own = preds.d_female[i] if d.gender == "female" else preds.d_male[i]
            other = preds.d_male[i] if d.gender == "female" else preds.d_female[i]
            rel = d.dest.relative_to(out).as_posix()
            rows.append(
                {
                    "path": rel,
                    "person": d.person or "",
                    "gender": d.gender,
                    "predicted": str(preds.gender[i]),
                    "d_female": f"{preds.d_female[i]:.4f}",
                    "d_male": f"{preds.d_male[i]:.4f}",
                    "disagreement": f"{own - other:.4f}",
                    "action": previous.get(rel, ""),
                }
            )
    rows.sort(key=lambda r: -float(r["disagreement"]))
    _write(path, rows)
    result.review_rows = len(rows)
    result.review_path = path


ACTIONS = ("", "keep", "relabel", "relabelled")  # what the `action` column may hold
REQUIRED = ("path", "gender", "action")


def read_review(path: Path) -> list[dict[str, str]]:
    """The rows of a review file; line endings LF or CRLF, cells stripped of blanks."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return [
            {k: (v or "").strip() for k, v in row.items() if k is not None}
            for row in csv.DictReader(fh)
        ]


def check_review(path: Path) -> list[dict[str, str]]:
    """The rows of a review file a person edited, refused with the reason if it is not one.

    The header must name the columns ``path``, ``gender`` and ``action``; each ``action`` is
    empty, ``keep``, ``relabel`` or ``relabelled``; each ``gender`` female or male.
    """
    name = path.name
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
    except UnicodeDecodeError:
        raise InvalidParameter(f"{name} is not a review.csv: not UTF-8 text") from None
    missing = [c for c in REQUIRED if c not in [h.strip() for h in header]]
    if missing:
        raise InvalidParameter(
            f"{name} is not a review.csv of anfe clean: its header lacks the column"
            f"{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(expected {','.join(COLUMNS)})"
        )
    rows = read_review(path)
    for line, row in enumerate(rows, 2):
        action = row.get("action", "").lower()
        if action not in ACTIONS:
            raise InvalidParameter(
                f"{name} line {line}: action {row.get('action')!r} is not relabel, keep or empty"
            )
        if row.get("gender") not in OTHER:
            raise InvalidParameter(
                f"{name} line {line}: gender {row.get('gender')!r} is not female or male"
            )
    return rows


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    buf = io.StringIO()
    # LF line ends: `sed 's/,$/,relabel/'` and other line tools then see the empty action
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buf.getvalue().encode("utf-8"))


@dataclass
class Applied:
    moved: int = 0
    already: int = 0
    missing: int = 0
    kept: int = 0


def apply_review(review_csv: Path, out: Path | None = None) -> Applied:
    """Move the images of rows marked ``relabel`` to the other gender folder (idempotent)."""
    review_csv = Path(review_csv)
    if not review_csv.is_file():
        raise InvalidParameter(f"review file {str(review_csv)!r} does not exist")
    out = (Path(out) if out else review_csv.parent).resolve()
    rows = check_review(review_csv)
    done = Applied()
    with open(out / "relabels.jsonl", "a", encoding="utf-8") as log:
        for row in rows:
            _apply_row(row, out, log, done)
    _write(review_csv, rows)
    return done


def _apply_row(row: dict[str, str], out: Path, log, done: Applied) -> None:
    action = row["action"].lower()
    if action == "relabelled":
        done.already += 1
        return
    if action != "relabel":
        done.kept += 1
        return
    gender = row.get("gender", "")
    parts = Path(row["path"]).parts
    if gender not in OTHER or not parts or parts[0] != gender or ".." in parts:
        raise InvalidParameter(f"review row {row['path']!r} is not under {gender!r}/")
    src = out / row["path"]
    dest = out / OTHER[gender] / Path(*parts[1:])
    if not src.is_file():
        if dest.is_file():
            done.already += 1
            row.update(action="relabelled", path=dest.relative_to(out).as_posix())
            row["gender"] = OTHER[gender]
        else:
            done.missing += 1
        return
    if dest.exists():
        raise InvalidParameter(f"cannot relabel {row['path']!r}: {dest.name!r} exists there")
    sha = content_hash(src.read_bytes())
    dest.parent.mkdir(parents=True, exist_ok=True)
    entry = {"sha256": sha, "from": gender, "to": OTHER[gender], "path": row["path"]}
    log.write(json.dumps(entry) + "\n")  # noted before the move: a kill never loses it
    log.flush()
    shutil.move(str(src), str(dest))
    row.update(action="relabelled", path=dest.relative_to(out).as_posix())
    row["gender"] = OTHER[gender]
    done.moved += 1
