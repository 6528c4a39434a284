"""The ``anfe`` command: ``build``, ``predict``, ``centroids`` here; other packages add theirs.

Subcommands of other packages (``serve`` of the service, ``scrape`` and ``clean`` of the scraper,
``bench`` of the benchmark) are found through the ``anfe.commands`` entry-point group: each entry
is a function ``register(subparsers)`` that adds one parser with ``func`` set. So this module
imports none of them, and they are loaded only when the command line does not run one of this
module's subcommands (``anfe build`` starts ~0.35 s sooner without FastAPI).

Every option is checked before a model is loaded or an image embedded. Errors print one line
``anfe: error: <message>`` and exit with the code :data:`EXIT_CODES` gives the error's code
(2 bad usage, 3 some or all images failed, 4 centroids missing, 5 database unusable, 6 face
encoder unusable or a download failed, 1 anything else), 130 when interrupted, 141 when the
output pipe is closed.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any

from centroids import datasets, encoders, requirements, shipped
from centroids.build import DEFAULT_SIZES, BuildSpec, build, parse_sizes
from centroids.children import DEFAULT_EDGES, ROUTINGS
from centroids.children import DEFAULT_METHOD as DEFAULT_CHILD_METHOD
from centroids.children import METHODS as CHILD_METHODS
from centroids.dask_pool import DaskUnavailable
from centroids.errors import (
    AnfeError,
    CentroidsNotFound,
    DatabaseUnavailable,
    DatasetError,
    EncoderCacheUnwritable,
    ImageOverBudget,
    ImageTooLarge,
    ImageUndecodable,
    InvalidParameter,
    ModelFileInvalid,
    NoCentroids,
    UnsupportedImageType,
)
from centroids.faces import EmbeddingSettings
from centroids.fit_age import fit_onto
from centroids.predict import predict_image
from centroids.store import Store, check_uri, default_uri, describe_uri

# subcommands that detect or encode faces: they need the dlib stack, checked before they start
MODEL_COMMANDS = {"build", "predict", "bench", "serve", "clean"}
BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left

# The one place where error codes become exit codes, as app/errors.py maps them to HTTP statuses.
# A code not listed exits as its nearest listed parent class does (every fetch error of the
# scraper exits 6), else 1. The scraper's codes are spelled out: this module imports no package
# of another subcommand.
EXIT_CODES: dict[str, int] = {
    InvalidParameter.code: 2,
    DatasetError.code: 2,
    "seed_invalid": 2,  # scraper.errors.SeedError
    ImageUndecodable.code: 3,
    ImageTooLarge.code: 3,
    UnsupportedImageType.code: 3,
    ImageOverBudget.code: 3,
    CentroidsNotFound.code: 4,
    NoCentroids.code: 4,
    DatabaseUnavailable.code: 5,
    DaskUnavailable.code: 5,
    ModelFileInvalid.code: 6,
    EncoderCacheUnwritable.code: 6,
    "fetch_failed": 6,  # scraper.errors.FetchError, and its subclasses
}

EXAMPLES_BUILD = """examples:
  anfe build ../shared/data/utkface --sizes 1000,2000,5000 --min-age 18
  anfe build ../shared/data/utkface --sizes 3000 --min-age 18 --mode centroid,mahalanobis --balance-by race
  anfe build clean/ --sizes 1000,2000,5000,10000,20000,50000 --seed 0 --db mongodb://localhost:27017
  anfe build ../shared/data/utkface --cropped --sizes 500 --encoder dlib   # the reference encoder
  anfe build clean/ --sizes 10000 --dask local                # a Dask LocalCluster on this machine
  anfe build clean/ --sizes 50000 --dask tcp://scheduler:8786  # an existing Dask cluster
"""
EXAMPLES_PREDICT = """examples:
  anfe predict photo.jpg
  anfe predict photo.jpg --encoder dlib          # dlib's own encoder: same answers, slower
  anfe predict photos/ --json --centroids g_2000
  anfe predict photos/ --csv > faces.csv      # one row per face (or per failed image)

exit status: 0 every image read, 3 when any image failed (a summary line says how many)
"""
EXAMPLES_CENTROIDS = """examples:
  anfe centroids list
  anfe centroids show g_5000
  anfe centroids delete g_1000
  anfe centroids seed        # add the shipped sets the database lacks
  anfe centroids fit-age g_5000-mahalanobis --data ../shared/data/utkface --hold-out 0.2
      # add an age model and a child policy, fitted on the folder's faces of all ages
      # (without the benchmark's held-out side), to a stored set; its other fields stay
"""


def add_db_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        default=None,
        help="database URI: mongodb://... or a folder / montydb:///folder "
        f"(default: $ANFE_DB or {default_uri()})",
    )


def add_encoder_option(p: argparse.ArgumentParser) -> None:
    """``--encoder onnx|dlib``, shared by build, predict, bench and serve."""
    p.add_argument(
        "--encoder",
        choices=encoders.ENCODERS,
        default=None,
        help="face encoder: onnx (dlib's network on onnxruntime, same vectors, faster) or dlib "
        f"(the reference; always used for --jitters > 1); default: ${encoders.ENV_VAR} or "
        f"{encoders.DEFAULT_ENCODER}",
    )


def exit_code(exc: AnfeError) -> int:
    """The exit code of a project error, from :data:`EXIT_CODES` (1 for a code it lacks)."""
    for cls in type(exc).__mro__:
        code = vars(cls).get("code")
        if code in EXIT_CODES:
            return EXIT_CODES[code]
    return 1


def open_store(args: argparse.Namespace) -> Store:
    return Store(args.db or default_uri())


def at_least(name: str, value: int | None, least: int = 1) -> None:
    """Raise :class:`InvalidParameter` when an integer option is below ``least``."""
    if value is not None and value < least:
        raise InvalidParameter(f"{name} must be at least {least}, not {value}")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _register_build(sub) -> None:
    p = sub.add_parser(
        "build",
        help="embed a labelled folder and store centroid sets g_N",
        description="Embed images of a labelled folder (female/ male/, or actresses/ actors/) "
        "and store the centroid sets g_N, N images per gender, in the database. "
        "Embeddings are cached: a rerun, or a run after an interruption, recomputes nothing.",
        epilog=EXAMPLES_BUILD,
        formatter_class=_formatter,
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
        "--min-age", type=int, default=None, help="keep images with labels.csv age >= this"
    )
    p.add_argument("--jitters", type=int, default=1, help="dlib num_jitters (default: 1)")
    add_landmarks_option(p)
    p.add_argument("--max-side", type=int, default=800, help="detect on a copy this large")
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
    p.set_defaults(func=_run_build)


def add_landmarks_option(p: argparse.ArgumentParser) -> None:
    """``--landmarks``, shared by ``anfe build`` and ``anfe bench``."""
    p.add_argument(
        "--landmarks",
        choices=["small", "large"],
        default="small",
        help="dlib landmark model that aligns faces: 5 points (small) or 68 (default: small)",
    )


def add_mode_options(p: argparse.ArgumentParser, balance_help: str) -> None:
    """``--k``, ``--shrinkage`` and ``--balance-by``, shared by ``anfe build`` and ``anfe bench``."""
    p.add_argument("--k", type=int, default=None, help="prototypes per gender (default: 8)")
    p.add_argument(
        "--shrinkage", default=None, help="mahalanobis covariance shrinkage: ledoit-wolf or 0..1"
    )
    p.add_argument("--balance-by", metavar="COLUMN", default=None, help=balance_help)


def mode_params(args: argparse.Namespace) -> dict:
    """The centroid-mode parameters given by :func:`add_mode_options`, checked."""
    params: dict = {}
    if args.k is not None:
        if args.k < 1:
            raise InvalidParameter("--k must be at least 1")
        params["k"] = args.k
    if args.shrinkage is not None:
        text = args.shrinkage
        try:
            value = text if text == "ledoit-wolf" else float(text)
        except ValueError:
            value = -1.0
        if value != "ledoit-wolf" and not 0.0 <= value <= 1.0:
            raise InvalidParameter(f"--shrinkage {text!r}: give ledoit-wolf or a number in [0, 1]")
        params["shrinkage"] = value
    return params


def _run_build(args: argparse.Namespace) -> int:
    at_least("--jobs", args.jobs)
    at_least("--min-age", args.min_age, least=0)
    check_uri(args.db or default_uri())
    settings = EmbeddingSettings(
        model=args.landmarks,
        jitters=args.jitters,
        max_side=args.max_side,
        cropped=args.cropped,
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
    if args.dask is not None:
        from centroids.dask_pool import check_address

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
    if not report.built and not report.unchanged:
        print("anfe: error: no size could be filled", file=sys.stderr)
        return 4
    return 0


def _register_predict(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="classify the faces in an image or a folder of images",
        description="Print, for every face, its box, the gender, the distance to each centroid, "
        "the confidence and the estimated age (with its interval). A face found only by the "
        "second detection pass (a copy with a margin, for tight crops) is flagged second-pass.",
        epilog=EXAMPLES_PREDICT,
        formatter_class=_formatter,
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
    p.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
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


def _register_centroids(sub) -> None:
    p = sub.add_parser(
        "centroids",
        help="list, show, delete or seed the stored centroid sets; fit their age model",
        epilog=EXAMPLES_CENTROIDS,
        formatter_class=_formatter,
    )
    p.add_argument(
        "action",
        choices=["list", "show", "delete", "seed", "fit-age"],
        help="list the sets, show one as JSON, delete one, seed the shipped sets, or fit an age "
        "model and child policy onto one",
    )
    p.add_argument("id", nargs="?", help="centroid set id, for show, delete and fit-age")
    g = p.add_argument_group("fit-age")
    g.add_argument("--data", type=Path, help="labelled folder with an age column in labels.csv")
    g.add_argument(
        "--hold-out",
        type=float,
        default=0.2,
        help="leave out the benchmark's held-out side: its split fraction (default: "
        "%(default)s; 0 uses every image)",
    )
    g.add_argument("--seed", type=int, default=0, help="split and fold seed (default: 0)")
    g.add_argument(
        "--method",
        choices=list(CHILD_METHODS),
        default=DEFAULT_CHILD_METHOD,
        help="how faces estimated young are answered (default: %(default)s; see children.py)",
    )
    g.add_argument(
        "--edges",
        default=",".join(f"{e:g}" for e in DEFAULT_EDGES),
        help="estimated-age band edges of the child policy (default: %(default)s)",
    )
    g.add_argument(
        "--routing",
        choices=list(ROUTINGS),
        default=ROUTINGS[0],
        help="which band a face goes to: a logistic router on the embedding, or the band of the "
        "estimated age (default: %(default)s)",
    )
    g.add_argument("--jobs", type=int, default=None, help="worker processes (default: cores)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_db_option(p)
    p.set_defaults(func=_run_centroids)


def _run_centroids(args: argparse.Namespace) -> int:
    if args.action in ("show", "delete", "fit-age") and not args.id:
        raise InvalidParameter(f"`anfe centroids {args.action}` needs a centroid id")
    with open_store(args) as store:
        if args.action == "seed":
            added = shipped.seed(store)
            print(
                f"seeded {', '.join(added)}"
                if added
                else "nothing to seed: all shipped sets present"
            )
            return 0
        if args.action == "list":
            docs = store.list_centroids()
            if not docs:
                print(f"no centroid sets in {describe_uri(store.uri)}")
            for d in docs:
                src = d.get("source", {})
                print(
                    f"{d['_id']:<16} {d.get('mode', 'centroid'):<10} per_gender={d.get('per_gender')} "
                    f"dataset={src.get('dataset')} seed={src.get('seed')} created={d.get('created_at')}"
                )
            return 0
        if args.action == "fit-age":
            return _fit_age(args, store)
        if args.action == "show":
            doc = store.get_centroids(args.id)
            print(json.dumps(doc, indent=2))
            return 0
        if not store.delete_centroids(args.id):
            raise CentroidsNotFound(f"no centroid set with id {args.id!r}")
        print(f"deleted {args.id}")
        return 0


def parse_edges(text: str) -> tuple[float, ...]:
    """``"4,13,18"`` → ``(4.0, 13.0, 18.0)``."""
    try:
        edges = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidParameter(f"--edges {text!r} is not a list of numbers") from None
    if not edges:
        raise InvalidParameter("--edges needs at least one age")
    return edges


def _fit_age(args: argparse.Namespace, store: Store) -> int:
    if args.data is None:
        raise InvalidParameter("`anfe centroids fit-age` needs --data FOLDER")
    if not 0.0 <= args.hold_out < 1.0:
        raise InvalidParameter("--hold-out must be in [0, 1)")
    fitted = fit_onto(
        store,
        args.id,
        args.data,
        hold_out=args.hold_out or None,
        seed=args.seed,
        method=args.method,
        edges=parse_edges(args.edges),
        routing=args.routing,
        jobs=args.jobs,
        progress=not args.no_progress,
    )
    age = fitted.age
    print(
        f"{args.id}: age model fitted on {age.held_out} faces (cross-fitted MAE "
        f"{age.held_out_mae:.2f} years, {age.coverage:.0%} interval covers "
        f"{age.held_out_coverage:.1%}); children: {fitted.children.method}, routed by the "
        f"{'router' if args.routing == 'router' else 'estimated age'}"
    )
    router = fitted.children.router
    if router is not None:
        [chosen] = [
            r
            for r in router.selection
            if (r["adult_confidence"], r["young_confidence"])
            == (router.adult_confidence, router.young_confidence)
        ]
        young = "off" if router.young_confidence is None else f"{router.young_confidence:.2f}"
        print(
            f"  router: the adults' answer from p(adult) {router.adult_confidence:.2f}, uncertain "
            f"from p(under {router.young_below:g}) {young}; chosen on these faces among "
            f"{len(router.selection)} pairs (children answered {chosen['children_answered']:.1%}, "
            f"{chosen['children_wrong_answers']} of them wrongly)"
        )
    lo = 0.0
    for rule in fitted.children.rules:
        t = rule.uncertain_below
        how = (
            "always uncertain"
            if rule.never_answers
            else f"answered {rule.answered:.1%} (female answers from confidence "
            f"{t['female']:.2f}, male from {t['male']:.2f})"
        )
        print(f"  routed {lo:g}-{rule.below:g}: {rule.faces} faces, {how}")
        lo = rule.below
    return 0


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``anfe`` parser with every subcommand; for ``command`` (the one about to run), when it
    is one of this module's, without those of other packages, whose modules take ~0.35 s to
    import (the service's imports FastAPI) and are not needed to parse it."""
    p = argparse.ArgumentParser(
        prog="anfe",
        description="Gender recognition with Average Neural Face Embeddings.",
        formatter_class=_formatter,
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    p.add_argument(
        "--version", action="version", version=f"anfe {version('anfe')}", help="print the version"
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _register_build(sub)
    _register_predict(sub)
    _register_centroids(sub)
    if command in sub.choices:
        return p
    for ep in sorted(entry_points(group="anfe.commands"), key=lambda e: e.name):
        ep.load()(sub)
    return p


def _command(argv: list[str]) -> str | None:
    """The subcommand ``argv`` runs: its first word not an option (the top-level options take no
    value). None when another top-level option than ``-v`` comes first (``--help`` lists every
    subcommand, whatever follows it)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
        if arg not in ("-v", "--verbose"):
            return None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser(_command(argv)).parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command in MODEL_COMMANDS:
            requirements.check()
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here rather than at exit
        return code
    except BrokenPipeError:
        return _end(BROKEN_PIPE_EXIT)  # the reader left (``anfe ... | head``): stop quietly
    except AnfeError as exc:
        return _end(exit_code(exc), f"anfe: error: {exc.message}")
    except KeyboardInterrupt:
        return _end(130, "anfe: interrupted; finished work is saved, rerun to resume")


def _end(code: int, line: str | None = None) -> int:
    """Flush stdout, print ``line`` on stderr, return ``code``.

    Output still buffered for a pipe whose reader has gone is dropped: the run ends with its own
    code (an error's, not 141) and without Python's "Exception ignored ... Broken pipe" at exit,
    which would also turn the code into 120.
    """
    for stream, text in ((sys.stdout, None), (sys.stderr, line)):
        try:
            if text is not None:
                print(text, file=stream)
            stream.flush()
        except BrokenPipeError:
            to_devnull(stream)
    return code


def to_devnull(stream) -> None:
    """Point ``stream`` (stdout, stderr) at /dev/null once the reader of its pipe has gone.

    Later writes, and Python's flush at exit, then succeed instead of failing again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
