"""``anfe predict``: classify the faces of an image or a folder, as text, JSON lines or CSV."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from anfe.centroids.builder import datasets
from anfe.centroids.errors import AnfeError, DatasetError, InvalidParameter
from anfe.centroids.predict import predict_image
from anfe.centroids.storage import shipped
from anfe.centroids.storage.store import check_uri, default_uri
from anfe.centroids.vision import encoders
from anfe.options import add_db_option, add_encoder_option, formatter, open_store

EXAMPLES_PREDICT = """examples:
  anfe predict photo.jpg
  anfe predict photo.jpg --encoder dlib          # dlib's own encoder: same answers, slower
  anfe predict photos/ --json --centroids g_2000
  anfe predict photos/ --csv > faces.csv      # one row per face (or per failed image)

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
        help="centroid set id (default: g_5000-mahalanobis, else the largest)",
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
    add_encoder_option(p)
    add_db_option(p)
    p.set_defaults(func=run, needs_models=True)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.max_faces <= 100:
        raise InvalidParameter(f"--max-faces must be between 1 and 100, not {args.max_faces}")
    check_uri(args.db or default_uri())
    if args.path.is_dir():
        paths = [
            p for p in sorted(args.path.rglob("*"))
            if p.is_file() and p.suffix.lower() in datasets.IMAGE_SUFFIXES
        ]  # fmt: skip
        if not paths:
            raise DatasetError(f"no images in folder {args.path.name!r}")
    elif args.path.is_file():
        paths = [args.path]
    else:
        raise InvalidParameter(f"no such file or folder: {args.path}")
    encoder = args.encoder or encoders.default_encoder()
    encoders.prepare(encoder)
    encoders.set_threads(encoders.threads_per_process(1))  # this process alone: all the cores
    with open_store(args) as store:
        cs = shipped.load_centroid_set(store, args.centroids)
    show = _csv_printer() if args.csv else _print_json if args.json else _print_text
    failures = 0
    for path in paths:
        try:
            result = predict_image(path.read_bytes(), cs, max_faces=args.max_faces, encoder=encoder)
        except AnfeError as exc:
            failures += 1
            result = {"error": {"code": exc.code, "message": exc.message}}
        show(str(path), result)
    if failures:
        print(f"anfe: {failures} of {len(paths)} images failed", file=sys.stderr)
        return 3
    return 0


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
            f"{age_text}{flag}"
        )


CSV_COLUMNS = [
    "path", "face", "top", "right", "bottom", "left", "gender", "d_female", "d_male", "margin",
    "confidence", "uncertain", "in_range", "age", "age_low", "age_high", "detection",
    "error_code", "error",
]  # fmt: skip


def _age_columns(age: dict[str, float] | None) -> dict[str, float]:
    """The CSV columns of a face's age (empty when the set has no age model)."""
    return (
        {} if age is None else {"age": age["value"], "age_low": age["low"], "age_high": age["high"]}
    )


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
