"""From a distance margin to a probability: the logistic calibration every answer's confidence uses.

p(right | margin) = sigmoid(a * margin + b), floored at 0.5, fitted by Newton's method on
held-out faces; its expected calibration error is reported with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

UNCERTAIN_CONFIDENCE = 0.75  # faces whose calibrated confidence is below this are "uncertain"
# Fewer held-out faces per gender than this cannot calibrate anything (6 gave confidence 1.000 at
# margins of 0.007): such a set is stored uncalibrated, and every answer of it is uncertain.
MIN_CALIBRATION_PER_GENDER = 30


@dataclass
class Calibration:
    """p(right | margin) = sigmoid(a * margin + b), floored at 0.5.

    ``calibrated`` is false for a set with too few held-out faces to fit one
    (:data:`MIN_CALIBRATION_PER_GENDER`): its confidence is then 0.5 (nothing known) and every
    answer uncertain.
    """

    a: float = 0.0
    b: float = 0.0
    uncertain_below: float = 0.0
    held_out: int = 0
    held_out_accuracy: float = float("nan")
    ece: float = float("nan")  # expected calibration error on the held-out folds
    calibrated: bool = True

    def confidence(self, margin: np.ndarray) -> np.ndarray:
        if not self.calibrated:
            return np.full(np.shape(margin), 0.5)
        return np.clip(sigmoid(self.a * margin + self.b), 0.5, 1.0)

    def uncertain(self, margin: np.ndarray) -> np.ndarray:
        if not self.calibrated:
            return np.ones(np.shape(margin), dtype=bool)
        return np.asarray(margin) < self.uncertain_below

    def to_doc(self) -> dict[str, Any]:
        return {
            "method": "logistic_margin" if self.calibrated else "none",
            "calibrated": self.calibrated,
            "a": self.a,
            "b": self.b,
            "uncertain_below": self.uncertain_below,
            "uncertain_confidence": UNCERTAIN_CONFIDENCE,
            "held_out": self.held_out,
            "held_out_accuracy": self.held_out_accuracy,
            "ece": self.ece,
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
            ece=float(doc.get("ece", float("nan"))),
            calibrated=_calibrated(doc),
        )


def _calibrated(doc: dict[str, Any]) -> bool:
    """A stored calibration's ``calibrated``; a set stored before it was written is judged by its
    held-out faces (a tiny set built earlier is uncalibrated too)."""
    if "calibrated" in doc:
        return bool(doc["calibrated"])
    enough = 2 * MIN_CALIBRATION_PER_GENDER
    return doc.get("method") != "none" and int(doc.get("held_out", enough)) >= enough


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def expected_calibration_error(confidence: np.ndarray, right: np.ndarray, bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    confidence = np.asarray(confidence, dtype=np.float64)
    right = np.asarray(right, dtype=np.float64)
    if not len(confidence):
        return float("nan")
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(right[mask].mean() - confidence[mask].mean())
    return float(total / len(confidence))


def fit_logistic(x: np.ndarray, y: np.ndarray, iters: int = 50) -> tuple[float, float]:
    """Maximum-likelihood fit of y ~ sigmoid(a*x + b) by Newton's method (small L2 ridge)."""
    X = np.column_stack([x, np.ones_like(x)])
    w = np.zeros(2)
    ridge = 1e-3 * np.eye(2)  # keeps the fit finite when the held-out faces are all right
    for _ in range(iters):
        p = sigmoid(X @ w)
        grad = X.T @ (p - y)
        hess = X.T @ (X * (p * (1 - p))[:, None]) + ridge
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return float(w[0]), float(w[1])


def margin_at(cal: Calibration, confidence: float) -> float:
    """The margin at which the calibrated confidence reaches ``confidence`` (0 if always above)."""
    if cal.a <= 0:
        return 0.0
    logit = np.log(confidence / (1 - confidence))
    return float(max(0.0, (logit - cal.b) / cal.a))
