"""``anfe bench``: the centroid-size benchmark from the command line (see bench.run)."""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from anfe.bench import cells, config, plots, report, run
from anfe.centroids.builder.sets import parse_sizes
from anfe.centroids.errors import InvalidParameter
from anfe.centroids.storage.shipped import DEFAULT_CENTROIDS
from anfe.centroids.storage.store import Store, check_uri, default_uri
from anfe.centroids.vision import encoders
from anfe.centroids.vision.settings import EmbeddingSettings
from anfe.options import (
    add_db_option,
    add_detector_option,
    add_encoder_option,
    add_landmarks_option,
    add_mode_options,
    chosen_detector,
    mode_params,
)

EXAMPLES = """examples:
  # the paper's experiment: centroids of 1K..50K images per gender, scored on a FaceScrub folder
  anfe bench --train clean/ --test facescrub/ --sizes 1000,2000,5000,10000,20000,50000 \\
      --seed 0 --out bench-out/

  # train on UTKFace adults (face crops), test on LFW and on a held-out part of UTKFace,
  # with the race/age breakdown and masked copies of the test faces
  anfe bench --train ../shared/data/utkface --cropped --min-age 18 \\
      --test ../shared/data/lfw --test ../shared/data/utkface --test-per-gender 500 \\
      --sizes 100,300,1000 --mask --db .anfe/bench-db --out bench-out/

  # every centroid mode next to the paper's rule and the baselines, held-out UTKFace
  # adults only, with intervals, worst race group, calibration and risk-coverage tables
  anfe bench --train ../shared/data/utkface --cropped --min-age 18 \\
      --test ../shared/data/lfw --test ../shared/data/utkface --test-per-gender 500 \\
      --test-min-age 18 --sizes 3000 --modes centroid,prototypes,mahalanobis,mahalanobis-prototypes \\
      --db .anfe/bench-db --out bench-modes/

  # the same with race-balanced training draws (sets stored as g_N-split-by-race-<mode>)
  anfe bench ... --modes centroid,mahalanobis --balance-by race --out bench-modes-race/

  # age estimate and children's answers of the shipped default (fitted on the train side of
  # UTKFace, all ages, scored on its held-out side), and faces found in tight LFW crops
  anfe bench --train ../shared/data/utkface --min-age 18 --sizes 1000 \\
      --test ../shared/data/lfw --test ../shared/data/utkface --test-per-gender 500 \\
      --ages --tight-crops 0.1,0.15 --db .anfe/bench-db --out bench-ages/

Embeddings are cached in the database (--db), so a second run computes none and is fast.
A test folder equal to --train is split (by person when persons are known) and said so.
Outputs in --out: results.json, results.md, accuracy_vs_size.png, distances.png.
"""


def register(subparsers) -> None:
    """Add the ``bench`` subcommand."""
    p = subparsers.add_parser(
        "bench",
        help="score centroid sizes on test sets, with baselines, groups and masks",
        description="Build (or reuse) the centroid sets g_N of a train folder and score each on "
        "one or more test folders (labelled female/ male/, or FaceScrub actresses/ actors/): "
        "accuracy on women and men, balanced accuracy, F1, confusion counts, distances of right "
        "and wrong answers, baseline classifiers on the same embeddings, a breakdown by the test "
        "set's labels.csv columns (race, age), with --mask scores on masked faces and, with --modes, "
        "every centroid mode beside the baselines (95% bootstrap intervals, worst group, "
        "calibration error, reliability plot, risk-coverage table).",
        epilog=EXAMPLES,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(
            prog, max_help_position=32
        ),
    )
    p.add_argument("--train", type=Path, required=True, help="labelled folder to build from")
    p.add_argument(
        "--test",
        type=Path,
        action="append",
        required=True,
        help="test folder; repeat for several (the train folder itself is split)",
    )
    p.add_argument(
        "--sizes",
        default="1000,2000,5000,10000,20000,50000",
        help="images per gender (%(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of draws and split (default: 0)")
    p.add_argument(
        "--out", type=Path, default=Path("bench-out"), help="output folder (default: %(default)s)"
    )
    p.add_argument("--cropped", action="store_true", help="train images are face crops")
    p.add_argument(
        "--test-cropped", action="store_true", help="the other test folders hold face crops"
    )
    p.add_argument("--min-age", type=int, default=None, help="train on labels.csv age >= this")
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="share held out when a test folder is the train folder (default: 0.2)",
    )
    p.add_argument(
        "--test-per-gender", type=int, default=None, help="score at most this many per gender"
    )
    p.add_argument(
        "--baselines",
        choices=config.BASELINE_POLICIES,
        default="largest",
        help="train the baseline classifiers at the largest size, at all sizes, or not at all",
    )
    p.add_argument(
        "--baseline-cap",
        type=int,
        default=5000,
        help="train the baselines on at most this many images per gender (default: 5000)",
    )
    p.add_argument("--mask", action="store_true", help="also score masked copies of test faces")
    p.add_argument(
        "--modes",
        default="",
        help="centroid modes to compare at the baselines' size, comma-separated: centroid, "
        "prototypes, mahalanobis, mahalanobis-prototypes (default: none; the paper's rule only)",
    )
    add_mode_options(
        p, "labels.csv column (e.g. race) whose groups contribute equally to the train draws"
    )
    p.add_argument(
        "--test-min-age",
        type=int,
        default=None,
        help="score only test faces with labels.csv age >= this (faces without an age are kept)",
    )
    p.add_argument(
        "--ages",
        action="store_true",
        help="fit the age model and every child policy on the train side (all ages) and score "
        "them on the held-out side: age error by band, answers by age band and gender; and "
        "the same leaving each race group out in turn (labels.csv: age and race columns)",
    )
    p.add_argument(
        "--tight-crops",
        default="",
        metavar="FRACTIONS",
        help="crop the test photos this share inside HOG's box (e.g. 0.1,0.15) and report the "
        "faces found with and without the second detection pass",
    )
    p.add_argument(
        "--centroids",
        default=DEFAULT_CENTROIDS,
        help="stored set that --ages and --tight-crops score (default: %(default)s, seeded "
        "from the shipped sets when missing)",
    )
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: cores)")
    p.add_argument("--jitters", type=int, default=1, help="dlib num_jitters (default: 1)")
    add_landmarks_option(p)
    add_detector_option(p)
    add_encoder_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_db_option(p, "the embedding cache and the built sets")
    p.set_defaults(func=_run_bench, needs_models=True)


def command_line(args: argparse.Namespace) -> str:
    """The command, rebuilt from the parsed arguments, for the record."""
    parts = ["anfe", "bench", "--train", str(args.train)]
    for t in args.test:
        parts += ["--test", str(t)]
    parts += ["--sizes", args.sizes, "--seed", str(args.seed)]
    for flag in ("cropped", "test_cropped", "mask", "ages", "no_progress"):
        if getattr(args, flag):
            parts.append("--" + flag.replace("_", "-"))
    for opt in ("min_age", "test_per_gender", "test_min_age", "balance_by", "k", "shrinkage"):
        if getattr(args, opt) is not None:
            parts += ["--" + opt.replace("_", "-"), str(getattr(args, opt))]
    if args.modes:
        parts += ["--modes", args.modes]
    if args.tight_crops:
        parts += ["--tight-crops", args.tight_crops]
    if (args.ages or args.tight_crops) and args.centroids != DEFAULT_CENTROIDS:
        parts += ["--centroids", args.centroids]
    for opt in ("detector", "encoder", "jobs", "db"):
        if getattr(args, opt) is not None:
            parts += ["--" + opt.replace("_", "-"), str(getattr(args, opt))]
    if args.test_fraction != 0.2:
        parts += ["--test-fraction", str(args.test_fraction)]
    if args.baselines != "largest":
        parts += ["--baselines", args.baselines]
    if args.baseline_cap != 5000:
        parts += ["--baseline-cap", str(args.baseline_cap)]
    if args.jitters != 1 or args.landmarks != "small":
        parts += ["--jitters", str(args.jitters), "--landmarks", args.landmarks]
    parts += ["--out", str(args.out)]
    return shlex.join(parts)


def parse_fractions(text: str) -> list[float]:
    """``"0.1,0.15"`` → ``[0.1, 0.15]``."""
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidParameter(f"--tight-crops {text!r} is not a list of numbers") from None


def _run_bench(args: argparse.Namespace) -> int:
    """Run the benchmark and write its outputs; return the exit code."""
    t0 = time.perf_counter()
    if args.jobs is not None and args.jobs < 1:
        raise InvalidParameter("--jobs must be at least 1")
    plots.require_matplotlib()
    check_uri(args.db or default_uri())
    params = mode_params(args)
    if args.out.exists() and not args.out.is_dir():
        raise InvalidParameter(f"--out {str(args.out)!r} is a file, not a folder")
    cfg = config.BenchConfig(
        train=args.train,
        tests=list(args.test),
        sizes=parse_sizes(args.sizes),
        seed=args.seed,
        cropped=args.cropped,
        test_cropped=args.test_cropped,
        min_age=args.min_age,
        test_fraction=args.test_fraction,
        test_per_gender=args.test_per_gender,
        baselines=args.baselines,
        baseline_cap=args.baseline_cap,
        mask=args.mask,
        modes=[m.strip() for m in args.modes.split(",") if m.strip()],
        mode_params=params,
        balance_by=args.balance_by,
        test_min_age=args.test_min_age,
        ages=args.ages,
        tight_crops=parse_fractions(args.tight_crops),
        scored_set=args.centroids,
        jobs=args.jobs,
        progress=not args.no_progress,
        embedding=EmbeddingSettings(
            model=args.landmarks,
            jitters=args.jitters,
            detector=chosen_detector(args),
            encoder=args.encoder or encoders.default_encoder(),
        ),
    )
    with Store(args.db or default_uri()) as store:
        result = run.run(cfg, store)
    results = result.results
    results["command"] = command_line(args)
    results["elapsed_s"] = time.perf_counter() - t0
    paths = report.write_all(result, args.out)
    for t in results["tests"]:
        last = t["sizes"][-1]
        s = last["scores"]
        print(
            f"{t['name']}: {last['centroid_id']} women {cells.pct(s['accuracy_female'])}% "
            f"men {cells.pct(s['accuracy_male'])}% balanced "
            f"{cells.pct(s['balanced_accuracy'])}% on {s['n']} faces"
        )
    print(f"wrote {', '.join(str(p) for p in paths)}")
    print(
        f"run time {results['elapsed_s']:.1f} s; new embeddings computed: {results['embedded_new']}"
    )
    return 0
