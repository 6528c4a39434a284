"""The ``--ages`` and ``--tight-crops`` sections of ``results.md``."""

from __future__ import annotations

from typing import Any

from anfe.bench.tight import PADDINGS


def _pct(x: float | None) -> str:
    return "-" if x is None or x != x else f"{100 * x:.2f}"


def _num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or x != x else f"{x:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows] + [""]


def ages_markdown(results: dict[str, Any]) -> list[str]:
    """Age error by band; answers by age band and gender for each child policy; ECE."""
    a = results.get("ages")
    if not a:
        return []
    m = a["age_model"]
    lines = [
        f"## Age estimate and children's answers ({a['centroid_id']})",
        "",
        f"Fitted on {a['train_faces']} faces of the train side (all ages), scored on "
        f"{a['test_faces']} held-out faces. Age model: ridge on {m['target']}(age), alpha "
        f"{m['alpha']:g}; cross-fitted MAE on the train side {m['held_out_mae']:.2f} years, "
        f"{m['interval']['coverage']:.0%} interval covering {_pct(m['held_out_coverage'])} %.",
        "",
    ]
    lines += _table(
        ["age band", "n", "MAE (years)", "median error", "interval covers %", "mean width"],
        [
            [r["band"], str(r["n"]), _num(r["mae"]), _num(r["median_error"]),
             _pct(r["coverage"]), _num(r["mean_width"], 1)]
            for r in a["age_errors"]
        ],
    )  # fmt: skip
    rows = []
    for p in a["policies"]:
        for b in p["bands"]:
            f, mm = b["female"], b["male"]
            rows.append(
                [
                    p["name"], b["band"], str(b["n"]),
                    _pct(f["answered"]), f"{_pct(f['wrong'])} ({f['wrong_count']}/{f['answered_count']})",
                    _pct(mm["answered"]), f"{_pct(mm['wrong'])} ({mm['wrong_count']}/{mm['answered_count']})",
                    _pct(b["answered"]), _pct(b["balanced_accuracy"]),
                ]
            )  # fmt: skip
    lines += ["Answers by true age band and gender (answered = not `uncertain`):", ""]
    lines += _table(
        ["policy", "age band", "n", "women answered %", "wrong among them % (n)",
         "men answered %", "wrong among them % (n)", "answered %", "balanced % (all answers)"],
        rows,
    )  # fmt: skip
    lines += selection_markdown(a["policies"])
    lines += _table(
        ["policy", "ECE all ages", "ECE 18+"],
        [[p["name"], _num(p["ece"], 4), _num(p["ece_adults"], 4)] for p in a["policies"]],
    )
    return lines


def selection_markdown(policies: list[dict[str, Any]]) -> list[str]:
    """How each router's thresholds were chosen: every candidate's train-side figures."""
    routed = [p for p in policies if p.get("selection")]
    if not routed:
        return []
    lines = [
        "The router's thresholds of each policy, chosen on the train side's faces (cross-fitted "
        "bands and children's margins): among the pairs keeping adults within 0.5 point of "
        "answers and 0.1 point of balanced accuracy and answering at least 30 % of children, "
        "the fewest wrong answers to children (`centroids.fit_children.choose_routing`):",
        "",
    ]
    lines += _table(
        ["policy", "adult_confidence", "young_confidence", "children answered %",
         "children's wrong answers", "worst child band and gender: wrong %",
         "adults answered, change (points)", "adults balanced, change (points)",
         "adults within bounds"],
        [
            [p["name"] + (" **(chosen)**" if _chosen(p, r) else ""),
             f"{r['adult_confidence']:.2f}", _num(r["young_confidence"]),
             _pct(r["children_answered"]), str(r["children_wrong_answers"]),
             _pct(r["children_wrong_worst"]), _num(100 * r["adults_answered_change"]),
             _num(100 * r["adults_balanced_change"]),
             "yes" if r["adults_within_bounds"] else "no"]
            for p in routed
            for r in p["selection"]
        ],
    )  # fmt: skip
    return lines


def _chosen(policy: dict[str, Any], row: dict[str, Any]) -> bool:
    return (row["adult_confidence"], row["young_confidence"]) == (
        policy["adult_confidence"],
        policy["young_confidence"],
    )


def tight_markdown(results: dict[str, Any]) -> list[str]:
    """Faces found with and without the second pass; time; accuracy; paddings compared."""
    t = results.get("tight_crops")
    if not t:
        return []
    lines = [f"## Faces HOG misses: the second detection pass ({t['centroid_id']})", ""]
    rows, pads = [], []
    for name, runs in t["tests"].items():
        for which, r in runs.items():
            label = "photos as they are" if which == "photos" else f"cropped {which} inside"
            first, second = r["accuracy_first"], r["accuracy_second"]
            rows.append(
                [
                    name, label, str(r["images"]), _pct(1 - r["no_face_before"]),
                    _pct(r["found_after"]), str(r["found_second"]),
                    _num(r["first_pass_ms"], 1) if which != "photos" else "-",
                    _num(r["second_pass_ms"], 1), _num(r["added_ms_per_image"], 1),
                    f"{_pct(first['balanced_accuracy'])} ({first['n']})",
                    f"{_pct(second['balanced_accuracy'])} ({second['n']})",
                ]
            )  # fmt: skip
            if r.get("paddings"):
                pads.append(
                    [name, label, str(r["paddings_tried_on"])]
                    + [str(r["paddings"][p[0]]) for p in PADDINGS]
                )
    lines += _table(
        ["test set", "images", "n", "face found %, first pass", "after second pass %",
         "found by second pass", "ms first pass", "ms second pass (when run)",
         "ms added per image", "balanced % first-pass faces (n)",
         "balanced % second-pass faces (n)"],
        rows,
    )  # fmt: skip
    if pads:
        lines += ["Paddings tried on the crops the first pass misses (faces found):", ""]
        lines += _table(["test set", "images", "missed"] + [p[0] for p in PADDINGS], pads)
    return lines
