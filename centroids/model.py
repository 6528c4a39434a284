"""The classifier: a pair of gender centroids, nearest centroid by Euclidean distance.

For an embedding x and centroids (f, m): d_f = ||x - f||, d_m = ||x - m||; the gender is the
nearer centroid (the paper's rule, exact: female when d_f < d_m, male otherwise). Every batch is
classified as one matrix operation.

Besides the gender we return both distances, the margin |d_f - d_m|, a confidence in [0.5, 1]
from a logistic calibration of the margin, ``uncertain`` (margin below a stored threshold) and
``in_range`` (the nearer distance lies within what training faces showed, the paper's "working
range"). Calibration and working range are fitted on held-out training embeddings by 5-fold
cross-fitting: each fold is scored by centroids built from the other four.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from centroids.errors import InvalidParameter

GENDERS = ("female", "male")
UNCERTAIN_CONFIDENCE = 0.75  # faces whose calibrated confidence is below this are "uncertain"
RANGE_QUANTILE = 0.995


@dataclass
class Predictions:
    """Per-face results of :meth:`CentroidSet.classify`; every field has one entry per face."""

    gender: np.ndarray  # "female" or "male"
    d_female: np.ndarray
    d_male: np.ndarray
    margin: np.ndarray
    confidence: np.ndarray
    uncertain: np.ndarray
    in_range: np.ndarray

    def __len__(self) -> int:
        return len(self.gender)

    def record(self, i: int) -> dict[str, Any]:
        """Face ``i`` as a plain dict, as the API and the CLI print it."""
        return {
            "gender": str(self.gender[i]),
            "distances": {"female": float(self.d_female[i]), "male": float(self.d_male[i])},
            "margin": float(self.margin[i]),
            "confidence": float(self.confidence[i]),
            "uncertain": bool(self.uncertain[i]),
            "in_range": bool(self.in_range[i]),
        }


@dataclass
class Calibration:
    """p(right | margin) = sigmoid(a * margin + b), floored at 0.5."""

    a: float = 0.0
    b: float = 0.0
    uncertain_below: float = 0.0
    held_out: int = 0
    held_out_accuracy: float = float("nan")

    def confidence(self, margin: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-(self.a * margin + self.b)))
        return np.clip(p, 0.5, 1.0)

    def to_doc(self) -> dict[str, Any]:
        return {
            "method": "logistic_margin",
            "a": self.a,
            "b": self.b,
            "uncertain_below": self.uncertain_below,
            "uncertain_confidence": UNCERTAIN_CONFIDENCE,
            "held_out": self.held_out,
            "held_out_accuracy": self.held_out_accuracy,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> Calibration:
        doc = doc or {}
        return cls(
            a=float(doc.get("a", 0.0)),
            b=float(doc.get("b", 0.0)),
            uncertain_below=float(doc.get("uncertain_below", 0.0)),
            held_out=int(doc.get("held_out", 0)),
            held_out_accuracy=float(doc.get("held_out_accuracy", float("nan"))),
        )


@dataclass
class CentroidSet:
    """Two 128-d centroids and what is needed to explain a decision made with them."""

    id: str
    female: np.ndarray
    male: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)
    calibration: Calibration = field(default_factory=Calibration)
    max_distance: float = float("inf")  # working range: nearer-centroid distance seen in training
    embedding: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""

    @property
    def per_gender(self) -> int:
        return int(min(self.counts.values())) if self.counts else 0

    @classmethod
    def from_embeddings(
        cls,
        cid: str,
        female: np.ndarray,
        male: np.ndarray,
        *,
        embedding: dict[str, Any] | None = None,
        source: dict[str, Any] | None = None,
        seed: int = 0,
    ) -> CentroidSet:
        """Average each gender's embeddings; fit calibration and working range by cross-fitting."""
        female = _as_matrix(female)
        male = _as_matrix(male)
        if len(female) == 0 or len(male) == 0:
            raise InvalidParameter("a centroid set needs embeddings of both genders")
        cs = cls(
            id=cid,
            female=female.mean(axis=0),
            male=male.mean(axis=0),
            counts={"female": len(female), "male": len(male)},
            embedding=dict(embedding or {}),
            source=dict(source or {}),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        cs.calibration, cs.max_distance = _cross_fit(female, male, seed)
        return cs

    def distances(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Euclidean distances of each row of ``x`` to the female and to the male centroid."""
        x = _as_matrix(x)
        d = np.linalg.norm(x[:, None, :] - np.stack([self.female, self.male])[None], axis=2)
        return d[:, 0], d[:, 1]

    def classify(self, x: np.ndarray) -> Predictions:
        """Classify every row of ``x`` (shape (n, 128)) by the nearer centroid."""
        d_f, d_m = self.distances(x)
        margin = np.abs(d_f - d_m)
        confidence = self.calibration.confidence(margin)
        return Predictions(
            gender=np.where(d_f < d_m, "female", "male"),
            d_female=d_f,
            d_male=d_m,
            margin=margin,
            confidence=confidence,
            uncertain=margin < self.calibration.uncertain_below,
            in_range=np.minimum(d_f, d_m) <= self.max_distance,
        )

    def to_doc(self) -> dict[str, Any]:
        """The database document (DESIGN.md, ``centroids`` collection)."""
        return {
            "_id": self.id,
            "per_gender": self.per_gender,
            "mode": "centroid",
            "vectors": {"female": self.female.tolist(), "male": self.male.tolist()},
            "counts": dict(self.counts),
            "embedding": dict(self.embedding),
            "source": dict(self.source),
            "calibration": self.calibration.to_doc(),
            "working_range": {"max_distance": self.max_distance, "quantile": RANGE_QUANTILE},
            "created_at": self.created_at,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> CentroidSet:
        vectors = doc["vectors"]
        female = np.asarray(vectors["female"], dtype=np.float64)
        male = np.asarray(vectors["male"], dtype=np.float64)
        if female.shape != (128,) or male.shape != (128,):
            raise InvalidParameter(f"centroid set {doc.get('_id')!r} does not hold 128-d vectors")
        return cls(
            id=doc["_id"],
            female=female,
            male=male,
            counts={k: int(v) for k, v in doc.get("counts", {}).items()},
            calibration=Calibration.from_doc(doc.get("calibration")),
            max_distance=float(doc.get("working_range", {}).get("max_distance", float("inf"))),
            embedding=dict(doc.get("embedding", {})),
            source=dict(doc.get("source", {})),
            created_at=str(doc.get("created_at", "")),
        )


def _as_matrix(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or (x.size and x.shape[1] != 128):
        raise InvalidParameter(f"embeddings must have shape (n, 128), not {x.shape}")
    return x


def _cross_fit(female: np.ndarray, male: np.ndarray, seed: int, folds: int = 5):
    """Score each image with centroids that did not see it; fit the margin calibration."""
    rng = np.random.default_rng(seed)
    margins, right, nearer = [], [], []
    fold_f = rng.permutation(len(female)) % folds
    fold_m = rng.permutation(len(male)) % folds
    for k in range(folds):
        test_f, test_m = female[fold_f == k], male[fold_m == k]
        train_f, train_m = female[fold_f != k], male[fold_m != k]
        if not len(train_f) or not len(train_m) or not (len(test_f) + len(test_m)):
            continue
        f, m = train_f.mean(axis=0), train_m.mean(axis=0)
        for x, is_female in ((test_f, True), (test_m, False)):
            if not len(x):
                continue
            d_f = np.linalg.norm(x - f, axis=1)
            d_m = np.linalg.norm(x - m, axis=1)
            margins.append(np.abs(d_f - d_m))
            right.append((d_f < d_m) == is_female)
            nearer.append(np.minimum(d_f, d_m))
    if not margins:
        return Calibration(), float("inf")
    margin = np.concatenate(margins)
    ok = np.concatenate(right).astype(np.float64)
    a, b = _fit_logistic(margin, ok)
    cal = Calibration(a=a, b=b, held_out=len(margin), held_out_accuracy=float(ok.mean()))
    cal.uncertain_below = _margin_at(cal, UNCERTAIN_CONFIDENCE)
    return cal, float(np.quantile(np.concatenate(nearer), RANGE_QUANTILE))


def _fit_logistic(x: np.ndarray, y: np.ndarray, iters: int = 50) -> tuple[float, float]:
    """Maximum-likelihood fit of y ~ sigmoid(a*x + b) by Newton's method (small L2 ridge)."""
    X = np.column_stack([x, np.ones_like(x)])
    w = np.zeros(2)
    ridge = 1e-6 * np.eye(2)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(X @ w)))
        grad = X.T @ (p - y)
        hess = X.T @ (X * (p * (1 - p))[:, None]) + ridge
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return float(w[0]), float(w[1])


def _margin_at(cal: Calibration, confidence: float) -> float:
    """The margin at which the calibrated confidence reaches ``confidence`` (0 if always above)."""
    if cal.a <= 0:
        return 0.0
    logit = np.log(confidence / (1 - confidence))
    return float(max(0.0, (logit - cal.b) / cal.a))
