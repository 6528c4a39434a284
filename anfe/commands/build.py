"""``anfe build``: embed a labelled folder and store its centroid sets g_N."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anfe.centroids.builder import datasets
from anfe.centroids.builder.sets import DEFAULT_SIZES, BuildSpec, build, parse_sizes
from anfe.centroids.model.calibration import MIN_CALIBRATION_PER_GENDER
from anfe.centroids.storage.store import check_uri, default_uri
from anfe.centroids.vision import encoders
from anfe.centroids.vision.settings import EmbeddingSettings
from anfe.options import (
    add_db_option,
    add_detector_option,
    add_encoder_option,
    add_landmarks_option,
    add_mode_options,
    at_least,
    chosen_detector,
    formatter,
    mode_params,
    open_store,
)

EXAMPLES_BUILD = """examples:
  anfe build ../shared/data/utkface --sizes 1000,2000,5000 --min-age 18
  anfe build ../shared/data/utkface --sizes 3000 --min-age 18 --mode centroid,mahalanobis --balance-by race
  anfe build clean/ --sizes 1000,2000,5000,10000,20000,50000 --seed 0 --db mongodb://localhost:27017
  anfe build ../shared/data/utkface --cropped --sizes 500 --encoder dlib   # the reference encoder
  anfe build clean/ --sizes 1000 --detector cnn                # dlib's CNN detector finds the faces
  anfe build clean/ --sizes 10000 --dask local                # a Dask LocalCluster on this machine
  anfe build clean/ --sizes 50000 --dask tcp://scheduler:8786  # an existing Dask cluster
"""


def register(sub) -> None:
    p = sub.add_parser(
        "build",
        help="embed a labelled folder and store centroid sets g_N",
        description="Embed images of a labelled folder (female/ male/, or actresses/ actors/) "
        "and store the centroid sets g_N, N images per gender, in the database. "
        "Embeddings are cached: a rerun, or a run after an interruption, recomputes nothing.",
        epilog=EXAMPLES_BUILD,
        formatter_class=formatter,
    )
    p.add_argument("dataset", type=Path, help="labelled folder")
    p.add_argument(
        "--sizes",
        default=",".join(str(s) for s in DEFAULT_SIZES),
        help="images per gender, comma-separated (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random draw (default: 0)")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: cores)")
    p.add_argument("--cropped", action="store_true", help="images are face crops: no detection")
    p.add_argument(
        "--min-age",
        type=int,
        default=None,
        help="keep images with labels.csv age >= this (refused when no image has an age)",
    )
    p.add_argument("--jitters", type=int, default=1, help="dlib num_jitters (default: 1)")
    add_landmarks_option(p)
    p.add_argument(
        "--max-side",
        type=int,
        default=800,
        help="detect faces on a copy whose longer side is at most this (default: %(default)s)",
    )
    add_detector_option(p)
    add_encoder_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--mode",
        default="centroid",
        help="centroid modes, comma-separated: centroid (the paper's, stored as g_N), prototypes, "
        "mahalanobis, mahalanobis-prototypes (stored as g_N-<mode>); default: %(default)s",
    )
    add_mode_options(
        p, "labels.csv column (e.g. race) whose groups contribute equally to every size"
    )
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        default=None,
        help="run the extraction on a Dask cluster: 'local' or a scheduler address "
        "(tcp://host:8786); needs the 'dask' extra",
    )
    add_db_option(p)
    p.set_defaults(func=run, needs_models=True)


def run(args: argparse.Namespace) -> int:
    at_least("--jobs", args.jobs)
    at_least("--min-age", args.min_age, least=0)
    check_uri(args.db or default_uri())
    settings = EmbeddingSettings(
        model=args.landmarks,
        jitters=args.jitters,
        max_side=args.max_side,
        cropped=args.cropped,
        detector=chosen_detector(args),
        encoder=args.encoder or encoders.default_encoder(),
    )
    spec = BuildSpec(
        args.dataset,
        parse_sizes(args.sizes),
        settings,
        seed=args.seed,
        min_age=args.min_age,
        balance_by=args.balance_by,
        modes=[m.strip() for m in args.mode.split(",") if m.strip()],
        params=mode_params(args),
    )
    spec.check()
    datasets.layout(spec.dataset)  # a missing or unlabelled folder, before the database opens
    if spec.min_age is not None:  # ages to filter by, before the database opens
        spec.items = datasets.read_dataset(spec.dataset)
        datasets.require_ages(spec.items)
    if args.dask is not None:
        from anfe.centroids.builder.dask_pool import check_address

        check_address(args.dask)
    with open_store(args) as store:
        report = build(spec, store, jobs=args.jobs, progress=not args.no_progress, dask=args.dask)
    for g, t in report.tally.items():
        print(
            f"{g}: {t.examined} examined, {t.usable} usable, {t.no_face} no face, "
            f"{t.several_faces} several faces, {t.unreadable} unreadable"
        )
    print(
        f"embedded {report.computed} new images; built {', '.join(report.built) or 'nothing'}"
        + (f"; unchanged {', '.join(report.unchanged)}" if report.unchanged else "")
    )
    if report.uncalibrated:
        print(
            f"anfe: warning: {', '.join(report.uncalibrated)} uncalibrated: fewer than "
            f"{MIN_CALIBRATION_PER_GENDER} images per gender cannot calibrate a confidence, so "
            "every answer of such a set is uncertain (confidence 0.5)",
            file=sys.stderr,
        )
    if not report.built and not report.unchanged:
        print("anfe: error: no size could be filled", file=sys.stderr)
        return 4
    return 0
