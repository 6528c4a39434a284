"""The markdown of the centroid modes in results.md: modes against classifiers, risks, groups, targets."""

from __future__ import annotations

from typing import Any

from anfe.bench.cells import ci, num, pct, table
from anfe.bench.metrics import BOOTSTRAP_SAMPLES

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
    lines += table(
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
            lines += table(MODES_HEADER, comparison_rows(modes, methods))
            fractions = [r["set_aside"] for r in modes[0]["risk_coverage"]]
            lines += ["Risk-coverage: balanced % (accuracy %) when the least certain faces "
                      "(smallest margin) are set aside as uncertain.", ""]  # fmt: skip
            lines += table(
                ["set"] + [f"{pct(f).rstrip('0').rstrip('.')}% aside" for f in fractions],
                risk_rows(modes),
            )
            for column in ("race", "age"):
                if modes[0].get("groups_ci", {}).get(column):
                    names, rows = group_rows(modes, methods, column)
                    lines += [f"Balanced % [95% CI] by `{column}`:", ""]
                    lines += table([column, "women/men", *names], rows)
    lines += targets_md(results)
    if lines:
        lines += ["![reliability of each mode's confidence](reliability.png)", ""]
    return lines
