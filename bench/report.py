"""Write a benchmark's outputs: ``results.json``, ``results.md`` and the two plots.

``results.md`` is made from the same dict as ``results.json`` (never from other state), so the two
always agree. Plots use matplotlib's Agg backend: ``accuracy_vs_size.png`` (accuracy on women and
on men against the centroid size, the paper's Figure 5) and ``distances.png`` (histograms of the
distance to the predicted centroid for right and wrong answers, the paper's Figure 7).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench import masks
from bench.metrics import BOOTSTRAP_SAMPLES
from bench.report_ages import ages_markdown, tight_markdown
from bench.run import BenchResult
from centroids.errors import InvalidParameter

FILES = ("results.json", "results.md", "accuracy_vs_size.png", "distances.png")


def require_matplotlib() -> None:
    """Raise a clear error, before any long work, when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InvalidParameter(
            "the benchmark plots need matplotlib: pip install 'anfe[bench]'"
        ) from None


def clean(value: Any) -> Any:
    """NaN and infinities become None, numpy scalars plain numbers: strict JSON."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def pct(x: float | None) -> str:
    """A fraction as a percentage with two decimals; ``n/a`` when missing."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.2f}"


def num(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines + [""]


def size_rows(test: dict[str, Any]) -> list[list[str]]:
    """One row per centroid size: the figures of the paper's Figure 5 and a few more."""
    rows = []
    for e in test["sizes"]:
        s = e["scores"]
        masked = pct(e["masked"]["scores"]["balanced_accuracy"]) if "masked" in e else "-"
        rows.append(
            [
                e["centroid_id"],
                pct(s["accuracy_female"]),
                pct(s["accuracy_male"]),
                pct(s["balanced_accuracy"]),
                pct(s["f1_macro"]),
                str(s["tf"]),
                str(s["ff"]),
                str(s["tm"]),
                str(s["fm"]),
                str(s["n"]),
                num(s["mean_distance_right"]),
                num(s["mean_distance_wrong"]),
                masked,
            ]
        )
    return rows


SIZE_HEADER = [
    "centroids", "women %", "men %", "balanced %", "F1 macro %", "TF", "FF", "TM", "FM", "n",
    "mean dist. right", "mean dist. wrong", "masked balanced %",
]  # fmt: skip
METHOD_HEADER = [
    "method", "TF", "FF", "TM", "FM", "accuracy %", "balanced %", "F1 female %", "F1 macro %",
    "train s", "predict ms/face", "masked balanced %",
]  # fmt: skip


def method_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in rows:
        s = r["scores"]
        masked = r.get("masked_scores")
        out.append(
            [
                r["label"],
                str(s["tf"]),
                str(s["ff"]),
                str(s["tm"]),
                str(s["fm"]),
                pct(s["accuracy"]),
                pct(s["balanced_accuracy"]),
                pct(s["f1_female"]),
                pct(s["f1_macro"]),
                num(r["fit_seconds"], 3),
                num(r["predict_ms_per_face"], 4),
                pct(masked["balanced_accuracy"]) if masked else "-",
            ]
        )
    return out


def _groups_md(column: str, b: dict[str, Any]) -> list[str]:
    rows = [
        [
            value,
            str(s["n"]),
            str(s["n_female"]),
            str(s["n_male"]),
            pct(s["accuracy_female"]),
            pct(s["accuracy_male"]),
            pct(s["balanced_accuracy"]),
        ]
        for value, s in b["groups"].items()
    ]
    lines = [f"By `{column}`:", ""]
    lines += _table(["group", "n", "women", "men", "women %", "men %", "balanced %"], rows)
    gap = b["gap"]
    if gap["value"] is None or (isinstance(gap["value"], float) and math.isnan(gap["value"])):
        lines += [
            f"Largest gap: n/a (fewer than two groups with {b['min_per_gender']} faces "
            "of each gender).",
            "",
        ]
    else:
        lines += [
            f"Largest gap in balanced accuracy: {pct(gap['value'])} points "
            f"({gap['best']} best, {gap['worst']} worst; groups with at least "
            f"{b['min_per_gender']} faces of each gender).",
            "",
        ]
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The tables of ``results.md``."""
    tr = results["train"]
    st = results["settings"]
    lines = [
        "# anfe bench results",
        "",
        f"- command: `{results.get('command', '')}`",
        f"- run time: {num(results['elapsed_s'], 1)} s; new embeddings computed: "
        f"{results['embedded_new']}",
        f"- machine: {results['machine']['cpu']}, {results['machine']['cores']} cores; "
        f"anfe {results['versions'].get('anfe')}, dlib {results['versions'].get('dlib-bin')}",
        f"- train: `{tr['path']}` ({tr['layout']}, {tr['images']} images"
        + (
            f"; split {tr['split']['how']}: {tr['split']['train_images']} train / "
            f"{tr['split']['test_images']} held out"
            if tr["split"]
            else ""
        )
        + (f"; age >= {st['min_age']}: {tr['images_after_min_age']}" if st["min_age"] else "")
        + "; pool {female} women, {male} men".format(**tr["pool_by_gender"])
        + f"), seed {st['seed']}, sizes {', '.join(map(str, tr['sizes_built']))} per gender",
    ]
    if tr["sizes_skipped"]:
        for n, why in tr["sizes_skipped"].items():
            lines.append(f"- size {n} skipped: {why}")
    lines.append("")
    for t in results["tests"]:
        c = t["counts"]
        o = t["overlap"]
        lines += [
            f"## Test set: {t['name']}",
            "",
            f"`{t['path']}` ({t['layout']}): {c['images']} images "
            f"({c['images_by_gender']['female']} women, {c['images_by_gender']['male']} men); "
            f"scored {c['scored']} with exactly one face ({c['scored_by_gender']['female']} women, "
            f"{c['scored_by_gender']['male']} men); left out: {c['no_face']} no face, "
            f"{c['several_faces']} several faces, {c['unreadable']} unreadable.",
            "",
        ]
        if not o["known"]:
            lines += ["Person overlap with the train sample: unknown (persons not named).", ""]
        else:
            ex = f" ({', '.join(o['examples'])})" if o["examples"] else ""
            lines += [
                f"Person overlap with the train sample (by name): {o['persons']} persons{ex}, "
                f"{o['test_images_of_them']} test images.",
                "",
            ]
        lines += [f"Identical images in train sample and test set: {o['identical_images']}.", ""]
        lines += ["### Accuracy against centroid size (nearest centroid)", ""]
        lines += _table(SIZE_HEADER, size_rows(t))
        best = t["best_size"]
        lines += [
            f"Best size on this test set: {best['centroid_id']} "
            f"(balanced accuracy {pct(best['balanced_accuracy'])} %).",
            "",
        ]
        for size, rows in t["methods"].items():
            lines += [
                f"### Classifiers on the same embeddings (trained on the g_{size} sample)",
                "",
            ]
            lines += _table(METHOD_HEADER, method_rows(rows))
        last = t["sizes"][-1]
        if last["groups"]:
            lines += [f"### Groups ({last['centroid_id']})", ""]
            for column, b in last["groups"].items():
                lines += _groups_md(column, b)
        if "masked" in last:
            m = last["masked"]
            lines += [f"### Masked faces ({last['centroid_id']})", ""]
            rows = [
                [
                    fill,
                    str(s["n"]),
                    pct(s["accuracy_female"]),
                    pct(s["accuracy_male"]),
                    pct(s["balanced_accuracy"]),
                ]
                for fill, s in m["by_fill"].items()
            ]
            s = m["scores"]
            rows.append(
                [
                    "all",
                    str(s["n"]),
                    pct(s["accuracy_female"]),
                    pct(s["accuracy_male"]),
                    pct(s["balanced_accuracy"]),
                ]
            )
            lines += _table(["fill", "n", "women %", "men %", "balanced %"], rows)
            lines += [f"Answers changed by the mask: {m['changed_answers']} of {s['n']}.", ""]
    lines += modes_markdown(results)
    lines += ages_markdown(results) + tight_markdown(results)
    lines += [
        "![accuracy against size](accuracy_vs_size.png)",
        "",
        "![distances of right and wrong answers](distances.png)",
        "",
    ]
    if any(t["masked"] for t in results["tests"]):
        lines += ["![masked example faces: light, dark, patterned](mask_examples.png)", ""]
    return "\n".join(lines)


def ci(b: dict[str, Any] | None) -> str:
    """``97.05 [96.10, 97.90]``: a balanced accuracy and its 95% interval, in percent."""
    if not b:
        return "-"
    return f"{pct(b['value'])} [{pct(b['low'])}, {pct(b['high'])}]"


MODES_HEADER = [
    "method", "balanced % [95% CI]", "women %", "men %", "worst race: balanced % [95% CI]",
    "ECE held-out train", "ECE test", "ms/face batch", "ms/face single",
]  # fmt: skip


def _worst(row: dict[str, Any], column: str = "race") -> str:
    w = (row.get("groups_ci", {}).get(column) or {}).get("worst")
    return f"{w['group']}: {ci(w)}" if w else "-"


def comparison_rows(modes: list[dict[str, Any]], methods: list[dict[str, Any]]) -> list[list[str]]:
    """One row per centroid mode (calibrated, timed) then per baseline classifier."""
    rows = []
    for m in modes:
        s, c, t = m["scores"], m["calibration"], m["time"]
        rows.append(
            [
                f"`{m['centroid_id']}` ({m['mode']})",
                ci(m["balanced"]),
                pct(s["accuracy_female"]),
                pct(s["accuracy_male"]),
                _worst(m),
                num(c["held_out_ece"]),
                num(c["test_ece"]),
                num(t["batch_ms"], 4),
                num(t["single_ms"], 4),
            ]
        )
    for r in methods:
        if r["method"] == "nearest_centroid":
            continue  # the same rule as the centroid mode above
        s = r["scores"]
        rows.append(
            [
                r["label"],
                ci(r.get("balanced")),
                pct(s["accuracy_female"]),
                pct(s["accuracy_male"]),
                _worst(r),
                "-",
                "-",
                num(r["predict_ms_per_face"], 4),
                "-",
            ]
        )
    return rows


def risk_rows(modes: list[dict[str, Any]]) -> list[list[str]]:
    """Balanced accuracy (and accuracy) kept when the least certain faces are set aside."""
    rows = []
    for m in modes:
        cells = [f"`{m['centroid_id']}`"]
        for r in m["risk_coverage"]:
            cells.append(f"{pct(r['balanced_accuracy'])} ({pct(r['accuracy'])})")
        rows.append(cells)
    return rows


def group_rows(modes: list[dict[str, Any]], methods: list[dict[str, Any]], column: str):
    """Per group value: balanced accuracy with interval of every mode and baseline."""
    named = [(m["centroid_id"], m) for m in modes] + [
        (r["label"], r) for r in methods if r["method"] != "nearest_centroid"
    ]
    first = (named[0][1].get("groups_ci", {}).get(column) or {}).get("groups", {})
    rows = []
    for value, g in first.items():
        cells = [value, f"{g['n_female']}/{g['n_male']}"]
        for _, row in named:
            cells.append(ci(row["groups_ci"][column]["groups"].get(value)))
        rows.append(cells)
    return [name for name, _ in named], rows


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of every centroid mode: gap to the RBF SVM, worst race group, ECE."""
    out: dict[str, dict[str, Any]] = {}
    for t in results["tests"]:
        for size, modes in t.get("modes", {}).items():
            rbf = next((r for r in t["methods"].get(size, []) if r["method"] == "rbf_svm"), None)
            for m in modes:
                row = out.setdefault(
                    m["centroid_id"],
                    {"centroid_id": m["centroid_id"], "mode": m["mode"], "gaps": {}, "ece": []},
                )
                if rbf:
                    gap = rbf["scores"]["balanced_accuracy"] - m["scores"]["balanced_accuracy"]
                    row["gaps"][t["name"]] = gap
                row["ece"].append(m["calibration"]["held_out_ece"])
                w = (m.get("groups_ci", {}).get("race") or {}).get("worst")
                if w and t["split_from_train"]:
                    row["worst_race"] = w
                row["single_ms"] = max(row.get("single_ms", 0.0), m["time"]["single_ms"])
    return list(out.values())


def targets_md(results: dict[str, Any]) -> list[str]:
    rows = []
    for r in targets(results):
        gaps = " / ".join(f"{name}: {num(100 * g, 2)}" for name, g in r["gaps"].items())
        met_gap = bool(r["gaps"]) and all(g <= 0.003 for g in r["gaps"].values())
        w = r.get("worst_race")
        met_race = bool(w) and w["value"] >= 0.95
        ece = max((e for e in r["ece"] if e is not None), default=None)
        met_ece = ece is not None and ece <= 0.02
        rows.append(
            [
                f"`{r['centroid_id']}`",
                gaps or "-",
                "yes" if met_gap else "no",
                f"{w['group']} {pct(w['value'])}" if w else "-",
                "yes" if met_race else "no",
                num(ece),
                "yes" if met_ece else "no",
                num(r["single_ms"], 4),
            ]
        )
    if not rows:
        return []
    lines = ["## Targets of the centroid modes", ""]
    lines += _table(
        [
            "set", "points below RBF SVM", "within 0.3", "worst race (held-out)", ">= 95 %",
            "ECE (held-out train)", "<= 0.02", "ms/face single",
        ],
        rows,
    )  # fmt: skip
    return lines


def modes_markdown(results: dict[str, Any]) -> list[str]:
    """The mode comparison of every test set, then the targets (empty without ``--modes``)."""
    lines: list[str] = []
    for t in results["tests"]:
        for size, modes in t.get("modes", {}).items():
            methods = t["methods"].get(size, [])
            unit = modes[0]["balanced"]["unit"]
            lines += [
                f"## Centroid modes and baselines: {t['name']} (g_{size} sample)",
                "",
                f"Intervals: 95% bootstrap over {unit}s "
                f"({BOOTSTRAP_SAMPLES} resamples). Worst race: lowest balanced accuracy "
                "among race groups with at least 10 faces of each gender. ECE: expected "
                "calibration error of the confidence (10 bins).",
                "",
            ]
            lines += _table(MODES_HEADER, comparison_rows(modes, methods))
            fractions = [r["set_aside"] for r in modes[0]["risk_coverage"]]
            lines += ["Risk-coverage: balanced % (accuracy %) when the least certain faces "
                      "(smallest margin) are set aside as uncertain.", ""]  # fmt: skip
            lines += _table(
                ["set"] + [f"{pct(f).rstrip('0').rstrip('.')}% aside" for f in fractions],
                risk_rows(modes),
            )
            for column in ("race", "age"):
                if modes[0].get("groups_ci", {}).get(column):
                    names, rows = group_rows(modes, methods, column)
                    lines += [f"Balanced % [95% CI] by `{column}`:", ""]
                    lines += _table([column, "women/men", *names], rows)
    lines += targets_md(results)
    if lines:
        lines += ["![reliability of each mode's confidence](reliability.png)", ""]
    return lines


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


def write_all(result: BenchResult, out: Path) -> list[Path]:
    """Write the output files of a run into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    data = clean(result.results)
    for t in data["tests"]:  # histogram figures of the distance plot, kept in the json too
        n = t["sizes"][-1]["per_gender"]
        arr = result.distances[t["name"]][n]
        d, right = np.asarray(arr["distance"]), np.asarray(arr["right"], dtype=bool)
        edges = np.linspace(float(d.min()), float(d.max()) + 1e-9, 21)
        t["distance_histogram"] = {
            "per_gender": n,
            "edges": [round(float(e), 5) for e in edges],
            "right": np.histogram(d[right], edges)[0].tolist(),
            "wrong": np.histogram(d[~right], edges)[0].tolist(),
        }
    paths = [out / f for f in FILES]
    tmp = paths[0].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False))
    tmp.replace(paths[0])
    paths[1].write_text(markdown(data))
    plot_accuracy(data, paths[2])
    plot_distances(data, result.distances, paths[3])
    if plot_reliability(data, out / "reliability.png"):
        paths.append(out / "reliability.png")
    jobs = [j for js in result.mask_jobs.values() for j in js]
    if jobs and masks.save_examples(jobs, out / "mask_examples.png"):
        paths.append(out / "mask_examples.png")
    return paths
