"""Scores of a gender classifier on a labelled test set: confusion counts, accuracies, groups.

Female and male are the two classes. The confusion counts follow the table of "ArcFace knows the
gender, too!": TF true female (a woman called female), FF false female (a man called female),
TM true male, FM false male (a woman called male). Accuracy on women is TF / (TF + FM), on men
TM / (TM + FF) (the two curves of the paper's Figure 5); balanced accuracy is their mean; F1 is
given with each class as the positive one, and their mean (macro F1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

AGE_BINS: tuple[tuple[int, int | None], ...] = ((0, 17), (18, 29), (30, 44), (45, 59), (60, None))
MAX_GROUP_VALUES = 20  # label columns with more distinct values are not broken down
MIN_GROUP_GENDER = 10  # a group enters the gap only with this many faces of each gender


@dataclass
class Confusion:
    """Counts of a two-class gender confusion table."""

    tf: int = 0
    ff: int = 0
    tm: int = 0
    fm: int = 0

    @classmethod
    def of(cls, truth: Sequence[str], predicted: Sequence[str]) -> Confusion:
        t = np.asarray(truth)
        p = np.asarray(predicted)
        if t.shape != p.shape:
            raise ValueError("truth and predictions differ in length")
        return cls(
            tf=int(np.sum((t == "female") & (p == "female"))),
            ff=int(np.sum((t == "male") & (p == "female"))),
            tm=int(np.sum((t == "male") & (p == "male"))),
            fm=int(np.sum((t == "female") & (p == "male"))),
        )

    @property
    def n(self) -> int:
        return self.tf + self.ff + self.tm + self.fm


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def _f1(tp: int, fp: int, fn: int) -> float:
    return _ratio(2 * tp, 2 * tp + fp + fn)


def scores(c: Confusion) -> dict[str, float | int]:
    """Every figure of one confusion table (NaN where a class is absent)."""
    acc_f = _ratio(c.tf, c.tf + c.fm)
    acc_m = _ratio(c.tm, c.tm + c.ff)
    present = [a for a in (acc_f, acc_m) if not np.isnan(a)]
    f1_f = _f1(c.tf, c.ff, c.fm)
    f1_m = _f1(c.tm, c.fm, c.ff)
    return {
        **asdict(c),
        "n": c.n,
        "n_female": c.tf + c.fm,
        "n_male": c.tm + c.ff,
        "accuracy": _ratio(c.tf + c.tm, c.n),
        "accuracy_female": acc_f,
        "accuracy_male": acc_m,
        "balanced_accuracy": float(np.mean(present)) if present else float("nan"),
        "f1_female": f1_f,
        "f1_male": f1_m,
        "f1_macro": float(np.nanmean([f1_f, f1_m])) if c.n else float("nan"),
    }


def distance_stats(right: np.ndarray, distance: np.ndarray) -> dict[str, float | int]:
    """Mean distance to the predicted centroid of right and of wrong answers (Figure 7)."""
    right = np.asarray(right, dtype=bool)
    distance = np.asarray(distance, dtype=np.float64)

    def mean(x: np.ndarray) -> float:
        return float(x.mean()) if len(x) else float("nan")

    return {
        "right": int(right.sum()),
        "wrong": int((~right).sum()),
        "mean_distance_right": mean(distance[right]),
        "mean_distance_wrong": mean(distance[~right]),
    }


def age_bin(age: str) -> str | None:
    """``"34"`` → ``"30-44"``; None for a missing or unreadable age."""
    age = (age or "").strip()
    if not age.isdigit():
        return None
    value = int(age)
    for lo, hi in AGE_BINS:
        if value >= lo and (hi is None or value <= hi):
            return f"{lo}-{hi}" if hi is not None else f"{lo}+"
    return None


def group_columns(extras: Sequence[dict[str, str]]) -> dict[str, list[str | None]]:
    """The label columns worth a breakdown, each as one group value per face.

    ``age`` is put in bins; other columns are kept when they have 2 to ``MAX_GROUP_VALUES``
    distinct values (so ``race`` is kept, free text and identifiers are not).
    """
    names = sorted({k for e in extras for k in e})
    out: dict[str, list[str | None]] = {}
    for name in names:
        if name == "age":
            out["age"] = [age_bin(e.get("age", "")) for e in extras]
            continue
        values = [(e.get(name) or "").strip() or None for e in extras]
        distinct = {v for v in values if v is not None}
        if 2 <= len(distinct) <= MAX_GROUP_VALUES:
            out[name] = values
    return out


def breakdown(
    truth: Sequence[str], predicted: Sequence[str], groups: Sequence[str | None]
) -> dict[str, object]:
    """Scores per group value and the largest gap in balanced accuracy between groups.

    The gap is taken over groups with at least ``MIN_GROUP_GENDER`` faces of each gender, so a
    handful of faces cannot make a gap on their own.
    """
    t = np.asarray(truth)
    p = np.asarray(predicted)
    g = np.asarray([v if v is not None else "" for v in groups])
    per: dict[str, dict] = {}
    for value in sorted(set(g.tolist()) - {""}, key=_group_sort_key):
        mask = g == value
        per[value] = scores(Confusion.of(t[mask], p[mask]))
    eligible = {
        k: v["balanced_accuracy"]
        for k, v in per.items()
        if v["n_female"] >= MIN_GROUP_GENDER and v["n_male"] >= MIN_GROUP_GENDER
    }
    gap: dict[str, object] = {"value": float("nan"), "best": None, "worst": None}
    if len(eligible) >= 2:
        best = max(eligible, key=eligible.get)
        worst = min(eligible, key=eligible.get)
        gap = {"value": eligible[best] - eligible[worst], "best": best, "worst": worst}
    return {"groups": per, "gap": gap, "min_per_gender": MIN_GROUP_GENDER}


def _group_sort_key(value: str) -> tuple:
    head = value.split("-")[0].rstrip("+")
    return (0, int(head), value) if head.isdigit() else (1, 0, value)


# -- intervals, calibration and abstention ---------------------------------------------------------

BOOTSTRAP_SAMPLES = 1000
RISK_FRACTIONS = (0.0, 0.01, 0.05, 0.10)


def _balanced(stats: np.ndarray) -> np.ndarray:
    """Balanced accuracy from rows of (women right, women, men right, men) counts."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return 0.5 * (stats[..., 0] / stats[..., 1] + stats[..., 2] / stats[..., 3])


def bootstrap_balanced(
    truth: Sequence[str],
    predicted: Sequence[str],
    clusters: Sequence[str] | None = None,
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> dict[str, float | int | str]:
    """Balanced accuracy with a 95% percentile bootstrap interval.

    ``clusters`` (one key per face, e.g. the person) are resampled whole, so several photos of one
    person count as one draw; without them each image is a draw. Resamples missing a gender are
    dropped from the interval.
    """
    t = np.asarray(truth)
    right = t == np.asarray(predicted)
    keys = np.asarray(clusters) if clusters is not None else np.arange(len(t)).astype(str)
    _, idx = np.unique(keys, return_inverse=True)
    per = np.zeros((idx.max() + 1 if len(idx) else 0, 4))
    female = t == "female"
    np.add.at(per[:, 0], idx, right & female)
    np.add.at(per[:, 1], idx, female)
    np.add.at(per[:, 2], idx, right & ~female)
    np.add.at(per[:, 3], idx, ~female)
    point = float(_balanced(per.sum(axis=0)))
    out = {
        "value": point,
        "low": float("nan"),
        "high": float("nan"),
        "unit": "person" if clusters is not None else "image",
        "units": len(per),
    }
    if len(per) < 2:
        return out
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(per), np.full(len(per), 1 / len(per)), size=samples)
    values = _balanced(weights @ per)
    values = values[np.isfinite(values)]
    if len(values):
        out["low"], out["high"] = (float(q) for q in np.quantile(values, [0.025, 0.975]))
    return out


def risk_coverage(
    truth: Sequence[str],
    predicted: Sequence[str],
    certainty: Sequence[float],
    fractions: Sequence[float] = RISK_FRACTIONS,
) -> list[dict[str, float | int]]:
    """Accuracy and balanced accuracy when the least certain ``fraction`` of faces is set aside."""
    t = np.asarray(truth)
    p = np.asarray(predicted)
    order = np.argsort(np.asarray(certainty, dtype=np.float64), kind="stable")
    rows = []
    for f in fractions:
        drop = int(round(f * len(t)))
        keep = order[drop:]
        s = scores(Confusion.of(t[keep], p[keep]))
        rows.append(
            {
                "set_aside": float(f),
                "faces_set_aside": drop,
                "kept": int(len(keep)),
                "accuracy": s["accuracy"],
                "balanced_accuracy": s["balanced_accuracy"],
            }
        )
    return rows


def reliability(
    confidence: Sequence[float], right: Sequence[bool], bins: int = 10
) -> dict[str, list[float | int]]:
    """Faces, mean confidence and accuracy per equal-width confidence bin over [0.5, 1]."""
    c = np.asarray(confidence, dtype=np.float64)
    r = np.asarray(right, dtype=np.float64)
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.digitize(c, edges[1:-1]), 0, bins - 1)
    out: dict[str, list] = {"edges": edges.tolist(), "n": [], "confidence": [], "accuracy": []}
    for b in range(bins):
        mask = which == b
        out["n"].append(int(mask.sum()))
        out["confidence"].append(float(c[mask].mean()) if mask.any() else float("nan"))
        out["accuracy"].append(float(r[mask].mean()) if mask.any() else float("nan"))
    return out
