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
        f"{a['test_faces']} held-out faces. Age model: {_age_model_text(m)}.",
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
    return lines + logo_markdown(results)


def _age_model_text(m: dict[str, Any]) -> str:
    cover = f"{m['interval']['coverage']:.0%} interval covering {_pct(m['held_out_coverage'])} %"
    if m.get("method") == "bins":
        return (
            f"age bins (multinomial logistic, faces weighted by group and age band); MAE "
            f"{m['held_out_mae']:.2f} years on train-side faces each estimated without its "
            f"{'group' if m.get('fit', {}).get('held_out_by') == 'group' else 'fold'}, {cover} "
            f"(least covered: {_pct(m.get('held_out_worst_coverage'))} %)"
        )
    return (
        f"ridge on {m['target']}(age), alpha {m['alpha']:g}; cross-fitted MAE on the train side "
        f"{m['held_out_mae']:.2f} years, {cover}"
    )


def _ci(x: float, ci: list[float], count: str = "") -> str:
    """``12.34 [8.00, 16.00] (5/40)``."""
    if x is None or x != x:  # no face (NaN, or null once through results.json)
        return "-"
    return f"{_pct(x)} [{_pct(ci[0])}, {_pct(ci[1])}]" + (f" ({count})" if count else "")


def logo_markdown(results: dict[str, Any]) -> list[str]:
    """The leave-one-group-out tables of ``anfe bench --ages`` (anfe.bench.logo)."""
    a = (results.get("ages") or {}).get("leave_one_group_out")
    if not a:
        return []
    lines = [
        f"## Leave one group out ({a['column']}; {a['faces']} faces, {a['method']})",
        "",
        "Each row: the age model, router and child policy fitted on the other groups (every "
        "threshold chosen on faces of those groups, each answered without its own group), scored "
        "on this group. Age: mean absolute error / mean signed error (estimate - truth), years; "
        "coverage of the 90 % interval.",
        "",
    ]
    age_rows = []
    for g in a["groups"]:
        row = [g["group"]]
        for r in g["age"]:
            row.append(f"{_num(r['mae'], 1)} / {r['bias']:+.1f}" if r["n"] else "-")
        row += [_pct(r["coverage"]) for r in g["age"]]
        age_rows.append(row)
    bands = [r["band"] for r in a["groups"][0]["age"]]
    lines += _table(
        [
            "held-out group",
            *[f"{b}: MAE / bias" for b in bands],
            *[f"{b} covered %" for b in bands],
        ],
        age_rows,
    )
    lines += [
        "Gender answers by band: answered share and wrong share among the answered, % [95 % "
        "bootstrap interval] (wrong/answered); before = the set's own answer on every face.",
        "",
    ]
    rows = []
    for g in a["groups"]:
        for which in ("answers", "before"):
            for r in g[which]:
                f, m = r["female"], r["male"]
                rows.append([
                    g["group"], "policy" if which == "answers" else "before", r["band"],
                    str(f["n"]), _ci(f["answered"], f["answered_ci"]),
                    _ci(f["wrong"], f["wrong_ci"], f"{f['wrong_count']}/{f['answered_count']}"),
                    str(m["n"]), _ci(m["answered"], m["answered_ci"]),
                    _ci(m["wrong"], m["wrong_ci"], f"{m['wrong_count']}/{m['answered_count']}"),
                ])  # fmt: skip
    lines += _table(
        ["held-out group", "answers", "band", "girls/women", "answered %", "wrong among answered %",
         "boys/men", "answered %", "wrong among answered %"],
        rows,
    )  # fmt: skip
    lines += ["Adults (18+) of each held-out group, and the thresholds chosen without it:", ""]
    lines += _table(
        ["held-out group", "adults", "balanced % (before)", "uncertain % (before)",
         "qualified", "mixed_from", "child_from", "adult_confidence", "young_confidence",
         "child answers from (f/m)", "teen answers from"],
        [
            [g["group"], str(g["adults"]["n"]),
             f"{_pct(g['adults']['balanced_accuracy'])} ({_pct(g['adults_before']['balanced_accuracy'])})",
             f"{_pct(g['adults']['uncertain'])} ({_pct(g['adults_before']['uncertain'])})",
             "yes" if g["chosen"].get("qualified") else "no (fallback)",
             _num(g["chosen"]["mixed_from"]), _num(g["chosen"]["child_from"]),
             _num(g["chosen"]["adult_confidence"]), _num(g["chosen"]["young_confidence"]),
             f"{_num(g['chosen']['child_female_from'])}/{_num(g['chosen']['child_male_from'])}",
             _num(g["chosen"]["teen_from"])]
            for g in a["groups"]
        ],
    )  # fmt: skip
    return lines + stricter_markdown(a)


def stricter_markdown(a: dict[str, Any]) -> list[str]:
    """What covering more children with ``uncertain`` would cost the adults, per held-out group."""
    if not all("stricter" in g for g in a["groups"]):
        return []  # results written before this table existed

    def cell(c: dict[str, int]) -> str:
        return f"{c['answered']} / {c['wrong']}"

    lines = [
        "Stricter routings: faces whose p(under 13) (the answer's `age.under_13`) reaches the "
        "threshold are uncertain too, on top of the policy. Answered / wrong of the held-out "
        "children, and the adults' uncertain share against the set's own answers:",
        "",
    ]
    rows = []
    for g in a["groups"]:
        for r in g["stricter"]:
            rows.append([
                g["group"], "policy" if r["from"] is None else f"≥ {r['from']:g}",
                cell(r["children_4_12_female"]), cell(r["children_4_12_male"]),
                cell(r["under_4_female"]), cell(r["under_4_male"]),
                f"{100 * r['adults_uncertain_change']:+.2f}",
            ])  # fmt: skip
    return lines + _table(
        ["held-out group", "uncertain from", "girls 4-12 answered / wrong",
         "boys 4-12 answered / wrong", "girls under 4", "boys under 4",
         "adults uncertain, change (points)"],
        rows,
    )  # fmt: skip


def selection_markdown(policies: list[dict[str, Any]]) -> list[str]:
    """How each router's thresholds were chosen: every candidate's train-side figures."""
    routed = [p for p in policies if p.get("selection") and p.get("routing") == "router"]
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
