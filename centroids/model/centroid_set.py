"""The classifier: a pair of gender centroids, nearest centroid by Euclidean distance.

For an embedding x and centroids (f, m): d_f = ||x - f||, d_m = ||x - m||; the gender is the
nearer centroid (the paper's rule, exact: female when d_f < d_m, male otherwise). Every batch is
classified as one matrix operation.

Modes beyond the paper: ``centroid`` is the paper's rule, kept exact. ``prototypes``
replaces each gender's single mean by k k-means prototypes and measures the distance to the nearest
one; ``mahalanobis`` measures distances after whitening by the pooled within-gender covariance
(Ledoit-Wolf shrinkage); ``mahalanobis-prototypes`` does both. Every mode keeps the gender means in
the document and classifies by the nearer gender, so each stays a nearest-centroid method: a few
vector operations per face, explainable by the distances it returns.

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

from anfe.centroids import vectors
from anfe.centroids.errors import InvalidParameter
from anfe.centroids.model.age import AgeBins, AgeEstimates, AgeModel, age_model_from_doc
from anfe.centroids.model.calibration import (
    MIN_CALIBRATION_PER_GENDER,
    UNCERTAIN_CONFIDENCE,
    Calibration,
    expected_calibration_error,
    fit_logistic,
    margin_at,
)
from anfe.centroids.model.children import ChildPolicy

GENDERS = ("female", "male")
MODES = ("centroid", "prototypes", "mahalanobis", "mahalanobis-prototypes")
DEFAULT_PROTOTYPES = 8
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
    age: AgeEstimates | None = None  # when the set carries an age model

    def __len__(self) -> int:
        return len(self.gender)


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
    mode: str = "centroid"
    params: dict[str, Any] = field(default_factory=dict)
    prototypes: dict[str, np.ndarray] | None = None  # (k, 128) per gender
    prototype_counts: dict[str, list[int]] | None = None
    whitening: np.ndarray | None = None  # (128, 128): distances are ||W (x - c)||
    age: AgeModel | AgeBins | None = (
        None  # age estimate from the same embedding (centroids/model/age.py)
    )
    children: ChildPolicy | None = None  # answers for faces estimated young (children.py)
    # the set whose age model ``age`` is, when borrowed (anfe.centroids.storage.shipped.with_age); not stored
    age_from: str | None = None

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
        mode: str = "centroid",
        params: dict[str, Any] | None = None,
    ) -> CentroidSet:
        """Fit a set of the given mode; fit calibration and working range by cross-fitting."""
        # float32 embeddings (the cache's) stay float32, not copied: every sum is taken in float64
        female = _as_matrix(female, keep_float32=True)
        male = _as_matrix(male, keep_float32=True)
        if len(female) == 0 or len(male) == 0:
            raise InvalidParameter("a centroid set needs embeddings of both genders")
        cs = fit_set(cid, female, male, mode, params or {}, seed)
        cs.embedding = dict(embedding or {})
        cs.source = dict(source or {})
        cs.created_at = datetime.now(UTC).isoformat(timespec="seconds")
        cs.calibration, cs.max_distance = _cross_fit(female, male, seed, mode, cs.params)
        return cs

    def _references(self, gender: str) -> np.ndarray:
        if self.prototypes is not None:
            return self.prototypes[gender]
        return (self.female if gender == "female" else self.male)[None, :]

    def distances(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distances of each row of ``x`` to the nearest female and nearest male reference.

        For the paper's mode the references are the two means and the distance is Euclidean.
        """
        x = _as_matrix(x)
        out = []
        for gender in GENDERS:
            diff = x[:, None, :] - self._references(gender)[None]
            if self.whitening is not None:
                diff = diff @ self.whitening.T
            out.append(np.linalg.norm(diff, axis=2).min(axis=1))
        return out[0], out[1]

    def classify(self, x: np.ndarray) -> Predictions:
        """Classify every row of ``x`` (shape (n, 128)) by the nearer centroid.

        With an age model the age is estimated too; with a child policy, faces estimated young
        are then answered by it (see ``centroids/model/children.py``).
        """
        x = _as_matrix(x)
        d_f, d_m = self.distances(x)
        margin = np.abs(d_f - d_m)
        confidence = self.calibration.confidence(margin)
        preds = Predictions(
            gender=np.where(d_f < d_m, "female", "male"),
            d_female=d_f,
            d_male=d_m,
            margin=margin,
            confidence=confidence,
            uncertain=self.calibration.uncertain(margin),
            in_range=np.minimum(d_f, d_m) <= self.max_distance,
            age=None if self.age is None else self.age.predict(x),
        )
        if preds.age is not None:
            preds.age.model = self.age_from or self.id
        if self.children is not None and (preds.age is not None or self.children.router):
            self.children.apply(self, x, preds, None if preds.age is None else preds.age.value)
        if not self.calibration.calibrated:  # whatever a child policy said: nothing is known
            preds.uncertain[:] = True
            preds.confidence[:] = 0.5
        return preds

    def to_doc(self) -> dict[str, Any]:
        """The database document (DESIGN.md, ``centroids`` collection), its vectors packed as
        float32 (:mod:`centroids.vectors`)."""
        doc = {
            "_id": self.id,
            "per_gender": self.per_gender,
            "mode": self.mode,
            "params": dict(self.params),
            "vectors": {"female": vectors.pack(self.female), "male": vectors.pack(self.male)},
            "counts": dict(self.counts),
            "embedding": dict(self.embedding),
            "source": dict(self.source),
            "calibration": self.calibration.to_doc(),
            "working_range": {"max_distance": self.max_distance, "quantile": RANGE_QUANTILE},
            "created_at": self.created_at,
        }
        if self.prototypes is not None:
            doc["prototypes"] = {g: vectors.pack(self.prototypes[g]) for g in GENDERS}
            doc["prototype_counts"] = dict(self.prototype_counts or {})
        if self.whitening is not None:
            doc["whitening"] = vectors.pack(self.whitening)
        if self.age is not None:
            doc["age"] = self.age.to_doc()
        if self.children is not None:
            doc["children"] = self.children.to_doc()
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> CentroidSet:
        """The set of a stored document, its vectors packed or (earlier versions, the shipped
        JSON sets) lists of floats."""
        female = vectors.unpack(doc["vectors"]["female"])
        male = vectors.unpack(doc["vectors"]["male"])
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
            mode=str(doc.get("mode", "centroid")),
            params=dict(doc.get("params", {})),
            prototypes=(
                {g: vectors.unpack(doc["prototypes"][g], columns=128) for g in GENDERS}
                if doc.get("prototypes")
                else None
            ),
            prototype_counts=doc.get("prototype_counts"),
            whitening=(
                vectors.unpack(doc["whitening"], columns=128)
                if doc.get("whitening") is not None
                else None
            ),
            age=age_model_from_doc(doc["age"]) if doc.get("age") else None,
            children=_children_from_doc(doc.get("children")),
        )


def _as_matrix(x: np.ndarray, keep_float32: bool = False) -> np.ndarray:
    """``x`` as a float64 matrix (n, 128); with ``keep_float32`` a float32 one stays as it is."""
    x = np.asarray(x)
    if not (keep_float32 and x.dtype == np.float32):
        x = x.astype(np.float64, copy=False)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or (x.size and x.shape[1] != 128):
        raise InvalidParameter(f"embeddings must have shape (n, 128), not {x.shape}")
    return x


def fit_set(
    cid: str, female: np.ndarray, male: np.ndarray, mode: str, params: dict[str, Any], seed: int
) -> CentroidSet:
    """The set of ``mode`` fitted to these embeddings (no calibration yet)."""
    if mode not in MODES:
        raise InvalidParameter(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    cs = CentroidSet(
        id=cid,
        female=female.mean(axis=0, dtype=np.float64),
        male=male.mean(axis=0, dtype=np.float64),
        counts={"female": len(female), "male": len(male)},
        mode=mode,
    )
    params = dict(params)
    if mode.startswith("mahalanobis"):
        params.setdefault("shrinkage", "ledoit-wolf")
        cs.whitening, params["shrinkage_value"] = _whitening(female, male, params["shrinkage"])
    if mode.endswith("prototypes"):
        k = int(params.setdefault("k", DEFAULT_PROTOTYPES))
        if k < 1:
            raise InvalidParameter("prototypes mode needs k >= 1")
        params["seed"] = seed
        cs.prototypes, cs.prototype_counts = {}, {}
        for g, x in (("female", female), ("male", male)):
            cs.prototypes[g], cs.prototype_counts[g] = _kmeans(x, k, seed, cs.whitening)
    cs.params = params
    return cs


def _whitening(female: np.ndarray, male: np.ndarray, shrinkage: Any) -> tuple[np.ndarray, float]:
    """W with W^T W = inverse of the pooled within-gender covariance (shrunk for stability)."""
    from sklearn.covariance import LedoitWolf, shrunk_covariance

    centred = np.vstack(
        [female - female.mean(axis=0, dtype=np.float64), male - male.mean(axis=0, dtype=np.float64)]
    )
    if shrinkage == "ledoit-wolf":
        lw = LedoitWolf(assume_centered=True).fit(centred)
        cov, value = lw.covariance_, float(lw.shrinkage_)
    else:
        value = float(shrinkage)
        if not 0.0 <= value <= 1.0:
            raise InvalidParameter("shrinkage must be 'ledoit-wolf' or a number in [0, 1]")
        cov = shrunk_covariance(centred.T @ centred / len(centred), shrinkage=value)
    evals, evecs = np.linalg.eigh(cov)
    evals = np.maximum(evals, evals.max() * 1e-9)
    return (evecs / np.sqrt(evals)).T, value


def _kmeans(
    x: np.ndarray, k: int, seed: int, whitening: np.ndarray | None
) -> tuple[np.ndarray, list[int]]:
    """k prototypes of one gender (k-means, seeded), in embedding space, and their sizes."""
    from sklearn.cluster import KMeans

    k = min(k, len(x))
    space = np.asarray(x, dtype=np.float64) if whitening is None else x @ whitening.T
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(space)
    labels = km.labels_
    protos = np.stack([x[labels == j].mean(axis=0, dtype=np.float64) for j in range(k)])
    return protos, [int((labels == j).sum()) for j in range(k)]


def _cross_fit(
    female: np.ndarray,
    male: np.ndarray,
    seed: int,
    mode: str = "centroid",
    params: dict[str, Any] | None = None,
    folds: int = 5,
):
    """Score each image with a set fitted without it; fit the margin calibration."""
    rng = np.random.default_rng(seed)
    margins, right, nearer = [], [], []
    fold_f = rng.permutation(len(female)) % folds
    fold_m = rng.permutation(len(male)) % folds
    for k in range(folds):
        test_f, test_m = female[fold_f == k], male[fold_m == k]
        train_f, train_m = female[fold_f != k], male[fold_m != k]
        if not len(train_f) or not len(train_m) or not (len(test_f) + len(test_m)):
            continue
        fold_set = fit_set("fold", train_f, train_m, mode, params or {}, seed)
        for x, is_female in ((test_f, True), (test_m, False)):
            if not len(x):
                continue
            d_f, d_m = fold_set.distances(x)
            margins.append(np.abs(d_f - d_m))
            right.append((d_f < d_m) == is_female)
            nearer.append(np.minimum(d_f, d_m))
    if not margins:
        return Calibration(), float("inf")
    margin = np.concatenate(margins)
    ok = np.concatenate(right).astype(np.float64)
    a, b = fit_logistic(margin, ok)
    cal = Calibration(a=a, b=b, held_out=len(margin), held_out_accuracy=float(ok.mean()))
    cal.ece = expected_calibration_error(cal.confidence(margin), ok)
    cal.uncertain_below = margin_at(cal, UNCERTAIN_CONFIDENCE)
    if min(len(female), len(male)) < MIN_CALIBRATION_PER_GENDER:  # too few to calibrate
        cal = Calibration(held_out=len(margin), held_out_accuracy=cal.held_out_accuracy,
                          calibrated=False)  # fmt: skip
        cal.ece = expected_calibration_error(cal.confidence(margin), ok)
    return cal, float(np.quantile(np.concatenate(nearer), RANGE_QUANTILE))


def _children_from_doc(doc: dict[str, Any] | None) -> ChildPolicy | None:
    """The child policy of a set's ``children`` field, with its reference set decoded."""
    if not doc:
        return None
    ref = doc.get("reference")
    return ChildPolicy.from_doc(doc, CentroidSet.from_doc(ref) if ref else None)
