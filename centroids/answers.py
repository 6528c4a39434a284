"""The wire format of an answer: every face as ``POST /predict``, ``anfe predict --json`` and
``anfe.predict`` give it, built here alone.

A face is ``{"box", "gender", "distances", "margin", "confidence", "uncertain", "in_range",
"age", "detection"}`` (see the README's API section); numpy values become plain floats, booleans
and strings, so the dict goes to JSON as it is.
"""

from __future__ import annotations

from typing import Any

from anfe.centroids.model.age import AgeEstimates
from anfe.centroids.model.centroid_set import Predictions
from anfe.centroids.vision.detectors import Box


def classification(preds: Predictions, i: int) -> dict[str, Any]:
    """Face ``i`` of ``preds``: the gender and everything that explains it, and its age."""
    return {
        "gender": str(preds.gender[i]),
        "distances": {"female": float(preds.d_female[i]), "male": float(preds.d_male[i])},
        "margin": float(preds.margin[i]),
        "confidence": float(preds.confidence[i]),
        "uncertain": bool(preds.uncertain[i]),
        "in_range": bool(preds.in_range[i]),
        "age": None if preds.age is None else age(preds.age, i),
    }


def age(ages: AgeEstimates, i: int) -> dict[str, float | str]:
    """The age of face ``i``: the estimate, its interval, the set whose age model answered, and
    the probability that the face is under 13 by which its child policy routed it (None: the set
    has no child router)."""
    return {
        "value": float(ages.value[i]),
        "low": float(ages.low[i]),
        "high": float(ages.high[i]),
        "model": ages.model,
        "under_13": None if ages.under_13 is None else float(ages.under_13[i]),
    }


def face(box: Box, preds: Predictions, i: int, detection: str) -> dict[str, Any]:
    """Face ``i`` of an image: its box ``(top, right, bottom, left)``, its classification, and
    the detection pass that found it (``first_pass`` or ``second_pass``)."""
    top, right, bottom, left = box
    return {
        "box": {"top": top, "right": right, "bottom": bottom, "left": left},
        **classification(preds, i),
        "detection": detection,
    }
