"""How to encode the faces the second detection pass finds, compared on tight crops.

``python -m anfe.bench.second_pass --test ../shared/data/lfw --skip 500 --per-gender 500``

Photos are drawn in the benchmark's seeded order per gender (:func:`anfe.bench.config.limit_per_gender`),
skipping the first ``--skip`` of each gender, so with ``--skip 500`` none is a photo of
``anfe bench``'s LFW test draw (``--test-per-gender 500``): the choice is made on other photos than
the ones the benchmark then reports. Each photo with exactly one HOG face is cropped ``fraction``
of its box inside the box (:func:`anfe.bench.tight.crop_inside`). On each crop where HOG finds nothing
and the second pass finds one face, the face is encoded in each of the ways of :data:`WAYS`, and
the balanced accuracy of the set's answers (uncertain ones included) is printed for each, beside
that of the faces HOG found at once on the other crops. On every crop HOG misses, the paddings of
``anfe bench --tight-crops`` (:data:`anfe.bench.tight.PADDINGS`) are tried too (detection only), so the
margins chosen on the benchmark's draw can be checked on other photos.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from anfe.bench.config import limit_per_gender
from anfe.bench.tight import PADDINGS, balanced_accuracy, crop_inside, paddings_found
from anfe.centroids.builder import datasets
from anfe.centroids.builder.ages import set_settings
from anfe.centroids.builder.workers import default_jobs, run_in_order
from anfe.centroids.imaging import decoding
from anfe.centroids.storage import shipped
from anfe.centroids.vision import faces
from anfe.centroids.vision.detectors import Box
from anfe.centroids.vision.settings import EmbeddingSettings


def _shifted(box: Box, py: int, px: int) -> Box:
    top, right, bottom, left = box
    return (top + py, right + px, bottom + py, left + px)


# name -> (image to encode on, box on it), from the crop, the clipped box and the unclipped box
WAYS: dict[str, Callable[[np.ndarray, Box, Box], tuple[np.ndarray, Box]]] = {
    "picture, unclipped box (shipped)": lambda crop, clipped, box: (crop, box),
    "picture, clipped box": lambda crop, clipped, box: (crop, clipped),
}


def _on_copy(fill: str) -> Callable[[np.ndarray, Box, Box], tuple[np.ndarray, Box]]:
    def way(crop: np.ndarray, clipped: Box, box: Box) -> tuple[np.ndarray, Box]:
        # the widest margin, to hold any box the pass returns
        copy, py, px = faces.pad(crop, max(faces.SECOND_PASS_MARGINS), fill)
        return copy, _shifted(box, py, px)

    return way


for _fill in ("grey", "edge", "reflect"):
    WAYS[f"{_fill} copy, 40 % margin"] = _on_copy(_fill)


def _found_on(crop: np.ndarray, clipped: Box, box: Box) -> tuple[np.ndarray, Box]:
    """The grey copy whose margin found the face, as the second pass encoded it until 2026-12."""
    for margin in faces.SECOND_PASS_MARGINS:
        if faces.second_pass(crop, margins=(margin,))[0]:
            copy, py, px = faces.pad(crop, margin, "grey")
            return copy, _shifted(box, py, px)
    raise AssertionError("the second pass found this face with one of its margins")


WAYS["grey copy the face was found on (before)"] = _found_on


def crop_task(batch: list[tuple[str, float]], settings: EmbeddingSettings) -> list[dict[str, Any]]:
    """Worker task: detect on the photo, crop, detect again, and encode each way."""
    out = []
    for path, fraction in batch:
        image = decoding.load_image(path)
        boxes = faces.detect(image, settings.max_side, settings.upsample, settings.detector)
        if len(boxes) != 1:
            out.append({})
            continue
        crop = crop_inside(image, boxes[0], fraction)
        first = faces.detect(crop, settings.max_side, settings.upsample, settings.detector)
        rec: dict[str, Any] = {"first": len(first)}
        if len(first) == 1:
            rec["vectors"] = {"first": faces.encode(crop, first, 1, settings.model,
                                                    settings.encoder)[0]}  # fmt: skip
        elif not first:
            rec["paddings"] = paddings_found(crop, settings)
            clipped, unclipped = faces.second_pass(
                crop, settings.max_side, settings.upsample, detector=settings.detector
            )
            if len(clipped) == 1:
                rec["vectors"] = {}
                for name, way in WAYS.items():
                    on, box = way(crop, clipped[0], unclipped[0])
                    rec["vectors"][name] = faces.encode(on, [box], 1, settings.model,
                                                        settings.encoder)[0]  # fmt: skip
        out.append(rec)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m anfe.bench.second_pass", description=__doc__.split("\n")[0]
    )
    p.add_argument("--test", type=Path, required=True, help="a labelled folder (FaceScrub layout)")
    p.add_argument("--skip", type=int, default=500, help="photos skipped per gender (%(default)s)")
    p.add_argument("--per-gender", type=int, default=500, help="photos per gender (%(default)s)")
    p.add_argument("--fractions", default="0.1,0.15", help="crop fractions (%(default)s)")
    p.add_argument("--centroids", default=shipped.DEFAULT_CENTROIDS, help="shipped set scored")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: cores)")
    args = p.parse_args(argv)
    fractions = [float(f) for f in args.fractions.split(",")]
    cs = shipped.shipped_set(args.centroids)
    settings = set_settings(cs)
    items = datasets.read_dataset(args.test)
    skipped = {id(it) for it in limit_per_gender(items, args.skip, 0)} if args.skip else set()
    drawn = [it for it in limit_per_gender(items, args.skip + args.per_gender, 0)
             if id(it) not in skipped]  # fmt: skip
    jobs = [(str(it.path), f) for f in fractions for it in drawn]
    records = run_in_order(jobs, crop_task, settings, args.jobs or default_jobs())
    genders = [it.gender for _ in fractions for it in drawn]
    print(
        f"{len(drawn)} photos of {args.test} (photos {args.skip + 1} to "
        f"{args.skip + args.per_gender} of each gender in the benchmark's order), scored by {cs.id}\n"
    )
    print("| crop | faces found by | encoded | n | balanced % |\n|---|---|---|---|---|")
    for k, f in enumerate(fractions):
        rows = range(k * len(drawn), (k + 1) * len(drawn))
        for which, names in (("first pass", ["first"]), ("second pass", list(WAYS))):
            for name in names:
                mine = [i for i in rows if name in records[i].get("vectors", {})]
                if not mine:
                    continue
                x = np.stack([records[i]["vectors"][name] for i in mine])
                r = balanced_accuracy(cs, x, [genders[i] for i in mine])
                label = "picture, HOG's box" if name == "first" else name
                print(
                    f"| {f:g} inside | {which} | {label} | {r['n']} | "
                    f"{100 * r['balanced_accuracy']:.2f} |"
                )
    print("\nPaddings tried on the crops HOG misses (faces found):\n")
    labels = [label for label, _, _ in PADDINGS]
    print("| crop | missed | " + " | ".join(labels) + " |\n|---|---|" + "---|" * len(labels))
    for k, f in enumerate(fractions):
        missed = [r for r in records[k * len(drawn) : (k + 1) * len(drawn)] if "paddings" in r]
        found = [str(sum(r["paddings"][label] for r in missed)) for label in labels]
        print(f"| {f:g} inside | {len(missed)} | " + " | ".join(found) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
