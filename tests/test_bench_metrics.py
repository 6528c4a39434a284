"""The benchmark's figures on small confusion tables checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from centroids.bench_metrics import (
    Confusion,
    age_bin,
    breakdown,
    distance_stats,
    group_columns,
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
def test_age_bins_follow_the_issue_boundaries(age, expected):
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
    from centroids.benchmark import comparison_sizes

    assert comparison_sizes([100, 1000, 2000], policy, cap) == expected
