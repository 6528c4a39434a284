"""Age from the same 128-d embedding: the distribution over age bins, or a ridge regression.

The shipped model (:class:`AgeBins`, method ``bins``) is a multinomial logistic regression of the
age bin (:data:`BIN_EDGES`: single years up to 4, then wider bins) on the embedding: one weight row
per bin, so an estimate is one small matrix product and a softmax. The estimate is the median of
that distribution (linear inside its bin) and the interval its ``tail`` and ``1 - tail``
quantiles, with ``tail`` taken per bin of the estimate (:data:`INTERVAL_EDGES`) and chosen, when
the model is fitted, on faces of groups the model fitted without (leave one group out), so that
the interval reaches its stated coverage in each of those groups
(:mod:`anfe.centroids.model.fit_age`). The distribution also gives the probability of an age band
(:meth:`AgeBins.band_probabilities`). Why bins and not a regression: the ridge estimate pulls
children toward the adults it is mostly fitted on, by about 6 years for the children of a group it
never saw (``docs/results.md``, "Leave one group out").

The older model (:class:`AgeModel`, method ``ridge``, still read from older documents):

The model is a ridge regression of a transform of the age (``sqrt``: the square root of the age in
years, which spreads the first years of life the way faces change) on the embedding: one weight
vector and an intercept, so an estimate is one dot product. The interval comes from the residuals
of cross-fitted predictions on the training faces (5 folds, each predicted by a model fitted
without it), in the transformed scale, taken per bin of predicted age (split conformal style): for
a nominal coverage of 0.9 the interval is [prediction + 5th percentile, prediction + 95th
percentile] of the residuals of that bin. Intervals are not symmetric: a face estimated at 30
is more often 45 than 15.

Either model is stored as the ``age`` field of a centroid document (``to_doc``) and read back
with :func:`age_model_from_doc`.
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
# the age bins of AgeBins: [0, 1), [1, 2), ..., [80, TOP]; 4, 13 and 18 are edges, so band
# probabilities are sums of bins
BIN_EDGES = (1.0, 2.0, 3.0, 4.0, 6.0, 9.0, 13.0, 16.0, 18.0, 20.0, 25.0, 30.0, 35.0, 40.0, 50.0,
             60.0, 70.0, 80.0)  # fmt: skip
TOP = 100.0  # upper end of the last bin (older faces are estimated inside it)


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


def covers(low: np.ndarray, high: np.ndarray, ages: np.ndarray) -> np.ndarray:
    """Whether each interval [low, high] overlaps the year of age of ``ages`` (whole years, as
    labelled: age 5 is [5, 6))."""
    ages = np.asarray(ages, dtype=np.float64)
    return (np.asarray(low) < ages + 1) & (np.asarray(high) >= ages)


@dataclass
class AgeEstimates:
    """Per-face results of :meth:`AgeModel.predict`: the estimate and its interval, in years."""

    value: np.ndarray
    low: np.ndarray
    high: np.ndarray
    model: str = ""  # id of the centroid set whose age model answered
    # p(under 13) from the set's child router (what routes the face; None: the set has none)
    under_13: np.ndarray | None = None


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


@dataclass
class AgeBins:
    """Multinomial logistic regression of the age bin on the embedding (see the module doc)."""

    weights: np.ndarray  # (bins, 128)
    intercepts: np.ndarray  # (bins,)
    bin_edges: list[float] = field(default_factory=lambda: list(BIN_EDGES))
    coverage: float = DEFAULT_COVERAGE
    edges: list[float] = field(default_factory=lambda: list(INTERVAL_EDGES))  # of the estimate
    tails: list[float] = field(default_factory=list)  # per bin of the estimate
    held_out: int = 0
    held_out_mae: float = float("nan")  # years, faces of each group from a model fitted without it
    held_out_coverage: float = float("nan")
    held_out_worst_coverage: float = float("nan")  # of the least covered group
    source: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)  # how it was fitted (weights, C, groups)

    method = "bins"

    def distribution(self, x: np.ndarray) -> np.ndarray:
        """p(age bin) of every row of ``x`` (n, 128): (n, bins)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        z = x @ self.weights.T + self.intercepts
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def band_probabilities(
        self, x: np.ndarray, edges: list[float] | tuple[float, ...]
    ) -> np.ndarray:
        """p(age under edges[0]), p(edges[0] <= age < edges[1]), ..., p(age >= edges[-1]):
        (n, len(edges) + 1); every edge must be one of the model's bin edges."""
        missing = [e for e in edges if e not in self.bin_edges]
        if missing:
            raise InvalidParameter(f"band edges {missing} are not edges of the age model's bins")
        p = self.distribution(x)
        cuts = [0, *(self.bin_edges.index(e) + 1 for e in edges), p.shape[1]]
        return np.stack(
            [p[:, a:b].sum(axis=1) for a, b in zip(cuts[:-1], cuts[1:], strict=True)], 1
        )

    def estimates(self, p: np.ndarray) -> AgeEstimates:
        """The estimate and interval, in years, from bin distributions ``p`` (n, bins)."""
        value = self.quantile(p, 0.5)
        which = np.clip(
            np.searchsorted(self.edges, value, side="right") - 1, 0, len(self.edges) - 1
        )
        tail = np.asarray(self.tails, dtype=np.float64)[which]
        return AgeEstimates(value, self.quantile(p, tail), self.quantile(p, 1.0 - tail))

    def predict(self, x: np.ndarray) -> AgeEstimates:
        """The age estimate and interval, in years, of every row of ``x`` (n, 128)."""
        return self.estimates(self.distribution(x))

    def quantile(self, p: np.ndarray, q: float | np.ndarray) -> np.ndarray:
        """The ``q`` quantile (per face, or one for all) of bin distributions ``p``, in years,
        linear inside a bin."""
        lo = np.array([0.0, *self.bin_edges])
        hi = np.array([*self.bin_edges, TOP])
        q = np.broadcast_to(np.asarray(q, dtype=np.float64), (len(p),))
        c = np.cumsum(p, axis=1)
        k = np.minimum(np.argmax(c >= q[:, None] - 1e-12, axis=1), p.shape[1] - 1)
        rows = np.arange(len(p))
        before = np.where(k > 0, c[rows, np.maximum(k - 1, 0)], 0.0)
        inside = np.clip((q - before) / np.maximum(p[rows, k], 1e-12), 0.0, 1.0)
        return lo[k] + inside * (hi[k] - lo[k])

    def to_doc(self) -> dict[str, Any]:
        """The ``age`` field of a centroid document."""
        return {
            "method": self.method,
            "bin_edges": list(self.bin_edges),
            "weights": vectors.pack(self.weights),  # (bins, 128), row by row
            "intercepts": self.intercepts.tolist(),
            "interval": {"coverage": self.coverage, "edges": list(self.edges),
                         "tails": list(self.tails)},
            "held_out": self.held_out,
            "held_out_mae": self.held_out_mae,
            "held_out_coverage": self.held_out_coverage,
            "held_out_worst_coverage": self.held_out_worst_coverage,
            "source": dict(self.source),
            "fit": dict(self.fit),
        }  # fmt: skip

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> AgeBins:
        interval = doc.get("interval", {})
        model = cls(
            weights=vectors.unpack(doc["weights"], columns=128),
            intercepts=np.asarray(doc["intercepts"], dtype=np.float64),
            bin_edges=[float(e) for e in doc.get("bin_edges", BIN_EDGES)],
            coverage=float(interval.get("coverage", DEFAULT_COVERAGE)),
            edges=[float(v) for v in interval.get("edges", INTERVAL_EDGES)],
            tails=[float(v) for v in interval.get("tails", [])],
            held_out=int(doc.get("held_out", 0)),
            held_out_mae=float(doc.get("held_out_mae", float("nan"))),
            held_out_coverage=float(doc.get("held_out_coverage", float("nan"))),
            held_out_worst_coverage=float(doc.get("held_out_worst_coverage", float("nan"))),
            source=dict(doc.get("source", {})),
            fit=dict(doc.get("fit", {})),
        )
        bins = len(model.bin_edges) + 1
        if model.weights.shape != (bins, 128) or model.intercepts.shape != (bins,):
            raise InvalidParameter("the age model does not hold one 128-d row per age bin")
        if len(model.tails) != len(model.edges) or not all(0 < t < 0.5 for t in model.tails):
            raise InvalidParameter("the age model's interval is malformed")
        return model


def age_model_from_doc(doc: dict[str, Any]) -> AgeModel | AgeBins:
    """The age model of an ``age`` field: ``bins`` (:class:`AgeBins`) or ``ridge``."""
    method = str(doc.get("method", "ridge"))
    if method == AgeBins.method:
        return AgeBins.from_doc(doc)
    if method != "ridge":
        raise InvalidParameter(f"unknown age model method {method!r}")
    return AgeModel.from_doc(doc)
