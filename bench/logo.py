"""``anfe bench --ages``, leave one group out: do the age and the child policy hold on a group
they never saw?

For each group of the aged faces (UTKFace's ``race``), the age model, the router and the child
policy are fitted on the other groups (:func:`anfe.centroids.model.fit_children.fit_agreement`,
which chooses every threshold on faces of those groups, each answered without its own group) and
the held-out group is scored: the age's mean absolute error, mean signed error (estimate minus
truth) and interval coverage by age band, and, per age band and gender, the share of faces
answered (not ``uncertain``) and the share of those answers that are wrong, with percentile
bootstrap intervals (faces resampled within the band and gender). "before" is the set's own
answer (its adults' calibration on every face). Alternative age estimators are compared on the
same protocol by :mod:`anfe.bench.age_estimators`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from anfe.centroids.model.age import AgeEstimates, covers
from anfe.centroids.model.centroid_set import GENDERS, CentroidSet, Predictions
from anfe.centroids.model.children import DEFAULT_METHOD
from anfe.centroids.model.fit_children import fit_agreement

LOGO_BANDS = ((0, 3), (4, 12), (13, 17), (18, 39), (40, None))
LOGO_BAND_NAMES = [f"{lo}+" if hi is None else f"{lo}-{hi}" for lo, hi in LOGO_BANDS]
BOOTSTRAP = 1000
MIN_CHILDREN = 60  # the targets hold for a group and gender with at least this many aged 4-12
# stricter routings scored on the held-out group: uncertain from this p(under 13) (the answer's
# age.under_13), on top of the policy; what covering the children with uncertain would cost adults
STRICTER_FROM = (0.5, 0.3, 0.2, 0.1, 0.05)


def band_index(ages: np.ndarray) -> np.ndarray:
    """Index into :data:`LOGO_BANDS` of every age."""
    return np.digitize(np.asarray(ages, dtype=np.float64), [b[0] for b in LOGO_BANDS[1:]])


def age_rows(est: AgeEstimates, ages: np.ndarray) -> list[dict[str, Any]]:
    """Per band, then all faces: n, MAE, mean signed error, interval coverage."""
    err = est.value - ages
    inside = covers(est.low, est.high, ages)
    band = band_index(ages)
    rows = []
    for i, name in enumerate([*LOGO_BAND_NAMES, "all"]):
        m = band == i if name != "all" else np.ones(len(ages), dtype=bool)
        rows.append({
            "band": name, "n": int(m.sum()),
            "mae": _mean(np.abs(err[m])), "bias": _mean(err[m]), "coverage": _mean(inside[m]),
        })  # fmt: skip
    return rows


def _interval(values: np.ndarray, rng: np.random.Generator, boot: int) -> list[float]:
    """95 % percentile bootstrap interval of the mean of 0/1 ``values``."""
    if len(values) == 0:
        return [float("nan"), float("nan")]
    means = values[rng.integers(0, len(values), (boot, len(values)))].mean(axis=1)
    return [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]


def answer_rows(
    preds: Predictions, ages: np.ndarray, genders: np.ndarray, rng: np.random.Generator,
    boot: int = BOOTSTRAP,
) -> list[dict[str, Any]]:  # fmt: skip
    """Per band and gender: faces, answered share and wrong share among answered, each with its
    bootstrap interval."""
    band = band_index(ages)
    rows = []
    for i, name in enumerate(LOGO_BAND_NAMES):
        row: dict[str, Any] = {"band": name}
        for g in GENDERS:
            mine = (band == i) & (genders == g)
            given = ~preds.uncertain[mine]
            wrong = preds.gender[mine][given] != g
            row[g] = {
                "n": int(mine.sum()),
                "answered": _mean(given), "answered_ci": _interval(given.astype(float), rng, boot),
                "answered_count": int(given.sum()), "wrong_count": int(wrong.sum()),
                "wrong": _mean(wrong), "wrong_ci": _interval(wrong.astype(float), rng, boot),
            }  # fmt: skip
        rows.append(row)
    return rows


def adults(preds: Predictions, ages: np.ndarray, genders: np.ndarray) -> dict[str, float]:
    """Balanced accuracy of every answer and the uncertain share, over faces 18 and over."""
    a = ages >= 18
    right = preds.gender == genders
    return {
        "n": int(a.sum()),
        "balanced_accuracy": float(np.mean([np.mean(right[a & (genders == g)]) for g in GENDERS])),
        "uncertain": float(np.mean(preds.uncertain[a])),
    }


def stricter_rows(
    preds: Predictions, before: Predictions, under_13: np.ndarray, ages: np.ndarray,
    genders: np.ndarray,
) -> list[dict[str, Any]]:  # fmt: skip
    """For each of :data:`STRICTER_FROM` (and the policy as it is, ``from`` None): faces with
    ``under_13`` at least that are also uncertain; per gender, children 4-12 and under 4 answered
    and wrong, and the adults' uncertain share against the set's own answers."""
    kids, young, grown = (ages >= 4) & (ages <= 12), ages < 4, ages >= 18
    rows = []
    for t in (None, *STRICTER_FROM):
        unc = preds.uncertain | (False if t is None else under_13 >= t)
        row: dict[str, Any] = {"from": t}
        for name, band in (("children_4_12", kids), ("under_4", young)):
            for g in GENDERS:
                given = band & (genders == g) & ~unc
                row[f"{name}_{g}"] = {
                    "n": int(np.sum(band & (genders == g))), "answered": int(given.sum()),
                    "wrong": int(np.sum(given & (preds.gender != g))),
                }  # fmt: skip
        row["adults_uncertain_change"] = float(
            np.mean(unc[grown]) - np.mean(before.uncertain[grown])
        )
        rows.append(row)
    return rows


def leave_one_group_out(
    cs: CentroidSet,
    x: np.ndarray,
    ages: np.ndarray,
    genders: np.ndarray,
    groups: np.ndarray,
    *,
    method: str = DEFAULT_METHOD,
    seed: int = 0,
    boot: int = BOOTSTRAP,
    log: Any = print,
) -> dict[str, Any]:
    """Fit on all groups but one, score that one, for each group; see the module doc."""
    adult_only = replace(cs, age=None, children=None)
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    groups = np.asarray(groups).astype(str)
    for g in sorted(set(groups)):
        log(f"ages, leave one group out: fitting without {g}")
        train, test = groups != g, groups == g
        fitted, chosen = fit_agreement(
            adult_only, x[train], ages[train], genders[train], groups[train], method=method,
            seed=seed,
        )  # fmt: skip
        preds = fitted.classify(x[test])
        before = adult_only.classify(x[test])
        kids = (ages[test] >= 4) & (ages[test] <= 12)
        out.append({
            "group": g,
            "faces": int(test.sum()),
            "children_4_12": {k: int(np.sum(kids & (genders[test] == k))) for k in GENDERS},
            "chosen": chosen,
            "interval_tails": list(fitted.age.tails),
            "age": age_rows(preds.age, ages[test]),
            "answers": answer_rows(preds, ages[test], genders[test], rng, boot),
            "before": answer_rows(before, ages[test], genders[test], rng, boot),
            "adults": adults(preds, ages[test], genders[test]),
            "adults_before": adults(before, ages[test], genders[test]),
            "stricter": stricter_rows(
                preds, before, fitted.children.under_13(x[test]), ages[test], genders[test]
            ),
        })  # fmt: skip
    return {"groups": out, "faces": int(len(x)), "method": method, "bootstrap": boot}


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def main(argv: list[str] | None = None) -> int:
    """``python -m anfe.bench.logo``: the leave-one-group-out tables alone, as ``anfe bench
    --ages`` writes them, for a stored set and an aged, grouped folder."""
    import argparse
    import json
    import sys
    from pathlib import Path

    from anfe.bench.report_ages import logo_markdown
    from anfe.centroids.builder import datasets
    from anfe.centroids.builder.ages import GROUP_COLUMN, grouped_aged_faces, set_settings
    from anfe.centroids.storage import shipped
    from anfe.centroids.storage.store import Store

    p = argparse.ArgumentParser(prog="python -m anfe.bench.logo", description=main.__doc__)
    p.add_argument("--data", type=Path, required=True, help="folder with age and race columns")
    p.add_argument("--db", required=True, help="database (embeddings cache; shipped sets seeded)")
    p.add_argument("--centroids", default=shipped.DEFAULT_CENTROIDS, help="set whose adults' "
                   "answers the policy keeps (default: %(default)s)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    with Store(args.db) as store:
        shipped.seed(store)
        cs = CentroidSet.from_doc(store.get_centroids(args.centroids))
        x, ages, genders, groups = grouped_aged_faces(
            datasets.read_dataset(args.data), set_settings(cs), store, jobs=args.jobs,
            progress=False,
        )  # fmt: skip
    if groups is None:
        print(f"error: labels.csv needs a '{GROUP_COLUMN}' value for every aged image",
              file=sys.stderr)  # fmt: skip
        return 2
    result = leave_one_group_out(cs, x, ages, genders, groups, seed=args.seed,
                                 log=lambda s: print(s, file=sys.stderr))  # fmt: skip
    result["column"] = GROUP_COLUMN
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float))
    print("\n".join(logo_markdown({"ages": {"leave_one_group_out": result}})))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
