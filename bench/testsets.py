"""A test set of the benchmark: its faces and labels, and the scores of a centroid set on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from anfe.bench import baselines, masks, metrics, modes
from anfe.centroids.builder import datasets
from anfe.centroids.builder.extract import Embedded
from anfe.centroids.model.centroid_set import GENDERS, CentroidSet
from anfe.centroids.vision.settings import EmbeddingSettings


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


def score_size(ts: TestSet, cs: CentroidSet) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
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


def compare_methods(
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


def log_overlap(ts: TestSet, log) -> None:
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
