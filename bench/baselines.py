"""The classifiers the benchmark compares on the same embeddings: nearest centroid, then baselines.

Each entry of :func:`classifiers` is a :class:`Method`: a name and a factory for an object with
``fit(X, y)`` and ``predict(X)`` over 128-d embeddings and the labels ``"female"``/``"male"``.
Nearest centroid (the paper's rule) comes first; the baselines of the related work ("ArcFace
knows the gender, too!", Table 1) follow and need scikit-learn (the ``bench`` extra): logistic
regression, linear SVM, RBF SVM and 1-nearest-neighbour with cosine distance. To compare another
classifier, add a :class:`Method` to the list. The centroid modes are not listed here:
they are stored sets with a calibrated confidence, scored beside these rows by
:mod:`anfe.bench.modes` (``anfe bench --modes``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from anfe.centroids.errors import InvalidParameter
from anfe.centroids.model.centroid_set import GENDERS


class NearestCentroid:
    """The paper's rule: average each gender's embeddings; the nearer mean (Euclidean) wins."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> NearestCentroid:
        y = np.asarray(y)
        self.centres = np.stack([np.asarray(X)[y == g].mean(axis=0) for g in GENDERS])
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        d = np.linalg.norm(np.asarray(X)[:, None, :] - self.centres[None], axis=2)
        return np.where(d[:, 0] < d[:, 1], "female", "male")


@dataclass(frozen=True)
class Method:
    """A classifier of the comparison: ``key`` for files, ``label`` for tables."""

    key: str
    label: str
    make: Callable[[], Any]


def _sklearn_methods() -> list[Method]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC, LinearSVC

    return [
        Method("logreg", "Logistic regression", lambda: LogisticRegression(max_iter=2000)),
        Method("linear_svm", "Linear SVM", lambda: LinearSVC(C=1.0)),
        Method("rbf_svm", "RBF SVM", lambda: SVC(kernel="rbf", C=1.0, gamma="scale")),
        Method(
            "knn_cosine",
            "kNN, cosine, K=1",
            lambda: KNeighborsClassifier(n_neighbors=1, metric="cosine", algorithm="brute"),
        ),
    ]


def sklearn_available() -> bool:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


def classifiers(baselines: bool = True) -> list[Method]:
    """Nearest centroid first, then (when asked and scikit-learn is installed) the baselines.

    :raises InvalidParameter: baselines asked for but scikit-learn is missing
    """
    methods = [Method("nearest_centroid", "Nearest centroid (ANFE)", NearestCentroid)]
    if baselines:
        if not sklearn_available():
            raise InvalidParameter(
                "the baselines need scikit-learn: pip install 'anfe[bench]' (or use --baselines none)"
            )
        methods += _sklearn_methods()
    return methods


@dataclass
class Fitted:
    """A trained classifier and how long training took."""

    method: Method
    model: Any
    fit_seconds: float


def fit(method: Method, X: np.ndarray, y: np.ndarray) -> Fitted:
    """Train ``method`` on embeddings ``X`` with labels ``y``, timing it."""
    t0 = time.perf_counter()
    model = method.make().fit(np.asarray(X, dtype=np.float64), np.asarray(y))
    return Fitted(method, model, time.perf_counter() - t0)


def predict(fitted: Fitted, X: np.ndarray) -> tuple[np.ndarray, float]:
    """Labels for every row of ``X`` and the seconds it took."""
    t0 = time.perf_counter()
    if len(X) == 0:
        return np.empty(0, dtype="<U6"), 0.0
    labels = np.asarray(fitted.model.predict(np.asarray(X, dtype=np.float64))).astype(str)
    return labels, time.perf_counter() - t0
