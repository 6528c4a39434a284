"""``anfe predict``: classify the faces of an image or a folder, as text, JSON lines or CSV."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

from anfe.centroids.builder import datasets
from anfe.centroids.errors import AnfeError, DatasetError, InvalidParameter
from anfe.centroids.predict import check_max_side, predict_image
from anfe.centroids.storage import shipped
from anfe.centroids.storage.store import check_uri, default_uri, describe_uri, exists
from anfe.centroids.vision import detectors, encoders
from anfe.options import (
    add_db_option,
    add_detector_option,
    add_encoder_option,
    chosen_detector,
    formatter,
    open_store,
)

EXAMPLES_PREDICT = """examples:
  anfe predict photo.jpg
  anfe predict photo.jpg --encoder dlib          # dlib's own encoder: same answers, slower
  anfe predict photo.jpg --detector cnn          # dlib's CNN detector: turned and tilted faces
  anfe predict group.jpg --max-side 0            # full resolution: small faces in large photos
  anfe predict photos/ --json --centroids g_2000
  anfe predict photos/ --csv > faces.csv      # one row per face (or per failed image)

A text line reads: PATH: face N box=(top,right,bottom,left) GENDER d_female=.. d_male=..
confidence=.. age=A (LOW-HIGH) set=ID, then "uncertain", "out-of-range" or "second-pass" when
they apply; box edges are pixels of the image.

Without --db (and ANFE_DB), when ./.anfe/db does not exist, the sets shipped with anfe answer
and nothing is written. A folder is read recursively, hidden files and folders left out; files
that are not named as JPEG, PNG, WebP, BMP or GIF images are skipped and counted on stderr.

exit status: 0 every image read, 3 when any image failed (a summary line says how many)
"""


def register(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="classify the faces in an image or a folder of images",
        description="Print, for every face, its box, the gender, the distance to each centroid, "
        "the confidence and the estimated age (with its interval). A face found only by the "
        "second detection pass (a copy with a margin, for tight crops) is flagged second-pass.",
        epilog=EXAMPLES_PREDICT,
        formatter_class=formatter,
    )
    p.add_argument("path", type=Path, help="an image file or a folder of images")
    p.add_argument(
        "--centroids",
        default=None,
        help="centroid set id (default: g_5000-mahalanobis, else the largest stored, which the "
        "command then names on stderr)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object per image per line")
    out.add_argument(
        "--csv",
        action="store_true",
        help="CSV with a header: one row per face, one per image without a face or that failed",
    )
    p.add_argument(
        "--max-faces",
        type=int,
        default=20,
        help="classify at most this many faces per image, the largest (1-100, default: 20)",
    )
    p.add_argument(
        "--max-side",
        type=int,
        default=None,
        help="search faces on a copy whose longest side is this (default: the set's, 800); "
        "0: the photo at full resolution, in tiles (small faces in large photos, slower)",
    )
    add_detector_option(p)
    add_encoder_option(p, jitters=False)
    add_db_option(p, "the centroid sets (default without it: the shipped sets, when ./.anfe/db "
                     "does not exist)")  # fmt: skip
    p.set_defaults(func=run, needs_models=True)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.max_faces <= 100:
        raise InvalidParameter(f"--max-faces must be between 1 and 100, not {args.max_faces}")
    check_max_side(args.max_side)
    detector = chosen_detector(args)
    uri = args.db or default_uri()
    check_uri(uri)
    if args.path.is_dir():
        paths, skipped = folder_images(args.path)
        if skipped:
            names = ", ".join(p.relative_to(args.path).as_posix() for p in skipped[:5])
            more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
            print(
                f"anfe: skipped {len(skipped)} file(s) not named as JPEG, PNG, WebP, BMP or GIF "
                f"images: {names}{more}",
                file=sys.stderr,
            )
        if not paths:
            raise DatasetError(f"no images in folder {args.path.name!r}")
    elif args.path.is_file():
        paths = [args.path]
    else:
        raise InvalidParameter(f"no such file or folder: {args.path}")
    encoder = args.encoder or encoders.default_encoder()
    encoders.prepare(encoder)
    detectors.prepare(detector)
    encoders.set_threads(encoders.threads_per_process(1))  # this process alone: all the cores
    cs = _centroid_set(args, uri)
    show = _csv_printer() if args.csv else _print_json if args.json else _print_text
    failures = 0
    for path in paths:
        try:
            result = predict_image(
                path.read_bytes(),
                cs,
                max_faces=args.max_faces,
                encoder=encoder,
                detector=detector,
                max_side=args.max_side,
            )
            result = {"centroids": cs.id, **result}  # which set answered, as HTTP says
        except AnfeError as exc:
            failures += 1
            result = {"error": {"code": exc.code, "message": exc.message}}
        show(str(path), result)
    if failures:
        print(f"anfe: {failures} of {len(paths)} images failed", file=sys.stderr)
        return 3
    return 0


def folder_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """The images of a folder, recursively, and the other files skipped; hidden files and the
    contents of hidden folders (``.git``, ``.anfe``) are neither."""
    images, skipped = [], []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        (images if p.suffix.lower() in datasets.IMAGE_SUFFIXES else skipped).append(p)
    return images, skipped


def _centroid_set(args: argparse.Namespace, uri: str):
    """The set that answers: from the database, or, with no database given and none at
    ./.anfe/db, from the package (nothing is created). A default other than
    g_5000-mahalanobis is named on stderr."""
    if args.db is None and not os.environ.get("ANFE_DB") and not exists(uri):
        return shipped.with_age(shipped.shipped_set(args.centroids))
    with open_store(args) as store:
        cs = shipped.load_centroid_set(store, args.centroids)
    if args.centroids is None and cs.id != shipped.DEFAULT_CENTROIDS:
        print(
            f"anfe: {shipped.DEFAULT_CENTROIDS} is not in {describe_uri(uri)}; its largest set "
            f"{cs.id} answers (--centroids chooses; `anfe centroids seed` adds the shipped sets)",
            file=sys.stderr,
        )
    return cs


def _print_json(path: str, result: dict[str, Any]) -> None:
    print(json.dumps({"path": path, **result}))


def _print_text(path: str, result: dict[str, Any]) -> None:
    if "error" in result:
        print(f"{path}: error: {result['error']['message']}")
    elif not result["faces"]:
        print(f"{path}: no face found")
    for i, face in enumerate(result.get("faces", []), 1):
        b = face["box"]
        flag = " uncertain" if face["uncertain"] else ""
        flag += "" if face["in_range"] else " out-of-range"
        flag += " second-pass" if face.get("detection") == "second_pass" else ""
        age = face.get("age")
        age_text = (
            "" if age is None else f" age={age['value']:.0f} ({age['low']:.0f}-{age['high']:.0f})"
        )
        print(
            f"{path}: face {i} box=({b['top']},{b['right']},{b['bottom']},{b['left']}) "
            f"{face['gender']} d_female={face['distances']['female']:.4f} "
            f"d_male={face['distances']['male']:.4f} confidence={face['confidence']:.3f}"
            f"{age_text} set={result['centroids']}{flag}"
        )


CSV_COLUMNS = [
    "path", "face", "top", "right", "bottom", "left", "gender", "d_female", "d_male", "margin",
    "confidence", "uncertain", "in_range", "age", "age_low", "age_high", "age_under_13", "detection",
    "error_code", "error",
]  # fmt: skip


def _age_columns(age: dict[str, float] | None) -> dict[str, float]:
    """The CSV columns of a face's age (empty when the set has no age model; ``age_under_13``
    empty when it has no child router)."""
    if age is None:
        return {}
    under_13 = {} if age.get("under_13") is None else {"age_under_13": age["under_13"]}
    return {"age": age["value"], "age_low": age["low"], "age_high": age["high"], **under_13}


def _csv_printer():
    """A printer of CSV rows under :data:`CSV_COLUMNS`; ``age`` is empty when the set has none."""
    writer = csv.DictWriter(sys.stdout, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()

    def show(path: str, result: dict[str, Any]) -> None:
        if "error" in result:
            err = result["error"]
            writer.writerow({"path": path, "error_code": err["code"], "error": err["message"]})
        elif not result["faces"]:
            writer.writerow({"path": path, "face": 0})
        for i, face in enumerate(result.get("faces", []), 1):
            writer.writerow(
                {
                    "path": path,
                    "face": i,
                    **face["box"],
                    **{k: v for k, v in face.items() if k not in ("box", "distances", "age")},
                    **_age_columns(face.get("age")),
                    "d_female": face["distances"]["female"],
                    "d_male": face["distances"]["male"],
                }
            )

    return show
