"""Fitting the age bins model (:class:`anfe.centroids.model.age.AgeBins`) on faces of known age.

The model is scikit-learn's multinomial ``LogisticRegression`` of the age bin on the embedding,
each face weighted so that every (group, age band) cell weighs the same: children are few among
UTKFace's faces and unevenly spread over its groups, and unweighted they are pulled toward the
adults. The interval's tail per bin of the estimate is chosen on faces of each group predicted by
a model fitted without that group (:func:`group_out`), as the largest tail with which every group
of at least :data:`MIN_GROUP_FACES` faces in that bin is covered at the stated coverage; a later
face of a group the model never saw is then covered as one of those groups was.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from anfe.centroids.errors import InvalidParameter
from anfe.centroids.model.age import (
    BIN_EDGES,
    DEFAULT_COVERAGE,
    INTERVAL_EDGES,
    AgeBins,
    covers,
)

AGE_C = 1.0  # inverse L2 strength (scikit-learn's C)
WEIGHT_BANDS = (4.0, 13.0, 18.0, 40.0)  # the age bands of the weighting cells
TAILS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2)
MIN_GROUP_FACES = 30  # a group's coverage in a bin counts from this many faces
FOLDS = 5  # without groups, folds stand in for them

F = TypeVar("F", bound=Callable[..., Any])


def one_blas_thread(fit: F) -> F:
    """Run ``fit`` with the BLAS and OpenMP libraries on one thread (threadpoolctl).

    The fits here are many small matrix products (lbfgs on 128 columns): a second thread made
    ``python -m anfe.bench.logo`` 1.76x slower on the 2-core machine (189 s against 107 s, quiet),
    and its sums, taken in an order that depends on the thread count, moved a held-out group's
    interval coverage by a face or two. One thread gives the same figures on every machine.
    """

    @functools.wraps(fit)
    def limited(*args: Any, **kwargs: Any) -> Any:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            return fit(*args, **kwargs)

    return limited  # type: ignore[return-value]


def cell_weights(ages: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Weights (mean 1) giving every (group, age band) cell the same total weight."""
    band = np.digitize(np.asarray(ages, dtype=np.float64), WEIGHT_BANDS).astype(str)
    key = band if groups is None else np.char.add(np.asarray(groups).astype(str), band)
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    return w / w.mean()


def fit_bins(
    x: np.ndarray, ages: np.ndarray, groups: np.ndarray | None, *, balance: bool = True
) -> AgeBins:
    """The bins model (no interval yet) fitted on all of ``x``."""
    from sklearn.linear_model import LogisticRegression

    y = np.digitize(np.asarray(ages, dtype=np.float64), BIN_EDGES)
    clf = LogisticRegression(C=AGE_C, max_iter=500).fit(
        x, y, sample_weight=cell_weights(ages, groups) if balance else None
    )
    if len(clf.classes_) <= 2:  # scikit-learn's binary case keeps one row
        raise InvalidParameter("an age model needs faces of more than two age bins")
    weights = np.zeros((len(BIN_EDGES) + 1, x.shape[1]))
    intercepts = np.full(len(BIN_EDGES) + 1, -50.0)  # bins without a face: never likely
    weights[clf.classes_], intercepts[clf.classes_] = clf.coef_, clf.intercept_
    return AgeBins(weights, intercepts, fit={"C": AGE_C, "balance": "group x age band"
                                             if balance else "none"})  # fmt: skip


def held_groups(groups: np.ndarray | None, n: int, seed: int) -> np.ndarray:
    """The groups to leave out one at a time: ``groups``, or :data:`FOLDS` random folds."""
    if groups is not None and len(np.unique(groups)) >= 2:
        return np.asarray(groups).astype(str)
    return (np.random.default_rng(seed).permutation(n) % FOLDS).astype(str)


def group_out(
    fit: Callable[[np.ndarray], Any],
    predict: Callable[[Any, np.ndarray], np.ndarray],
    held: np.ndarray,
    width: int,
) -> np.ndarray:
    """For each group of ``held``: ``predict(fit(rows without it), its rows)``, stacked in order."""
    out = np.empty((len(held), width))
    for g in np.unique(held):
        rows = held == g
        out[rows] = predict(fit(~rows), rows)
    return out


def choose_tails(
    model: AgeBins, p: np.ndarray, ages: np.ndarray, held: np.ndarray, coverage: float
) -> list[float]:
    """Per bin of the estimate, the largest tail covering ``coverage`` in every group."""
    value = model.quantile(p, 0.5)
    which = np.clip(np.searchsorted(model.edges, value, side="right") - 1, 0, len(model.edges) - 1)
    tails = []
    for b in range(len(model.edges)):
        chosen = TAILS[0]
        for tail in sorted(TAILS, reverse=True):
            lo, hi = model.quantile(p, tail), model.quantile(p, 1 - tail)
            inside = covers(lo, hi, ages)
            cells = [(held == g) & (which == b) for g in np.unique(held)]
            if all(inside[c].mean() >= coverage for c in cells if c.sum() >= MIN_GROUP_FACES):
                chosen = tail
                break
        tails.append(float(chosen))
    return tails


@one_blas_thread
def fit_age_bins(
    x: np.ndarray,
    ages: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    coverage: float = DEFAULT_COVERAGE,
    seed: int = 0,
    source: dict[str, Any] | None = None,
) -> tuple[AgeBins, np.ndarray]:
    """The age model fitted on all faces, and every face's bin distribution from a model fitted
    without its group (without ``groups``: its fold), which chose the interval's tails.

    :param groups: each face's group (UTKFace's ``race``), or None
    """
    x = np.asarray(x, dtype=np.float64)
    ages = np.asarray(ages, dtype=np.float64)
    if not 0.5 <= coverage < 1.0:
        raise InvalidParameter("the age interval's coverage must be in [0.5, 1)")
    if x.ndim != 2 or x.shape[1:] != (128,) or len(x) != len(ages) or len(x) < 2 * FOLDS:
        raise InvalidParameter(
            f"an age model needs at least {2 * FOLDS} embeddings (n, 128) with one age each"
        )
    g = None if groups is None else np.asarray(groups)
    held = held_groups(g, len(x), seed)
    model = fit_bins(x, ages, g)
    model.coverage, model.edges = coverage, list(INTERVAL_EDGES)
    p = group_out(
        lambda rows: fit_bins(x[rows], ages[rows], None if g is None else g[rows]),
        lambda m, rows: m.distribution(x[rows]),
        held,
        len(BIN_EDGES) + 1,
    )
    model.tails = choose_tails(model, p, ages, held, coverage)
    est = model.estimates(p)
    inside = covers(est.low, est.high, ages)
    model.held_out = len(x)
    model.held_out_mae = float(np.mean(np.abs(est.value - ages)))
    model.held_out_coverage = float(inside.mean())
    model.held_out_worst_coverage = float(min(inside[held == h].mean() for h in np.unique(held)))
    model.source = dict(source or {})
    model.fit["held_out_by"] = "group" if g is not None and len(np.unique(g)) >= 2 else "fold"
    return model, p
