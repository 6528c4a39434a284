"""The classifier on real embeddings: the paper's rule exactly, calibration, stored documents."""

from __future__ import annotations

import numpy as np
import pytest

from anfe.centroids import answers
from anfe.centroids.errors import InvalidParameter
from anfe.centroids.imaging import decoding
from anfe.centroids.model.centroid_set import CentroidSet
from anfe.centroids.vision import faces
from tests.helpers import LFW


@pytest.fixture(scope="module")
def lfw_embeddings(lfw_rows):
    """Embeddings of 24 real LFW photos (12 per gender) and their genders."""
    rows = [r for r in lfw_rows if r["gender"] == "female"][:12]
    rows += [r for r in lfw_rows if r["gender"] == "male"][:12]
    vecs, genders = [], []
    for row in rows:
        image = decoding.load_image(LFW / row["path"])
        boxes = faces.detect(image)
        if boxes:
            box = min(boxes, key=lambda b: abs((b[1] + b[3]) / 2 - 125))
            vecs.append(faces.encode(image, [box])[0])
            genders.append(row["gender"])
    return np.stack(vecs), np.array(genders)


@pytest.fixture(scope="module")
def cs(small_centroids_doc):
    return CentroidSet.from_doc(small_centroids_doc)


def test_nearer_centroid_wins_exactly(cs, lfw_embeddings):
    x, _ = lfw_embeddings
    preds = cs.classify(x)
    for i, vec in enumerate(x):
        d_f = float(np.sqrt(((vec - cs.female) ** 2).sum()))
        d_m = float(np.sqrt(((vec - cs.male) ** 2).sum()))
        assert preds.d_female[i] == pytest.approx(d_f, abs=1e-12)
        assert preds.d_male[i] == pytest.approx(d_m, abs=1e-12)
        assert preds.gender[i] == ("female" if d_f < d_m else "male")
        assert preds.margin[i] == pytest.approx(abs(d_f - d_m), abs=1e-12)


def test_batch_equals_one_at_a_time(cs, lfw_embeddings):
    x, _ = lfw_embeddings
    batch = cs.classify(x)
    for i in range(len(x)):
        single = cs.classify(x[i])
        assert answers.classification(single, 0) == answers.classification(batch, i)


def test_small_real_centroids_beat_chance_on_lfw(cs, lfw_embeddings):
    x, genders = lfw_embeddings
    assert (cs.classify(x).gender == genders).mean() >= 0.75


def test_confidence_is_calibrated_monotone_and_bounded(cs, lfw_embeddings):
    x, _ = lfw_embeddings
    preds = cs.classify(x)
    assert ((preds.confidence >= 0.5) & (preds.confidence <= 1.0)).all()
    order = np.argsort(preds.margin)
    assert np.all(np.diff(preds.confidence[order]) >= -1e-12)
    assert cs.calibration.a > 0  # larger margins are more often right on held-out training faces
    assert np.array_equal(preds.uncertain, preds.margin < cs.calibration.uncertain_below)


def test_working_range_flags_a_far_away_vector(cs, lfw_embeddings):
    x, _ = lfw_embeddings
    assert cs.classify(x).in_range.mean() > 0.8
    far = cs.female + 5 * (cs.female - cs.male)
    assert not cs.classify(far).in_range[0]


def test_document_round_trip_keeps_every_decision(cs, lfw_embeddings):
    x, _ = lfw_embeddings
    again = CentroidSet.from_doc(cs.to_doc())
    a, b = cs.classify(x), again.classify(x)
    for i in range(len(x)):
        assert answers.classification(a, i) == answers.classification(b, i)


def test_from_embeddings_needs_both_genders_and_128_dims(lfw_embeddings):
    x, _ = lfw_embeddings
    with pytest.raises(InvalidParameter):
        CentroidSet.from_embeddings("g_1", x[:3], x[:0])
    with pytest.raises(InvalidParameter):
        CentroidSet.from_embeddings("g_1", x[:3, :64], x[3:6, :64])


def test_centroids_are_the_means(lfw_embeddings):
    x, genders = lfw_embeddings
    cs = CentroidSet.from_embeddings("g_5", x[genders == "female"], x[genders == "male"])
    assert np.allclose(cs.female, x[genders == "female"].mean(axis=0))
    assert np.allclose(cs.male, x[genders == "male"].mean(axis=0))
    assert cs.counts == {
        "female": int((genders == "female").sum()),
        "male": int((genders == "male").sum()),
    }


@pytest.fixture(scope="module")
def mode_sets(training_embeddings):
    f, m = training_embeddings["female"], training_embeddings["male"]
    return {
        mode: CentroidSet.from_embeddings(f"g_60-{mode}", f, m, mode=mode, params={"k": 3}, seed=2)
        for mode in ("centroid", "prototypes", "mahalanobis", "mahalanobis-prototypes")
    }


def test_every_mode_round_trips_through_its_document(mode_sets, lfw_embeddings):
    x, _ = lfw_embeddings
    for mode, cs in mode_sets.items():
        doc = cs.to_doc()
        assert doc["mode"] == mode and doc["_id"] == f"g_60-{mode}"
        again = CentroidSet.from_doc(doc)
        assert np.allclose(again.classify(x).d_female, cs.classify(x).d_female)
        assert list(again.classify(x).gender) == list(cs.classify(x).gender)


def test_prototypes_mode_uses_the_nearest_prototype(mode_sets, lfw_embeddings, training_embeddings):
    x, _ = lfw_embeddings
    cs = mode_sets["prototypes"]
    assert cs.prototypes["female"].shape == (3, 128)
    assert sum(cs.prototype_counts["female"]) == len(training_embeddings["female"])
    preds = cs.classify(x)
    for i, vec in enumerate(x):
        d_f = min(np.linalg.norm(vec - p) for p in cs.prototypes["female"])
        d_m = min(np.linalg.norm(vec - p) for p in cs.prototypes["male"])
        assert preds.d_female[i] == pytest.approx(d_f) and preds.d_male[i] == pytest.approx(d_m)
        assert preds.gender[i] == ("female" if d_f < d_m else "male")


def test_mahalanobis_with_full_shrinkage_decides_like_the_paper(
    training_embeddings, lfw_embeddings
):
    x, _ = lfw_embeddings
    f, m = training_embeddings["female"], training_embeddings["male"]
    paper = CentroidSet.from_embeddings("g_60", f, m)
    spherical = CentroidSet.from_embeddings(
        "g_60-m", f, m, mode="mahalanobis", params={"shrinkage": 1.0}
    )
    assert list(spherical.classify(x).gender) == list(paper.classify(x).gender)
    ratio = spherical.classify(x).d_female / paper.classify(x).d_female
    assert np.allclose(ratio, ratio[0])  # a scaled identity covariance only rescales distances


def test_every_mode_beats_chance_on_lfw(mode_sets, lfw_embeddings):
    x, genders = lfw_embeddings
    for mode, cs in mode_sets.items():
        assert (cs.classify(x).gender == genders).mean() >= 0.75, mode
        assert 0 <= cs.calibration.ece <= 0.5


def test_unknown_mode_is_refused(training_embeddings):
    with pytest.raises(InvalidParameter, match="unknown mode"):
        CentroidSet.from_embeddings(
            "g_1", training_embeddings["female"], training_embeddings["male"], mode="svm"
        )


def test_a_set_of_six_images_per_gender_is_uncalibrated_and_every_answer_uncertain(
    training_embeddings, lfw_embeddings
):
    x, _ = lfw_embeddings
    f, m = training_embeddings["female"][:6], training_embeddings["male"][:6]
    for mode in ("centroid", "prototypes"):
        tiny = CentroidSet.from_embeddings("g_6", f, m, mode=mode)
        assert tiny.calibration.calibrated is False
        preds = tiny.classify(x)
        assert preds.uncertain.all() and (preds.confidence == 0.5).all()
        doc = tiny.to_doc()
        assert doc["calibration"]["calibrated"] is False
        assert CentroidSet.from_doc(doc).classify(x).uncertain.all()  # stored and read again
    big = CentroidSet.from_embeddings(
        "g_60", training_embeddings["female"], training_embeddings["male"]
    )
    assert big.calibration.calibrated and not big.classify(x).uncertain.all()


def test_a_tiny_set_stored_before_the_calibrated_field_is_read_as_uncalibrated(
    training_embeddings, lfw_embeddings
):
    x, _ = lfw_embeddings
    f, m = training_embeddings["female"][:6], training_embeddings["male"][:6]
    doc = CentroidSet.from_embeddings("g_6", f, m).to_doc()
    doc["calibration"] = {k: v for k, v in doc["calibration"].items() if k != "calibrated"}
    doc["calibration"].update(method="logistic_margin", a=40.0, b=0.0, uncertain_below=0.0)
    assert CentroidSet.from_doc(doc).classify(x).uncertain.all()  # 12 held-out faces: too few
