"""Score centroid modes and baselines with intervals, worst groups, calibration and abstention.

The benchmark puts every centroid mode (``g_N-<mode>``, see :mod:`anfe.centroids.model.centroid_set`)
next to the paper's rule and the baseline classifiers, on the same test faces:

- balanced accuracy with a 95% bootstrap interval, over persons where every test face names its
  person (LFW), over images otherwise (UTKFace);
- the same per group of each label column (race, age bins) and the worst group, over groups with
  at least ``metrics.MIN_GROUP_GENDER`` faces of each gender;
- for centroid sets only, which carry a calibrated confidence: the expected calibration error on
  the held-out training folds (stored in the set) and on the test faces, the reliability bins,
  and the risk-coverage rows (accuracy when the least certain 1%, 5%, 10% are set aside);
- the time to classify one face, batched and alone.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from anfe.bench import metrics
from anfe.centroids.model.calibration import expected_calibration_error
from anfe.centroids.model.centroid_set import CentroidSet


def clusters_of(items: list, usable: list[int]) -> list[str] | None:
    """The person of every scored face when all are named, else None (bootstrap over images)."""
    persons = [items[i].person for i in usable]
    return persons if all(persons) else None


def label_stats(
    truth: np.ndarray,
    predicted: np.ndarray,
    extras: list[dict[str, str]],
    clusters: list[str] | None,
    seed: int = 0,
) -> dict[str, Any]:
    """Balanced accuracy with its interval, overall and per group, and the worst group."""
    out: dict[str, Any] = {
        "balanced": metrics.bootstrap_balanced(truth, predicted, clusters, seed=seed),
        "groups_ci": {},
    }
    keys = np.asarray(clusters) if clusters is not None else None
    for column, values in metrics.group_columns(extras).items():
        g = np.asarray([v or "" for v in values])
        per: dict[str, Any] = {}
        for value in sorted(set(g.tolist()) - {""}, key=metrics._group_sort_key):
            mask = g == value
            n_f = int(np.sum(truth[mask] == "female"))
            n_m = int(np.sum(truth[mask] == "male"))
            ci = metrics.bootstrap_balanced(
                truth[mask], predicted[mask], None if keys is None else keys[mask], seed=seed
            )
            per[value] = {**ci, "n_female": n_f, "n_male": n_m}
        eligible = {
            k: v
            for k, v in per.items()
            if min(v["n_female"], v["n_male"]) >= metrics.MIN_GROUP_GENDER
        }
        worst = min(eligible, key=lambda k: eligible[k]["value"]) if eligible else None
        out["groups_ci"][column] = {
            "groups": per,
            "worst": {"group": worst, **eligible[worst]} if worst else None,
        }
    return out


def time_per_face(cs: CentroidSet, X: np.ndarray, repeats: int = 5) -> dict[str, float]:
    """Milliseconds per face: a batch of every test face, and one face at a time (best of runs)."""
    batch = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        cs.classify(X)
        batch.append((time.perf_counter() - t0) / len(X))
    single = []
    for row in X[: min(len(X), 200)]:
        t0 = time.perf_counter()
        cs.classify(row)
        single.append(time.perf_counter() - t0)
    return {"batch_ms": 1000 * min(batch), "single_ms": 1000 * float(np.median(single))}


def score_mode(
    cs: CentroidSet,
    X: np.ndarray,
    y: np.ndarray,
    extras: list[dict[str, str]],
    clusters: list[str] | None,
    seed: int = 0,
) -> dict[str, Any]:
    """Everything the mode comparison reports for one centroid set on one test set."""
    preds = cs.classify(X)
    right = preds.gender == y
    return {
        "centroid_id": cs.id,
        "mode": cs.mode,
        "params": dict(cs.params),
        "scores": metrics.scores(metrics.Confusion.of(y, preds.gender)),
        **label_stats(y, preds.gender, extras, clusters, seed),
        "calibration": {
            "held_out_ece": cs.calibration.ece,
            "held_out": cs.calibration.held_out,
            "held_out_accuracy": cs.calibration.held_out_accuracy,
            "test_ece": expected_calibration_error(preds.confidence, right),
            "uncertain_share": float(np.mean(preds.uncertain)),
        },
        "reliability": metrics.reliability(preds.confidence, right),
        "risk_coverage": metrics.risk_coverage(y, preds.gender, preds.margin),
        "time": time_per_face(cs, X),
    }
