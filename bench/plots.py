"""The figures of a benchmark run (matplotlib): accuracy against size, distances, reliability."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from anfe.bench.cells import num
from anfe.centroids.errors import InvalidParameter


def require_matplotlib() -> None:
    """Raise a clear error, before any long work, when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InvalidParameter(
            "the benchmark plots need matplotlib: pip install 'anfe[bench]'"
        ) from None


def plot_reliability(results: dict[str, Any], path: Path) -> bool:
    """Accuracy against confidence per mode, one panel per test set; False without modes."""
    panels = [(t, size, m) for t in results["tests"] for size, m in t.get("modes", {}).items()]
    if not panels:
        return False
    with _panels(len(panels), 4.5, path) as axes:
        _plot_reliability(axes, panels)
    return True


def _plot_reliability(axes: list, panels: list) -> None:
    for ax, (t, size, modes) in zip(axes, panels, strict=True):
        ax.plot([0.5, 1], [0.5, 1], color="grey", lw=1, ls=":", label="perfect calibration")
        for m in modes:
            rel = m["reliability"]
            xs = [_nan(c) for c in rel["confidence"]]
            ys = [_nan(a) for a in rel["accuracy"]]
            keep = [i for i, n in enumerate(rel["n"]) if n >= 5]
            ax.plot(
                [xs[i] for i in keep], [ys[i] for i in keep], "o-", ms=4,
                label=f"{m['mode']} (ECE {num(m['calibration']['test_ece'], 3)})",
            )  # fmt: skip
        ax.set_xlabel("confidence (calibrated on held-out training faces)")
        ax.set_ylabel("accuracy on the test faces")
        ax.set_title(f"{t['name']}, g_{size}")
        ax.set_xlim(0.5, 1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")


def plot_accuracy(results: dict[str, Any], path: Path) -> None:
    """Accuracy on women and on men against centroid size, one panel per test set (Figure 5)."""
    with _panels(len(results["tests"]), 4, path) as axes:
        for ax, t in zip(axes, results["tests"], strict=True):
            _plot_accuracy(ax, t)


def _plot_accuracy(ax: Any, t: dict[str, Any]) -> None:
    sizes = [e["per_gender"] for e in t["sizes"]]
    for key, label, colour in (
        ("accuracy_female", "women", "tab:red"),
        ("accuracy_male", "men", "tab:blue"),
    ):
        ys = [_nan(e["scores"][key]) for e in t["sizes"]]
        ax.plot(sizes, ys, "o-", color=colour, label=label)
        if all("masked" in e for e in t["sizes"]):
            ym = [_nan(e["masked"]["scores"][key]) for e in t["sizes"]]
            ax.plot(sizes, ym, "s--", color=colour, alpha=0.6, label=f"{label}, masked")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    # only the sizes are labelled: on less than a decade the log axis would label its minor
    # ticks too ("4x10^0" beside 3 and 6)
    ax.xaxis.set_minor_formatter(_null_formatter())
    ax.set_xlabel("images per gender in the centroid")
    ax.set_ylabel("accuracy")
    ax.set_title(t["name"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_distances(results: dict[str, Any], distances: dict[str, Any], path: Path) -> None:
    """Histograms of the distance to the predicted centroid, right vs wrong (Figure 7)."""
    with _panels(len(results["tests"]), 4, path) as axes:
        for ax, t in zip(axes, results["tests"], strict=True):
            _plot_distances(ax, t, distances)


def _plot_distances(ax: Any, t: dict[str, Any], distances: dict[str, Any]) -> None:
    n = t["sizes"][-1]["per_gender"]
    arr = distances[t["name"]][n]
    d, right = np.asarray(arr["distance"]), np.asarray(arr["right"], dtype=bool)
    bins = np.linspace(float(d.min()), float(d.max()) + 1e-9, 40)
    # densities, so the few wrong answers show their shape beside the many right ones
    for mask, colour, label in ((right, "tab:green", "right"), (~right, "tab:red", "wrong")):
        if mask.any():
            ax.hist(
                d[mask], bins=bins, density=True, alpha=0.55, color=colour,
                label=f"{label} ({int(mask.sum())}, mean {d[mask].mean():.3f})",
            )  # fmt: skip
    ax.set_xlabel(f"distance to the predicted centroid (g_{n})")
    ax.set_ylabel("density")
    ax.set_title(t["name"])
    ax.legend(fontsize=8)


def _null_formatter() -> Any:
    from matplotlib.ticker import NullFormatter

    return NullFormatter()


@contextmanager
def _panels(n: int, height: float, path: Path) -> Iterator[list]:
    """The one plotting set-up: ``n`` panels side by side, saved to ``path`` as PNG on exit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, height), squeeze=False)
    try:
        yield list(axes[0])
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def _nan(x: float | None) -> float:
    return float("nan") if x is None else x
