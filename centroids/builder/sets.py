"""Build centroid sets ``g_N`` (N images per gender) from a labelled folder and store them.

For each gender the images are put in one seeded random order; the N images of ``g_N`` are the
first N in that order that hold exactly one face (any face for ``cropped`` datasets), so the images
of a smaller size are a subset of those of a larger one. Images are embedded in waves, just enough
to fill the largest size, through :func:`anfe.centroids.builder.extract.embed_paths` (parallel, cached,
resumable). A size the data cannot fill is reported and skipped, never built from fewer images.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anfe.centroids.builder import datasets
from anfe.centroids.builder.extract import Cache, Embedded, embed_paths, load_cache
from anfe.centroids.errors import InvalidParameter
from anfe.centroids.model.centroid_set import GENDERS, MODES, CentroidSet
from anfe.centroids.storage.embedding_chunks import release_freed_memory
from anfe.centroids.storage.store import Store
from anfe.centroids.vision.settings import EmbeddingSettings

DEFAULT_SIZES = (1000, 2000, 5000, 10000, 20000, 50000)


def centroid_id(per_gender: int, suffix: str | None = None) -> str:
    """``g_N``, or ``g_N-suffix`` for sets that must not replace the plain ``g_N``."""
    return f"g_{per_gender}-{suffix}" if suffix else f"g_{per_gender}"


def parse_sizes(text: str) -> list[int]:
    """``"1000,2000,5k"`` → ``[1000, 2000, 5000]`` (sorted, unique, positive)."""
    sizes = set()
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        mult = 1000 if part.endswith("k") else 1
        try:
            value = int(part.rstrip("k")) * mult
        except ValueError:
            raise InvalidParameter(f"size {part!r} is not a whole number") from None
        if value < 2:
            raise InvalidParameter(
                f"size {value} is too small; each gender needs at least 2 images"
            )
        sizes.add(value)
    if not sizes:
        raise InvalidParameter("no sizes given")
    return sorted(sizes)


@dataclass
class GenderTally:
    """What happened to the images looked at for one gender."""

    examined: int = 0
    usable: int = 0
    no_face: int = 0
    several_faces: int = 0
    unreadable: int = 0

    def add(self, emb: Embedded) -> None:
        self.examined += 1
        if emb.error:
            self.unreadable += 1
        elif emb.usable:
            self.usable += 1
        elif emb.faces_found == 0:
            self.no_face += 1
        else:
            self.several_faces += 1


@dataclass
class BuildReport:
    built: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    tally: dict[str, GenderTally] = field(default_factory=dict)
    computed: int = 0  # images embedded in this run (cache misses)
    uncalibrated: list[str] = field(default_factory=list)  # built from too few images to calibrate


@dataclass
class Sample:
    """The usable images of one gender in draw order, with their embeddings."""

    items: list[datasets.Item] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)

    def matrix(self) -> np.ndarray:
        """The embeddings as one float32 matrix (n, 128), in draw order: the set of size N is
        its first N rows (a view, not a copy)."""
        if not self.vectors:
            return np.zeros((0, 128), dtype=np.float32)
        return np.stack(self.vectors).astype(np.float32, copy=False)


def draw_order(
    items: list[datasets.Item], seed: int, gender: str, balance_by: str | None = None
) -> list[datasets.Item]:
    """The seeded random order in which one gender's images are drawn.

    With ``balance_by`` (a labels.csv column such as ``race``) the groups take turns: the first
    N images hold as many of each group as the smallest group allows, then the rest by turns.
    """
    pool = sorted((it for it in items if it.gender == gender), key=lambda it: it.path.as_posix())
    rng = np.random.default_rng([seed, GENDERS.index(gender)])
    order = [pool[i] for i in rng.permutation(len(pool))]
    if not balance_by:
        return order
    groups: dict[str, list[datasets.Item]] = {}
    for it in order:
        groups.setdefault(it.extra.get(balance_by, "") or "unknown", []).append(it)
    if len(groups) == 1 and "unknown" in groups:
        raise InvalidParameter(f"no image has a {balance_by!r} column in labels.csv")
    turns = [groups[name] for name in sorted(groups)]
    return [
        group[i] for i in range(max(len(g) for g in turns)) for group in turns if i < len(group)
    ]


def set_id(per_gender: int, mode: str = "centroid", suffix: str | None = None) -> str:
    """``g_N`` for the paper's mode, ``g_N-<mode>`` for another, with an optional suffix first."""
    parts = [p for p in (suffix, None if mode == "centroid" else mode) if p]
    return centroid_id(per_gender, "-".join(parts) or None)


def sample(
    items: list[datasets.Item],
    need: int,
    settings: EmbeddingSettings,
    store: Store | None,
    *,
    seed: int = 0,
    jobs: int | None = None,
    progress: bool = True,
    report: BuildReport | None = None,
    dask: str | None = None,
    balance_by: str | None = None,
) -> dict[str, Sample]:
    """Embed images in draw order until each gender has ``need`` usable ones (or none are left)."""
    report = report or BuildReport()
    orders = {g: draw_order(items, seed, g, balance_by) for g in GENDERS}
    cursor = {g: 0 for g in GENDERS}
    out = {g: Sample() for g in GENDERS}
    report.tally = {g: GenderTally() for g in GENDERS}
    cache = load_cache(store, settings) if store is not None else Cache()
    while True:
        wave: list[tuple[str, datasets.Item]] = []
        for g in GENDERS:
            missing = need - len(out[g].items)
            if missing <= 0 or cursor[g] >= len(orders[g]):
                continue
            take = min(len(orders[g]) - cursor[g], int(missing * 1.1) + 8)
            wave += [(g, it) for it in orders[g][cursor[g] : cursor[g] + take]]
            cursor[g] += take
        if not wave:
            break
        before = len(cache)
        embedded = embed_paths(
            [it.path for _, it in wave],
            settings,
            store,
            labels=[g for g, _ in wave],
            jobs=jobs,
            progress=progress,
            desc="embedding",
            cache=cache,
            dask=dask,
        )
        report.computed += len(cache) - before
        for (g, it), emb in zip(wave, embedded, strict=True):
            if len(out[g].items) >= need:
                continue
            report.tally[g].add(emb)
            if emb.usable:
                out[g].items.append(it)
                out[g].vectors.append(emb.vector)
                out[g].hashes.append(emb.sha256)
    return out


@dataclass
class BuildSpec:
    """What to build: the images, how they are drawn and embedded, and which sets to store.

    ``modes`` other than the paper's ``centroid`` are stored as ``g_N-<mode>`` (see model.py),
    fitted with ``params`` (``k`` for prototypes, ``shrinkage`` for mahalanobis).
    ``balance_by`` makes each group of that labels.csv column contribute equally to every size.
    ``id_suffix`` stores ``g_N-<suffix>`` instead (the benchmark's sets trained on a split).
    ``items``, when given, are the images to draw from instead of those read from ``dataset``
    (which then only names the source in the stored documents).
    """

    dataset: str | Path
    sizes: list[int]
    settings: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    seed: int = 0
    min_age: int | None = None
    balance_by: str | None = None
    modes: list[str] | tuple[str, ...] = ("centroid",)
    params: dict = field(default_factory=dict)
    id_suffix: str | None = None
    items: list[datasets.Item] | None = None

    def check(self) -> None:
        """Raise :class:`InvalidParameter` for an unknown mode or no size."""
        if not self.sizes:
            raise InvalidParameter("no sizes given")
        for mode in self.modes:
            if mode not in MODES:
                raise InvalidParameter(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")

    def pool(self) -> list[datasets.Item]:
        """The images to draw from: ``items`` or the dataset's, adults only with ``min_age``."""
        items = self.items if self.items is not None else datasets.read_dataset(self.dataset)
        if self.min_age is None:
            return items
        datasets.require_ages(items)
        return datasets.adults(items, self.min_age)


def build(
    spec: BuildSpec,
    store: Store,
    *,
    jobs: int | None = None,
    progress: bool = True,
    dask: str | None = None,
    log=print,
) -> BuildReport:
    """Build and store ``g_N`` for every N in ``spec.sizes`` that the dataset can fill.

    :param jobs: worker processes (default: the cores)
    :param dask: run the extraction on a Dask cluster (``"local"`` or a scheduler address)
    :param log: called with one line per set built, kept or skipped
    """
    spec.check()
    sizes = sorted(set(spec.sizes))
    settings = spec.settings
    items = spec.pool()
    report = BuildReport()
    drawn = sample(
        items,
        max(sizes),
        settings,
        store,
        seed=spec.seed,
        jobs=jobs,
        progress=progress,
        report=report,
        dask=dask,
        balance_by=spec.balance_by,
    )
    # each gender's embeddings held once; every size takes its first rows
    held = {g: drawn[g].matrix() for g in GENDERS}
    for g in GENDERS:
        drawn[g].vectors = []  # views of the cache read from the database, now let go
    release_freed_memory()
    for n in sizes:
        short = [g for g in GENDERS if len(drawn[g].items) < n]
        if short:
            have = ", ".join(f"{len(drawn[g].items)} {g}" for g in GENDERS)
            report.skipped[n] = f"needs {n} usable images per gender; the dataset has {have}"
            log(f"skipped {set_id(n, spec.modes[0], spec.id_suffix)}: {report.skipped[n]}")
            continue
        digest = hashlib.sha256(
            "\n".join(drawn["female"].hashes[:n] + drawn["male"].hashes[:n]).encode()
        ).hexdigest()
        source = {
            "dataset": str(spec.dataset),
            "seed": spec.seed,
            "images": 2 * n,
            "min_age": spec.min_age,
            "balance_by": spec.balance_by,
            "sample_sha256": digest,
        }
        for mode in spec.modes:
            cid = set_id(n, mode, spec.id_suffix)
            mode_params = dict(spec.params) if mode != "centroid" else {}
            if _unchanged(store.find_centroids(cid), source, settings, mode, mode_params):
                report.unchanged.append(cid)
                log(f"{cid}: unchanged (same images and settings), kept")
                continue
            cs = CentroidSet.from_embeddings(
                cid,
                held["female"][:n],
                held["male"][:n],
                embedding=settings.describe(),
                source=source,
                seed=spec.seed,
                mode=mode,
                params=mode_params,
            )
            store.put_centroids(cs.to_doc())
            report.built.append(cid)
            log(
                f"{cid}: stored ({n} female + {n} male; held-out accuracy "
                f"{cs.calibration.held_out_accuracy:.3f})"
            )
            if not cs.calibration.calibrated:
                report.uncalibrated.append(cid)
    return report


def _unchanged(
    existing: dict | None,
    source: dict,
    settings: EmbeddingSettings,
    mode: str,
    params: dict,
) -> bool:
    """Whether the stored document ``existing`` was built from the same sample the same way."""
    if not existing:
        return False
    stored = existing.get("params", {})
    return (
        existing.get("source", {}).get("sample_sha256") == source["sample_sha256"]
        and existing.get("source", {}).get("balance_by") == source["balance_by"]
        and existing.get("embedding") == settings.describe()
        and existing.get("mode", "centroid") == mode
        and all(stored.get(k) == v for k, v in params.items())
    )
