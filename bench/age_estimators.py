"""Age estimators compared leave one group out (``python -m anfe.bench.age_estimators``).

Each estimator is fitted on the aged faces of all groups but one (UTKFace's ``race``) and scored
on that group: mean absolute error and mean signed error (estimate - truth) for ages 4-12 and 18+.
The estimators read the same 128-d embedding:

- ``ridge``: today's ridge regression of sqrt(age) (:class:`anfe.centroids.model.age.AgeModel`);
- ``ridge-balanced``: the same, faces weighted so that every (group, age band) cell weighs the same;
- ``kernel-ridge``: ridge on 1,000 random-Fourier-like Nystroem features of an RBF kernel;
- ``knn``: distance-weighted mean of sqrt(age) of the 30 nearest training faces;
- ``mlp``: one hidden layer of 128 units (scikit-learn, early stopping);
- ``bins`` and ``bins-balanced``: the age-bin distribution's median
  (:class:`anfe.centroids.model.age.AgeBins`), unweighted and weighted as above (the shipped one).

scikit-learn provides every estimator; nothing here is shipped except what
:mod:`anfe.centroids.model.fit_age` fits.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from anfe.centroids.builder import datasets
from anfe.centroids.builder.ages import grouped_aged_faces
from anfe.centroids.model.age import AgeModel
from anfe.centroids.model.fit_age import cell_weights, fit_bins
from anfe.centroids.storage.store import Store
from anfe.centroids.vision.settings import EmbeddingSettings

Estimator = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _ridge(xt: np.ndarray, at: np.ndarray, gt: np.ndarray, xs: np.ndarray) -> np.ndarray:
    return AgeModel.fit(xt, at).predict(xs).value


def _sk_sqrt(model: object, weighted: bool = False) -> Estimator:
    def run(xt: np.ndarray, at: np.ndarray, gt: np.ndarray, xs: np.ndarray) -> np.ndarray:
        kw = {"sample_weight": cell_weights(at, gt)} if weighted else {}
        if weighted and hasattr(model, "steps"):
            kw = {f"{model.steps[-1][0]}__sample_weight": kw["sample_weight"]}
        model.fit(xt, np.sqrt(at), **kw)
        return np.square(np.maximum(model.predict(xs), 0.0))

    return run


def _bins(balance: bool) -> Estimator:
    def run(xt: np.ndarray, at: np.ndarray, gt: np.ndarray, xs: np.ndarray) -> np.ndarray:
        model = fit_bins(xt, at, gt, balance=balance)
        return model.quantile(model.distribution(xs), 0.5)

    return run


def estimators() -> dict[str, Estimator]:
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import Ridge
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline

    return {
        "ridge": _ridge,
        "ridge-balanced": _sk_sqrt(Ridge(alpha=10.0), weighted=True),
        "kernel-ridge": _sk_sqrt(make_pipeline(
            Nystroem(gamma=2.0, n_components=1000, random_state=0), Ridge(alpha=1.0))),
        "knn": _sk_sqrt(KNeighborsRegressor(n_neighbors=30, weights="distance")),
        "mlp": _sk_sqrt(MLPRegressor(hidden_layer_sizes=(128,), alpha=1e-3, early_stopping=True,
                                     max_iter=300, random_state=0)),
        "bins": _bins(False),
        "bins-balanced": _bins(True),
    }  # fmt: skip


def compare(
    x: np.ndarray, ages: np.ndarray, groups: np.ndarray, names: list[str], log=print
) -> list[dict[str, object]]:
    """One row per estimator and held-out group: n, MAE and bias for 4-12 and for 18+."""
    table = estimators()
    rows = []
    for name in names:
        t0 = time.perf_counter()
        estimate = np.empty(len(x))
        for g in sorted(set(groups)):
            held = groups == g
            estimate[held] = table[name](x[~held], ages[~held], groups[~held], x[held])
        log(f"{name}: {time.perf_counter() - t0:.0f} s")
        for g in sorted(set(groups)):
            row: dict[str, object] = {"estimator": name, "group": g}
            for band, m in (("4-12", (ages >= 4) & (ages <= 12)), ("18+", ages >= 18)):
                m = m & (groups == g)
                err = estimate[m] - ages[m]
                row[band] = {"n": int(m.sum()), "mae": float(np.mean(np.abs(err))),
                             "bias": float(np.mean(err))}  # fmt: skip
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, object]]) -> list[str]:
    groups = sorted({r["group"] for r in rows})
    lines = [
        "| estimator | " + " | ".join(f"{g}: 4-12 | {g}: 18+" for g in groups) + " |",
        "|---|" + "---|" * (2 * len(groups)),
    ]
    for name in dict.fromkeys(r["estimator"] for r in rows):
        cells = []
        for g in groups:
            [r] = [r for r in rows if r["estimator"] == name and r["group"] == g]
            cells += [f"{r[b]['mae']:.1f} / {r[b]['bias']:+.1f}" for b in ("4-12", "18+")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m anfe.bench.age_estimators", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--data", type=Path, required=True, help="labelled folder with age and race")
    p.add_argument("--db", required=True, help="database holding (or to hold) the embeddings")
    p.add_argument("--cropped", action="store_true", help="the images are face crops")
    p.add_argument("--estimators", default=",".join(estimators()), help="comma-separated names")
    p.add_argument("--jobs", type=int, default=None)
    args = p.parse_args(argv)
    names = [n for n in args.estimators.split(",") if n]
    unknown = set(names) - set(estimators())
    if unknown:
        print(f"error: unknown estimators {sorted(unknown)}", file=sys.stderr)
        return 2
    with Store(args.db) as store:
        x, ages, _, groups = grouped_aged_faces(
            datasets.read_dataset(args.data), EmbeddingSettings(cropped=args.cropped), store,
            jobs=args.jobs, progress=False,
        )  # fmt: skip
    if groups is None:
        print("error: the folder's labels.csv needs a 'race' value for every aged image",
              file=sys.stderr)  # fmt: skip
        return 2
    rows = compare(x, ages, groups, names, log=lambda s: print(s, file=sys.stderr))
    print(f"Age estimators, leave one group out ({len(x)} faces): MAE / mean signed error, years")
    print()
    print("\n".join(markdown(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
