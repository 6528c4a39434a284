"""The benchmark's figures on small confusion tables checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anfe.bench.metrics import (
    Confusion,
    age_bin,
    bootstrap_balanced,
    breakdown,
    distance_stats,
    group_columns,
    reliability,
    risk_coverage,
    scores,
)

# 4 women (3 called female, 1 called male), 6 men (5 called male, 1 called female)
TRUTH = ["female"] * 4 + ["male"] * 6
PRED = ["female", "female", "female", "male", "female"] + ["male"] * 5


def test_confusion_counts_match_the_hand_count():
    c = Confusion.of(TRUTH, PRED)
    assert (c.tf, c.fm, c.ff, c.tm) == (3, 1, 1, 5)
    assert c.n == 10


def test_scores_match_the_hand_computed_figures():
    s = scores(Confusion.of(TRUTH, PRED))
    assert s["accuracy"] == pytest.approx(8 / 10)
    assert s["accuracy_female"] == pytest.approx(3 / 4)
    assert s["accuracy_male"] == pytest.approx(5 / 6)
    assert s["balanced_accuracy"] == pytest.approx((3 / 4 + 5 / 6) / 2)
    # F1 female: precision 3/4, recall 3/4; F1 male: precision 5/6, recall 5/6
    assert s["f1_female"] == pytest.approx(0.75)
    assert s["f1_male"] == pytest.approx(5 / 6)
    assert s["f1_macro"] == pytest.approx((0.75 + 5 / 6) / 2)
    assert (s["n_female"], s["n_male"]) == (4, 6)


def test_a_missing_class_gives_nan_not_a_crash():
    s = scores(Confusion.of(["male", "male"], ["male", "female"]))
    assert math.isnan(s["accuracy_female"])
    assert s["accuracy_male"] == pytest.approx(0.5)
    assert s["balanced_accuracy"] == pytest.approx(0.5)


def test_distance_stats_split_right_from_wrong():
    right = np.array([True, True, False])
    d = np.array([0.5, 0.7, 0.4])
    s = distance_stats(right, d)
    assert (s["right"], s["wrong"]) == (2, 1)
    assert s["mean_distance_right"] == pytest.approx(0.6)
    assert s["mean_distance_wrong"] == pytest.approx(0.4)


@pytest.mark.parametrize(
    "age,expected",
    [("0", "0-17"), ("17", "0-17"), ("18", "18-29"), ("44", "30-44"), ("59", "45-59"),
     ("60", "60+"), ("101", "60+"), ("", None), ("n/a", None)],
)  # fmt: skip
def test_age_bins_follow_the_documented_boundaries(age, expected):
    assert age_bin(age) == expected


def test_group_columns_bin_age_and_drop_identifier_like_columns():
    extras = [{"age": str(20 + i), "race": "white" if i % 2 else "black", "id": str(i)} for i in range(30)]  # fmt: skip
    cols = group_columns(extras)
    assert set(cols) == {"age", "race"}
    assert cols["age"][0] == "18-29" and cols["age"][25] == "45-59"


def test_breakdown_reports_the_gap_between_eligible_groups_only():
    # group a: 10 women all right, 10 men all right -> balanced 1.0
    # group b: 10 women 5 right, 10 men all right -> balanced 0.75
    # group c: 1 woman wrong, 1 man right -> too small for the gap
    truth = ["female"] * 10 + ["male"] * 10 + ["female"] * 10 + ["male"] * 10 + ["female", "male"]
    pred = ["female"] * 10 + ["male"] * 10 + ["female"] * 5 + ["male"] * 5 + ["male"] * 10
    pred += ["male", "male"]
    groups = ["a"] * 20 + ["b"] * 20 + ["c"] * 2
    b = breakdown(truth, pred, groups)
    assert b["groups"]["b"]["balanced_accuracy"] == pytest.approx(0.75)
    assert b["groups"]["c"]["balanced_accuracy"] == pytest.approx(0.5)
    assert b["gap"]["value"] == pytest.approx(0.25)
    assert (b["gap"]["best"], b["gap"]["worst"]) == ("a", "b")


@pytest.mark.parametrize(
    "policy,cap,expected",
    [("largest", 5000, [2000]), ("largest", 1500, [1000]), ("largest", 10, [100]),
     ("all", 1500, [100, 1000]), ("none", 5000, [2000])],
)  # fmt: skip
def test_baselines_train_on_the_largest_size_within_the_cap(policy, cap, expected):
    from anfe.bench.config import comparison_sizes

    assert comparison_sizes([100, 1000, 2000], policy, cap) == expected


# -- intervals, abstention and reliability -----------------------------------------------------------


def test_bootstrap_interval_brackets_the_balanced_accuracy():
    truth = np.array(["female"] * 40 + ["male"] * 60)
    pred = truth.copy()
    pred[:6] = "male"  # 6 women missed
    pred[40:43] = "female"  # 3 men missed
    b = bootstrap_balanced(truth, pred, seed=1)
    assert b["value"] == pytest.approx((34 / 40 + 57 / 60) / 2)
    assert b["low"] < b["value"] < b["high"]
    assert b["unit"] == "image" and b["units"] == 100


def test_bootstrap_over_persons_counts_each_person_once_and_widens_the_interval():
    truth = np.array(["female"] * 40 + ["male"] * 40)
    pred = truth.copy()
    pred[:8] = "male"  # all the errors are the 8 photos of two women
    persons = [f"p{i // 4}" for i in range(80)]  # 4 photos per person
    by_image = bootstrap_balanced(truth, pred, seed=0)
    by_person = bootstrap_balanced(truth, pred, persons, seed=0)
    assert by_person["unit"] == "person" and by_person["units"] == 20
    assert by_person["value"] == pytest.approx(by_image["value"])
    assert by_person["high"] - by_person["low"] > by_image["high"] - by_image["low"]


def test_setting_aside_the_least_certain_faces_drops_the_wrong_ones_first():
    truth = np.array(["female"] * 50 + ["male"] * 50)
    pred = truth.copy()
    pred[[3, 60]] = ["male", "female"]
    certainty = np.linspace(1, 2, 100)
    certainty[[3, 60]] = 0.1  # the two errors are the least certain faces
    rows = risk_coverage(truth, pred, certainty, fractions=(0.0, 0.01, 0.05))
    assert [r["faces_set_aside"] for r in rows] == [0, 1, 5]
    assert rows[0]["accuracy"] == pytest.approx(0.98)
    assert rows[1]["kept"] == 99 and rows[1]["accuracy"] == pytest.approx(98 / 99)
    assert rows[2]["accuracy"] == 1.0


def test_reliability_bins_hold_every_face():
    conf = np.array([0.5, 0.55, 0.74, 0.76, 0.99, 1.0])
    right = np.array([0, 1, 1, 0, 1, 1], dtype=bool)
    rel = reliability(conf, right, bins=5)
    assert sum(rel["n"]) == 6
    assert rel["n"][0] == 2 and rel["accuracy"][0] == 0.5
    assert rel["n"][-1] == 2 and rel["accuracy"][-1] == 1.0
