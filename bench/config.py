"""What a benchmark run is asked to do: its configuration, and the choices made from it."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from anfe.centroids.builder import datasets
from anfe.centroids.builder.datasets import normalise_name
from anfe.centroids.builder.sets import (
    draw_order,
)
from anfe.centroids.errors import InvalidParameter
from anfe.centroids.model.centroid_set import GENDERS, MODES
from anfe.centroids.storage.shipped import DEFAULT_CENTROIDS
from anfe.centroids.vision.settings import EmbeddingSettings

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
        if self.ages and all(t.resolve() != self.train.resolve() for t in self.tests):
            raise InvalidParameter("--ages needs the train folder among the --test folders")

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d["train"] = str(self.train)
        d["tests"] = [str(t) for t in self.tests]
        d["embedding"] = self.embedding.describe()
        return d


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


def balance_suffix(column: str | None) -> str | None:
    """``by-race`` for sets drawn with ``--balance-by race``, so they keep their own ids."""
    return f"by-{re.sub(r'[^a-z0-9]+', '-', column.lower()).strip('-')}" if column else None


def unique_name(path: Path, taken: set[str], split_from_train: bool) -> str:
    base = path.name + (" (held-out)" if split_from_train else "")
    name, k = base, 2
    while name in taken:
        name, k = f"{base} #{k}", k + 1
    taken.add(name)
    return name
