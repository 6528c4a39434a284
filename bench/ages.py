"""``anfe bench --ages``: the age estimate and children's answers, on the held-out side of a split.

The age model and every child policy are fitted on the train side of the split (all ages,
:func:`centroids.fit_children.fit_age_and_children`, the code of ``anfe centroids fit-age``) and
scored on the held-out side: the age's mean absolute error and interval coverage by age band, and,
per age band and gender, the share of faces answered (not ``uncertain``) and the share of those
answers that are wrong, before (the set as built for adults) and after each policy, with the
faces routed to its bands by the router or by the estimated age. The expected
calibration error of the confidence is taken over all ages.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import product
from typing import Any

import numpy as np

from anfe.centroids.model.age import AGE_BANDS, AgeBins, AgeModel, band_name, band_of, covers
from anfe.centroids.model.calibration import expected_calibration_error
from anfe.centroids.model.centroid_set import GENDERS, CentroidSet, Predictions
from anfe.centroids.model.children import (
    DEFAULT_EDGES,
    DEFAULT_METHOD,
    METHODS,
    ROUTINGS,
    Router,
    abstain_policy,
)
from anfe.centroids.model.fit_children import fit_age_and_children

BAND_NAMES = [band_name(b) for b in AGE_BANDS]


def age_errors(model: AgeModel | AgeBins, x: np.ndarray, ages: np.ndarray) -> list[dict[str, Any]]:
    """Mean absolute error, median error and interval coverage by band, then over all faces."""
    est = model.predict(x)
    err = np.abs(est.value - ages)
    inside = covers(est.low, est.high, ages)
    bands = band_of(ages)
    rows = []
    for name in [*BAND_NAMES, "all"]:
        m = bands == name if name != "all" else np.ones(len(ages), dtype=bool)
        rows.append(
            {
                "band": name,
                "n": int(m.sum()),
                "mae": _mean(err[m]),
                "median_error": float(np.median(err[m])) if m.any() else float("nan"),
                "coverage": _mean(inside[m]),
                "mean_width": _mean((est.high - est.low)[m]),
            }
        )
    return rows


def answers(preds: Predictions, ages: np.ndarray, genders: np.ndarray) -> dict[str, Any]:
    """Per band: answered share and wrong share among answers for each gender, balanced accuracy
    of all answers, uncertain share; and the ECE of the confidence over all faces."""
    bands = band_of(ages)
    right = preds.gender == genders
    rows = []
    for name in BAND_NAMES:
        m = bands == name
        row: dict[str, Any] = {"band": name, "n": int(m.sum())}
        for g in GENDERS:
            mine = m & (genders == g)
            given = mine & ~preds.uncertain
            row[g] = {
                "n": int(mine.sum()),
                "answered": _mean(given[mine]),
                "wrong": _mean(~right[given]),
                "wrong_count": int(np.sum(~right[given])),
                "answered_count": int(given.sum()),
            }
        row["answered"] = _mean(~preds.uncertain[m])
        row["uncertain"] = _mean(preds.uncertain[m])
        row["balanced_accuracy"] = _mean(
            np.array([_mean(right[m & (genders == g)]) for g in GENDERS])
        )
        rows.append(row)
    return {
        "bands": rows,
        "ece": expected_calibration_error(preds.confidence, right),
        "ece_adults": expected_calibration_error(preds.confidence[ages >= 18], right[ages >= 18]),
    }


def score(
    cs: CentroidSet,
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    methods: list[str] | None = None,
    edge_options: list[tuple[float, ...]] | None = None,
    routings: list[str] | None = None,
    seed: int = 0,
    train_groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fit on ``train`` = (embeddings, ages, genders), score on ``test``; see the module doc.

    ``train_groups`` (each train face's ``race``): the routing by p(under 13) chooses its
    thresholds leaving each group out, as the shipped default's were (without: folds).

    Each policy is fitted with each routing (``anfe.centroids.model.children.ROUTINGS``): the router's band,
    and the band of the estimated age (named "..., routed by age"). The row "borrowed router,
    abstain" is what a set without its own policy does with the default's router: the set's own
    answer, uncertain for every face routed to a child band.
    """
    x_train, a_train, g_train = train
    x_test, a_test, g_test = test
    adult_only = replace(cs, age=None, children=None)
    policies: list[dict[str, Any]] = [
        {"name": "before", "method": None, "edges": None, **answers(adult_only.classify(x_test),
                                                                   a_test, g_test)}
    ]  # fmt: skip
    if cs.children is not None and cs.age is not None:
        policies.append(
            {
                "name": "as stored",
                "method": cs.children.method,
                "edges": [r.below for r in cs.children.rules],
                **answers(cs.classify(x_test), a_test, g_test),
            }
        )
    age_model, borrowed = None, None
    for method in methods or list(METHODS):
        for edges, routing in product(edge_options or [DEFAULT_EDGES], routings or ROUTINGS):
            if routing == "under13" and method != DEFAULT_METHOD:
                continue  # the shipped routing, with the shipped method only
            fitted = fit_age_and_children(
                adult_only, x_train, a_train, g_train, method=method, edges=edges, seed=seed,
                routing=routing, groups=train_groups,
            )  # fmt: skip
            if routing == "under13" or age_model is None:
                age_model = fitted.age
            routed = {"age": ", routed by age", "under13": ", by p(under 13)"}.get(routing, "")
            policies.append(
                {
                    "name": f"{method} < {_edges_text(edges)}{routed}",
                    "method": method,
                    "routing": routing,
                    "edges": list(edges),
                    "rules": [r.to_doc() for r in fitted.children.rules],
                    **_router_choice(fitted.children.router),
                    **answers(fitted.classify(x_test), a_test, g_test),
                }
            )
            if method == DEFAULT_METHOD and routing == "router":
                borrowed = replace(adult_only, age=fitted.age,
                                   children=abstain_policy(fitted.children.router))  # fmt: skip
    if (
        borrowed is not None
    ):  # what a set without its own policy does (anfe.centroids.storage.shipped.with_age)
        policies.append(
            {
                "name": "borrowed router, abstain",
                "method": "abstain",
                "routing": "router",
                "edges": list(borrowed.children.router.edges),
                **answers(borrowed.classify(x_test), a_test, g_test),
            }
        )
    if age_model is None:
        age_model = AgeModel.fit(x_train, a_train, seed=seed)
    return {
        "train_faces": len(x_train),
        "test_faces": len(x_test),
        "age_model": {
            k: v
            for k, v in age_model.to_doc().items()
            if k not in ("mean", "weights", "intercepts")
        },  # fmt: skip
        "age_errors": age_errors(age_model, x_test, a_test),
        "policies": policies,
    }


def _router_choice(router: Router | None) -> dict[str, Any]:
    """The router's thresholds and the train-side figures they were chosen by."""
    if router is None:
        return {}
    return {
        "adult_confidence": router.adult_confidence,
        "young_confidence": router.young_confidence,
        "selection": router.selection,
    }


def _edges_text(edges: tuple[float, ...]) -> str:
    return ",".join(f"{e:g}" for e in edges)


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else float("nan")
