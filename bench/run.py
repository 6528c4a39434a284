"""The centroid-size benchmark (the paper's Figures 5 and 7), with baselines and a bias breakdown.

:func:`run` builds (or reuses) every ``g_N`` of the train folder through :func:`anfe.centroids.builder.sets.build`
(the code of ``anfe build``, every embedding computed once and cached), embeds each test set
through :func:`anfe.centroids.builder.extract.embed_paths` (cached as well), and scores each size on each test
set: per-gender accuracy, balanced accuracy, F1, confusion counts and the distance to the
predicted centroid of right and wrong answers. On the same embeddings and split it trains the
classifiers of :mod:`anfe.bench.baselines`, breaks accuracy down by the test set's label columns
(race, age bins) and, with ``mask``, scores masked copies of the test faces (:mod:`anfe.bench.masks`).

When a test folder is the train folder, it is split: by person where persons are known, else by
image content, so exact duplicate images stay on one side. Persons present in both train and test
sets are found by name and reported, since a score on faces seen in training is not a gender score.

:func:`run` goes through named phases (read and split, build, embed the tests, masks, score)
and returns a :class:`BenchResult`, written out by :mod:`anfe.bench.report`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from anfe.bench import ages, baselines, logo, masks, modes, tight
from anfe.bench.config import (
    SPLIT_SUFFIX,
    BenchConfig,
    balance_suffix,
    comparison_sizes,
    limit_per_gender,
    person_overlap,
    unique_name,
)
from anfe.bench.environment import machine, versions
from anfe.bench.testsets import TestSet, compare_methods, jobs_of, log_overlap, score_size
from anfe.centroids.builder import datasets
from anfe.centroids.builder.ages import GROUP_COLUMN, grouped_aged_faces, set_settings
from anfe.centroids.builder.datasets import split
from anfe.centroids.builder.extract import embed_paths
from anfe.centroids.builder.sets import (
    BuildReport,
    BuildSpec,
    Sample,
    build,
    sample,
    set_id,
)
from anfe.centroids.builder.workers import default_jobs
from anfe.centroids.errors import DatasetError, InvalidParameter
from anfe.centroids.model.centroid_set import GENDERS, CentroidSet
from anfe.centroids.model.fit_children import CHILD_AGE
from anfe.centroids.storage import shipped
from anfe.centroids.storage.store import Store, describe_uri

# -- splitting and overlap -------------------------------------------------------------------------


# -- scoring ----------------------------------------------------------------------------------------


# -- the run ----------------------------------------------------------------------------------------


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
    if cfg.ages:
        require_groups(all_train)
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
    if cfg.min_age:
        datasets.require_ages(train_items)
    pool = datasets.adults(train_items, cfg.min_age) if cfg.min_age else train_items
    return TrainSide(train_layout, all_train, train_items, pool, held_out, split_info)


def require_groups(items: list[datasets.Item]) -> None:
    """Refuse ``--ages`` before any work on a folder whose aged images do not all carry a
    ``race``: its leave-one-group-out (:mod:`anfe.bench.logo`) holds out each group in turn.

    :raises InvalidParameter: no image has an age, or an image with an age has no group
    """
    datasets.require_ages(items, "--ages")
    aged = [it for it in items if it.extra.get("age", "").strip().isdigit()]
    lacking = [it for it in aged if not it.extra.get(GROUP_COLUMN, "").strip()]
    if lacking:
        raise InvalidParameter(
            f"--ages holds out each '{GROUP_COLUMN}' group in turn, and {len(lacking)} of the "
            f"{len(aged)} images with an age have no '{GROUP_COLUMN}' in labels.csv (the first: "
            f"{lacking[0].path.name}); give each one a value, or leave out --ages"
        )
    groups = sorted({it.extra[GROUP_COLUMN].strip() for it in aged})
    for group in groups:  # each fit without one group needs, in the others, children of each gender
        others = [it for it in aged if it.extra[GROUP_COLUMN].strip() != group]
        for gender in GENDERS:
            young = sum(it.gender == gender and int(it.extra["age"]) < CHILD_AGE for it in others)
            if young < 2:
                raise InvalidParameter(
                    f"--ages fits the child references without each '{GROUP_COLUMN}' group, and "
                    f"without '{group}' only {young} {gender} image(s) under {CHILD_AGE} are "
                    f"left (at least 2 needed); add some, or leave out --ages"
                )


def build_sets(cfg: BenchConfig, store: Store, train: TrainSide, log=print) -> TrainedSets:
    """Build (or reuse) every ``g_N`` through the builder, and draw the sample they hold."""
    suffix = (
        "-".join(
            p for p in (SPLIT_SUFFIX if train.split_info else None, balance_suffix(cfg.balance_by))
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
        name = unique_name(path, taken, from_train)
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
        log_overlap(ts, log)
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
            entry, arr = score_size(ts, cs)
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
        rows = compare_methods(methods, train_x, train_y, tests, log, cfg.progress, cfg.seed)
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
        grouped_aged_faces(items, settings, store, jobs=cfg.jobs, progress=cfg.progress)
        for items in (train.items, train.held_out)
    ]
    out = ages.score(cs, sides[0][:3], sides[1][:3], seed=cfg.seed, train_groups=sides[0][3])
    out["centroid_id"] = cs.id
    out["embedding"] = settings.describe()
    if sides[0][3] is not None and sides[1][3] is not None:  # every face, both sides
        x, a, g, groups = (np.concatenate([sides[0][i], sides[1][i]]) for i in range(4))
        out["leave_one_group_out"] = logo.leave_one_group_out(cs, x, a, g, groups, seed=cfg.seed,
                                                              log=log)  # fmt: skip
        out["leave_one_group_out"]["column"] = GROUP_COLUMN
    else:
        log(f"ages: no '{GROUP_COLUMN}' column for every aged face: no leave-one-group-out")
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
