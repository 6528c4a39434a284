"""``anfe bench --tight-crops``: faces HOG misses, and what the second detection pass finds.

Tight crops are made on the fly from a test set's photos in which HOG found exactly one face:
the photo is cut ``fraction`` of the box's size inside HOG's own box on every side, the way users
crop a face so that it fills the picture. Each crop then goes through the service's detection
(:func:`anfe.centroids.vision.faces.detect`, then :func:`anfe.centroids.vision.faces.second_pass` when it finds nothing)
and every face found is encoded and classified as ``/predict`` does. For the photos as they are,
the second pass is run on those where HOG found no face. Reported: the share of images with no
face before and after the second pass, the time each pass takes, the balanced accuracy of faces
found by the first and by the second pass, and how other paddings would have done on the crops
the first pass misses (detection only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from anfe.centroids.builder.workers import run_in_order
from anfe.centroids.errors import AnfeError
from anfe.centroids.imaging import decoding
from anfe.centroids.model.centroid_set import CentroidSet
from anfe.centroids.vision import faces
from anfe.centroids.vision.settings import EmbeddingSettings

# paddings compared with the shipped one on the crops the first pass misses: (label, margins, fill)
PADDINGS = (
    ("edge 0.3", (0.3,), "edge"),
    ("reflect 0.3", (0.3,), "reflect"),
    ("grey 0.3", (0.3,), "grey"),
    (
        f"grey {' then '.join(f'{m:g}' for m in faces.SECOND_PASS_MARGINS)} (shipped)",
        faces.SECOND_PASS_MARGINS,
        faces.SECOND_PASS_FILL,
    ),
)


@dataclass(frozen=True)
class CropJob:
    """One image to detect in: a path, and the box to crop inside (None: the photo as it is)."""

    path: str
    box: tuple[int, int, int, int] | None
    fraction: float


def crop_inside(image: np.ndarray, box: tuple[int, int, int, int], fraction: float) -> np.ndarray:
    """The part of ``image`` ``fraction`` of the box's height and width inside ``box``."""
    top, right, bottom, left = box
    dy, dx = round(fraction * (bottom - top)), round(fraction * (right - left))
    return np.ascontiguousarray(image[top + dy : bottom - dy, left + dx : right - dx])


def paddings_found(image: np.ndarray, settings: EmbeddingSettings) -> dict[str, bool]:
    """Whether the second pass finds a face in ``image`` with each of :data:`PADDINGS`."""
    return {
        label: bool(
            faces.second_pass(
                image, settings.max_side, settings.upsample, margins, fill, settings.detector
            )[0]
        )
        for label, margins, fill in PADDINGS
    }


def detect_task(batch: list[CropJob], settings: EmbeddingSettings) -> list[dict[str, Any]]:
    """Worker task: both passes on each image, timed, and the embedding of the face found."""
    out = []
    for job in batch:
        try:
            image = decoding.load_image(job.path)
        except AnfeError as exc:
            out.append({"error": exc.code})
            continue
        if job.box is not None:
            image = crop_inside(image, job.box, job.fraction)
        t0 = time.perf_counter()
        boxes = faces.detect(image, settings.max_side, settings.upsample, settings.detector)
        first_s = time.perf_counter() - t0
        rec: dict[str, Any] = {"first": len(boxes), "first_s": first_s, "second": 0}
        encode_boxes = boxes
        if not boxes:
            t0 = time.perf_counter()
            boxes, encode_boxes = faces.second_pass(
                image, settings.max_side, settings.upsample, detector=settings.detector
            )
            rec["second_s"] = time.perf_counter() - t0
            rec["second"] = len(boxes)
            rec["paddings"] = paddings_found(image, settings) if job.box is not None else {}
        if len(boxes) == 1:
            rec["vector"] = faces.encode(image, encode_boxes, 1, settings.model, settings.encoder)[
                0
            ]
        out.append(rec)
    return out


def run_jobs(
    jobs: list[CropJob], settings: EmbeddingSettings, workers: int
) -> list[dict[str, Any]]:
    """Run :func:`detect_task` on every job (in worker processes); results in job order."""
    return run_in_order(jobs, detect_task, settings, workers)


def summarise(records: list[dict[str, Any]], genders: list[str], cs: CentroidSet) -> dict[str, Any]:
    """No-face shares, pass times, and balanced accuracy of first- and second-pass faces."""
    n = len(records)
    first = sum(1 for r in records if r.get("first", 0) > 0)
    second = sum(1 for r in records if r.get("first", 0) == 0 and r.get("second", 0) > 0)
    first_s = [r["first_s"] for r in records if "first_s" in r]
    second_s = [r["second_s"] for r in records if "second_s" in r]
    out: dict[str, Any] = {
        "images": n,
        "found_first": first,
        "found_second": second,
        "no_face_before": (n - first) / n if n else float("nan"),
        "no_face_after": (n - first - second) / n if n else float("nan"),
        "found_after": (first + second) / n if n else float("nan"),
        "first_pass_ms": 1000 * float(np.mean(first_s)) if first_s else float("nan"),
        "second_pass_ms": 1000 * float(np.mean(second_s)) if second_s else float("nan"),
        "second_pass_runs": len(second_s),
        "added_ms_per_image": 1000 * float(np.sum(second_s)) / n if n else float("nan"),
    }
    for name, which in (("first", lambda r: r.get("first", 0) == 1), ("second", _by_second)):
        rows = [i for i, r in enumerate(records) if which(r) and "vector" in r]
        out[f"accuracy_{name}"] = _balanced(cs, records, genders, rows)
    misses = [r for r in records if r.get("paddings")]
    out["paddings"] = {
        label: sum(r["paddings"][label] for r in misses) for label, _, _ in PADDINGS
    } if misses else {}  # fmt: skip
    out["paddings_tried_on"] = len(misses)
    return out


def _by_second(r: dict[str, Any]) -> bool:
    return r.get("first", 0) == 0 and r.get("second", 0) == 1


def _balanced(
    cs: CentroidSet, records: list[dict[str, Any]], genders: list[str], rows: list[int]
) -> dict[str, Any]:
    if not rows:
        return {"n": 0, "balanced_accuracy": float("nan")}
    x = np.stack([records[i]["vector"] for i in rows])
    return balanced_accuracy(cs, x, [genders[i] for i in rows])


def balanced_accuracy(cs: CentroidSet, x: np.ndarray, genders: list[str]) -> dict[str, Any]:
    """The balanced accuracy of ``cs``'s answers (uncertain ones included) on embeddings ``x``."""
    truth = np.asarray(genders)
    right = cs.classify(x).gender == truth
    per = [float(np.mean(right[truth == g])) for g in ("female", "male") if (truth == g).any()]
    return {
        "n": len(truth),
        "right": int(right.sum()),
        "balanced_accuracy": float(np.mean(per)),
    }
