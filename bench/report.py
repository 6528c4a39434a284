"""Write a benchmark's outputs: ``results.json``, ``results.md`` and the two plots.

``results.md`` is made from the same dict as ``results.json`` (never from other state), so the two
always agree. Plots use matplotlib's Agg backend: ``accuracy_vs_size.png`` (accuracy on women and
on men against the centroid size, the paper's Figure 5) and ``distances.png`` (histograms of the
distance to the predicted centroid for right and wrong answers, the paper's Figure 7).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from anfe.bench import masks, plots
from anfe.bench.cells import num, pct, table
from anfe.bench.report_ages import ages_markdown, tight_markdown
from anfe.bench.report_modes import modes_markdown
from anfe.bench.run import BenchResult

FILES = ("results.json", "results.md", "accuracy_vs_size.png", "distances.png")


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


CONFUSION_LEGEND = (
    "TF: true female (a woman called female). FF: false female (a man called female). "
    "TM: true male (a man called male). FM: false male (a woman called male). "
    "Women % = TF/(TF+FM); men % = TM/(TM+FF); balanced % is their mean."
)
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
    lines += table(["group", "n", "women", "men", "women %", "men %", "balanced %"], rows)
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
    """The tables of ``results.md``: the run, each test set, the modes, ages and tight crops."""
    lines = header_markdown(results)
    for t in results["tests"]:
        lines += test_markdown(t)
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


def header_markdown(results: dict[str, Any]) -> list[str]:
    """The run: its command, time, machine, train folder, split and sizes."""
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
    lines += ["", CONFUSION_LEGEND, ""]
    return lines


def test_markdown(t: dict[str, Any]) -> list[str]:
    """One test set: its counts, person overlap, accuracy by size, classifiers, groups, masks."""
    c = t["counts"]
    o = t["overlap"]
    lines = [
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
    lines += table(SIZE_HEADER, size_rows(t))
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
        lines += table(METHOD_HEADER, method_rows(rows))
    last = t["sizes"][-1]
    if last["groups"]:
        lines += [f"### Groups ({last['centroid_id']})", ""]
        for column, b in last["groups"].items():
            lines += _groups_md(column, b)
    if "masked" in last:
        lines += masked_markdown(last)
    return lines


def masked_markdown(scored: dict[str, Any]) -> list[str]:
    """The masked copies of a test set's faces, scored by the set ``scored`` names."""
    m = scored["masked"]
    lines = [f"### Masked faces ({scored['centroid_id']})", ""]

    def row(name: str, s: dict[str, Any]) -> list[str]:
        return [
            name,
            str(s["n"]),
            pct(s["accuracy_female"]),
            pct(s["accuracy_male"]),
            pct(s["balanced_accuracy"]),
        ]

    rows = [row(fill, s) for fill, s in m["by_fill"].items()]
    s = m["scores"]
    rows.append(row("all", s))
    lines += table(["fill", "n", "women %", "men %", "balanced %"], rows)
    lines += [f"Answers changed by the mask: {m['changed_answers']} of {s['n']}.", ""]
    return lines


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
    plots.plot_accuracy(data, paths[2])
    plots.plot_distances(data, result.distances, paths[3])
    if plots.plot_reliability(data, out / "reliability.png"):
        paths.append(out / "reliability.png")
    jobs = [j for js in result.mask_jobs.values() for j in js]
    if jobs and masks.save_examples(jobs, out / "mask_examples.png"):
        paths.append(out / "mask_examples.png")
    return paths
