"""Age from the same 128-d embedding: ridge regression with an interval from held-out residuals.

The model is a ridge regression of a transform of the age (``sqrt``: the square root of the age in
years, which spreads the first years of life the way faces change) on the embedding: one weight
vector and an intercept, so an estimate is one dot product. The interval comes from the residuals
of cross-fitted predictions on the training faces (5 folds, each predicted by a model fitted
without it), in the transformed scale, taken per bin of predicted age (split conformal style): for
a nominal coverage of 0.9 the interval is [prediction + 5th percentile, prediction + 95th
percentile] of the residuals of that bin. Intervals are not symmetric: a face estimated at 30
is more often 45 than 15.

The model is stored as the ``age`` field of a centroid document (``AgeModel.to_doc``) and read
back with ``AgeModel.from_doc``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anfe.centroids import vectors
from anfe.centroids.errors import InvalidParameter

AGE_BANDS = ((0, 3), (4, 12), (13, 17), (18, None))  # the bands the error is reported in
INTERVAL_EDGES = (0.0, 4.0, 8.0, 13.0, 18.0, 25.0, 35.0, 50.0, 65.0)  # bins of predicted age
DEFAULT_ALPHA = 10.0
DEFAULT_COVERAGE = 0.9
TARGETS = {
    "sqrt": (np.sqrt, np.square),
    "years": (lambda a: a, lambda t: t),
    "log1p": (np.log1p, np.expm1),
}
FOLDS = 5


def band_name(band: tuple[int, int | None]) -> str:
    """``"0-3"``, ``"18+"``."""
    lo, hi = band
    return f"{lo}+" if hi is None else f"{lo}-{hi}"


def band_of(age: np.ndarray) -> np.ndarray:
    """The name of the :data:`AGE_BANDS` band of every age."""
    age = np.asarray(age)
    out = np.empty(age.shape, dtype=object)
    for band in AGE_BANDS:
        lo, hi = band
        out[(age >= lo) & (age <= (np.inf if hi is None else hi))] = band_name(band)
    return out


@dataclass
class AgeEstimates:
    """Per-face results of :meth:`AgeModel.predict`: the estimate and its interval, in years."""

    value: np.ndarray
    low: np.ndarray
    high: np.ndarray
    model: str = ""  # id of the centroid set whose age model answered


@dataclass
class AgeModel:
    """Ridge regression of ``target``(age) on the embedding, with per-bin residual quantiles."""

    mean: np.ndarray  # (128,) embedding mean of the training faces
    weights: np.ndarray  # (128,)
    intercept: float
    target: str = "sqrt"
    alpha: float = DEFAULT_ALPHA
    coverage: float = DEFAULT_COVERAGE
    edges: list[float] = field(default_factory=lambda: list(INTERVAL_EDGES))
    low: list[float] = field(default_factory=list)  # residual quantile per bin (target scale)
    high: list[float] = field(default_factory=list)
    held_out: int = 0
    held_out_mae: float = float("nan")  # years, cross-fitted on the training faces
    held_out_coverage: float = float("nan")
    source: dict[str, Any] = field(default_factory=dict)
    # the training faces' estimates (years), each from a model fitted without it; not stored
    cross_fitted: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        ages: np.ndarray,
        *,
        target: str = "sqrt",
        alpha: float = DEFAULT_ALPHA,
        coverage: float = DEFAULT_COVERAGE,
        seed: int = 0,
        source: dict[str, Any] | None = None,
    ) -> AgeModel:
        """Fit on embeddings ``x`` (n, 128) and ages in years; the interval by cross-fitting."""
        x = np.asarray(x, dtype=np.float64)
        ages = np.asarray(ages, dtype=np.float64)
        if target not in TARGETS:
            raise InvalidParameter(f"age target must be one of {', '.join(TARGETS)}")
        if not 0.5 <= coverage < 1.0:
            raise InvalidParameter("the age interval's coverage must be in [0.5, 1)")
        if x.ndim != 2 or x.shape[1:] != (128,) or len(x) != len(ages) or len(x) < 2 * FOLDS:
            raise InvalidParameter(
                f"an age model needs at least {2 * FOLDS} embeddings (n, 128) with one age each"
            )
        forward, _ = TARGETS[target]
        y = forward(ages)
        folds = np.random.default_rng(seed).permutation(len(x)) % FOLDS
        oof = np.empty(len(x))
        for k in range(FOLDS):
            mean, w, b = _ridge(x[folds != k], y[folds != k], alpha)
            oof[folds == k] = (x[folds == k] - mean) @ w + b
        model = cls(*_ridge(x, y, alpha), target=target, alpha=alpha, coverage=coverage)
        model.source = dict(source or {})
        model._fit_interval(oof, y)
        est = model._estimates(oof)
        model.held_out = len(x)
        model.held_out_mae = float(np.mean(np.abs(est.value - ages)))
        model.held_out_coverage = float(np.mean((ages >= est.low) & (ages <= est.high)))
        model.cross_fitted = est.value
        return model

    def _fit_interval(self, predicted: np.ndarray, y: np.ndarray) -> None:
        tail = (1.0 - self.coverage) / 2
        which = self._bin(predicted)
        residual = y - predicted
        everywhere = np.quantile(residual, [tail, 1 - tail])
        self.low, self.high = [], []
        for b in range(len(self.edges)):
            r = residual[which == b]
            lo, hi = np.quantile(r, [tail, 1 - tail]) if len(r) >= 20 else everywhere
            self.low.append(float(lo))
            self.high.append(float(hi))

    def _bin(self, predicted: np.ndarray) -> np.ndarray:
        _, inverse = TARGETS[self.target]
        years = inverse(np.maximum(predicted, 0.0))
        return np.clip(np.searchsorted(self.edges, years, side="right") - 1, 0, len(self.edges) - 1)

    def _estimates(self, predicted: np.ndarray) -> AgeEstimates:
        _, inverse = TARGETS[self.target]
        which = self._bin(predicted)
        low = np.asarray(self.low)[which]
        high = np.asarray(self.high)[which]

        def years(t: np.ndarray) -> np.ndarray:
            return np.maximum(inverse(np.maximum(t, 0.0)), 0.0)

        return AgeEstimates(years(predicted), years(predicted + low), years(predicted + high))

    def predict(self, x: np.ndarray) -> AgeEstimates:
        """The age estimate and interval, in years, of every row of ``x`` (n, 128)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        return self._estimates((x - self.mean) @ self.weights + self.intercept)

    def to_doc(self) -> dict[str, Any]:
        """The ``age`` field of a centroid document (mean and weights packed as float32)."""
        return {
            "method": "ridge",
            "target": self.target,
            "alpha": self.alpha,
            "mean": vectors.pack(self.mean),
            "weights": vectors.pack(self.weights),
            "intercept": self.intercept,
            "interval": {
                "coverage": self.coverage,
                "edges": list(self.edges),
                "low": list(self.low),
                "high": list(self.high),
            },
            "held_out": self.held_out,
            "held_out_mae": self.held_out_mae,
            "held_out_coverage": self.held_out_coverage,
            "source": dict(self.source),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> AgeModel:
        interval = doc.get("interval", {})
        model = cls(
            mean=vectors.unpack(doc["mean"]),
            weights=vectors.unpack(doc["weights"]),
            intercept=float(doc["intercept"]),
            target=str(doc.get("target", "sqrt")),
            alpha=float(doc.get("alpha", DEFAULT_ALPHA)),
            coverage=float(interval.get("coverage", DEFAULT_COVERAGE)),
            edges=[float(v) for v in interval.get("edges", INTERVAL_EDGES)],
            low=[float(v) for v in interval.get("low", [])],
            high=[float(v) for v in interval.get("high", [])],
            held_out=int(doc.get("held_out", 0)),
            held_out_mae=float(doc.get("held_out_mae", float("nan"))),
            held_out_coverage=float(doc.get("held_out_coverage", float("nan"))),
            source=dict(doc.get("source", {})),
        )
        if model.weights.shape != (128,) or model.mean.shape != (128,):
            raise InvalidParameter("the age model does not hold 128-d weights")
        if model.target not in TARGETS or len(model.low) != len(model.edges):
            raise InvalidParameter("the age model's target or interval is malformed")
        return model


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean, weights, intercept) of ridge regression on centred ``x`` (closed form)."""
    mean = x.mean(axis=0)
    xc = x - mean
    weights = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - y.mean()))
    return mean, weights, float(y.mean())
