"""Age estimates, children's answers and the second detection pass, on real photos.

Children come from UTKFace's held-out side of the benchmark's split (seed 0, fraction 0.2), which
the shipped sets' age model and child policy were not fitted on; tight crops are cut from LFW
photos inside HOG's own box, as ``anfe bench --tight-crops`` does.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from fastapi.testclient import TestClient

from anfe.app import Settings, create_app
from anfe.bench import ages, tight
from anfe.bench.report_ages import ages_markdown, tight_markdown
from anfe.centroids.answers import classification
from anfe.centroids.builder import datasets
from anfe.centroids.builder.extract import embed_paths
from anfe.centroids.imaging import decoding
from anfe.centroids.model import children, fit_children
from anfe.centroids.model.centroid_set import CentroidSet
from anfe.centroids.model.fit_children import fit_age_and_children
from anfe.centroids.predict import predict_image
from anfe.centroids.storage import shipped
from anfe.centroids.storage.store import Store
from anfe.centroids.vision import faces
from anfe.centroids.vision.settings import EmbeddingSettings
from tests.helpers import LFW, UTKFACE, grouped_draw

pytestmark = pytest.mark.usefixtures("real_data")


def held_out(gender: str, lo: int, hi: int, n: int) -> list[datasets.Item]:
    """The first ``n`` UTKFace images of ``gender`` aged lo..hi on the held-out side (seed 0)."""
    items = [
        it for it in datasets.read_dataset(UTKFACE)
        if it.gender == gender and lo <= int(it.extra["age"]) <= hi
    ]  # fmt: skip
    return datasets.split(items, 0.2, 0)[1][:n]


def tight_crop(fraction: float) -> tuple[np.ndarray, str]:
    """The first LFW photo (by path) whose crop ``fraction`` inside its box HOG misses."""
    for it in datasets.read_dataset(LFW)[:40]:
        image = decoding.load_image(it.path)
        boxes = faces.detect(image)
        if len(boxes) == 1:
            crop = tight.crop_inside(image, boxes[0], fraction)
            if not faces.detect(crop):
                return crop, it.gender
    pytest.fail("no LFW photo among the first 40 gives a crop HOG misses")


def jpeg(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def test_every_face_gets_an_age_with_its_interval(default_set, lfw_female, lfw_male):
    for photo in (lfw_female, lfw_male):
        [face] = predict_image(photo.read_bytes(), default_set)["faces"]
        age = face["age"]
        assert 0 <= age["low"] <= age["value"] <= age["high"]
        assert 15 < age["value"] < 80  # LFW shows adult public figures
        assert face["detection"] == "first_pass"


def test_api_answers_carry_age_and_detection(tmp_path, lfw_male):
    uri = str(tmp_path / "db")
    with Store(uri) as s:
        shipped.seed(s)
    settings = Settings(db=uri, cpu_workers=1, seed=False, refresh_seconds=0)
    with TestClient(create_app(settings)) as client:
        body = client.post("/predict", files={"file": ("a.jpg", lfw_male.read_bytes())}).json()
        schema = client.get("/openapi.json").json()["components"]["schemas"]
    [face] = body["faces"]
    assert set(face["age"]) == {"value", "low", "high", "model", "under_13"}
    assert 0 <= face["age"]["under_13"] < 0.5  # an adult: routed as one
    assert "under_13" in schema["Age"]["properties"]
    assert face["age"]["model"] == shipped.DEFAULT_CENTROIDS
    assert face["detection"] == "first_pass"
    assert {"age", "detection"} <= set(schema["Face"]["properties"])


def test_young_boys_are_uncertain_or_right_under_the_shipped_default(default_set):
    boys = held_out("male", 4, 12, 24)
    x = np.vstack([faces.encode(im, faces.detect(im)[:1]) for im in map(decoding.load_image,
                   (it.path for it in boys))])  # fmt: skip
    adult_rule = CentroidSet.from_doc({**default_set.to_doc(), "children": None}).classify(x)
    policy = default_set.classify(x)
    wrong_before = np.sum((adult_rule.gender != "male") & ~adult_rule.uncertain)
    wrong_after = np.sum((policy.gender != "male") & ~policy.uncertain)
    assert wrong_before >= 4  # the adults' calibration answers boys "female", confidently
    assert wrong_after <= 2
    assert np.median(policy.age.value) < 15


def test_second_pass_finds_the_face_of_a_tight_crop_and_says_so(default_set):
    crop, gender = tight_crop(0.15)
    result = predict_image(jpeg(crop), default_set)
    [face] = result["faces"]
    assert face["detection"] == "second_pass"
    b = face["box"]
    h, w = crop.shape[:2]
    assert 0 <= b["top"] < b["bottom"] <= h and 0 <= b["left"] < b["right"] <= w
    assert (b["bottom"] - b["top"]) * (b["right"] - b["left"]) < h * w  # not the whole picture
    assert face["gender"] == gender


def test_second_pass_never_invents_a_face(lfw_female):
    image = decoding.load_image(lfw_female)
    blank = np.full_like(image, 128)
    assert faces.second_pass(blank)[0] == []
    result = predict_image(jpeg(blank), CentroidSet.from_doc(shipped.shipped_documents()[0]))
    assert result["faces"] == []


def test_age_model_and_child_policy_round_trip_through_the_store(db_uri, default_set):
    x = np.vstack(
        [faces.encode(im, faces.detect(im)) for im in
         map(decoding.load_image, (it.path for it in held_out("female", 5, 60, 6)))]
    )  # fmt: skip
    with Store(db_uri) as s:
        s.put_centroids(default_set.to_doc())
        back = CentroidSet.from_doc(s.get_centroids(default_set.id))
    a, b = default_set.classify(x), back.classify(x)
    assert np.allclose(a.age.value, b.age.value) and np.allclose(a.age.high, b.age.high)
    assert list(a.gender) == list(b.gender) and list(a.uncertain) == list(b.uncertain)
    assert back.children.method == default_set.children.method == "child-set"
    assert back.children.router is not None


@pytest.fixture(scope="module")
def aged_sample(tmp_path_factory) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings, ages, genders) of held-out UTKFace faces of every age band, both genders."""
    items = held_out("female", 1, 12, 25) + held_out("male", 1, 12, 25)
    for lo, hi in ((1, 3), (13, 17)):  # the router needs faces of every band
        items += held_out("female", lo, hi, 6) + held_out("male", lo, hi, 6)
    items += held_out("female", 25, 60, 25) + held_out("male", 25, 60, 25)
    settings = EmbeddingSettings(cropped=True)
    with Store(str(tmp_path_factory.mktemp("aged") / "db")) as s:
        emb = embed_paths([it.path for it in items], settings, s, jobs=1, progress=False)
    x = np.stack([e.vector for e in emb])
    age = np.array([int(it.extra["age"]) for it in items])
    gender = np.array([it.gender for it in items])
    return x, age, gender


@pytest.fixture(scope="module")
def grouped_sample(tmp_path_factory) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings, ages, genders, race) of 36 held-out UTKFace faces per race group, of every age
    band and both genders."""
    held = datasets.split(datasets.read_dataset(UTKFACE), 0.2, 0)[1]
    draw = grouped_draw(held, ((1, 3, 3), (4, 12, 6), (13, 17, 2), (18, 80, 7)))
    with Store(str(tmp_path_factory.mktemp("grouped") / "db")) as s:
        emb = embed_paths([it.path for it in draw], EmbeddingSettings(cropped=True), s, jobs=1,
                          progress=False)  # fmt: skip
    return (
        np.stack([e.vector for e in emb]),
        np.array([int(it.extra["age"]) for it in draw]),
        np.array([it.gender for it in draw]),
        np.array([it.extra["race"] for it in draw]),
    )


def test_router_thresholds_are_chosen_on_the_faces_the_policy_is_fitted_on(
    aged_sample, default_set
):
    x, age, gender = aged_sample
    adult_only = replace(default_set, age=None, children=None)
    policy = fit_age_and_children(adult_only, x, age, gender, routing="router").children
    router = policy.router
    pairs = [(r["adult_confidence"], r["young_confidence"]) for r in router.selection]
    assert pairs == [
        (t, q) for t in fit_children.ADULT_CONFIDENCES for q in fit_children.YOUNG_CONFIDENCES
    ]
    [chosen] = [
        r for r in router.selection
        if (r["adult_confidence"], r["young_confidence"])
        == (router.adult_confidence, router.young_confidence)
    ]  # fmt: skip
    kept = [r for r in router.selection if r["adults_within_bounds"]] or router.selection
    enough = [r for r in kept if r["children_answered"] >= fit_children.MIN_CHILDREN_ANSWERED]
    if enough:
        assert chosen in enough
        assert chosen["children_wrong_answers"] == min(r["children_wrong_answers"] for r in enough)
    else:
        assert chosen["children_answered"] == max(r["children_answered"] for r in kept)
    assert policy.rules[0].below == 4.0 and policy.rules[0].never_answers  # babies: uncertain
    back = children.Router.from_doc(router.to_doc())
    assert (back.adult_confidence, back.young_confidence) == (
        router.adult_confidence,
        router.young_confidence,
    )
    assert back.selection == router.selection and (back.band(x) == router.band(x)).all()


def test_faces_likely_under_four_are_uncertain_at_a_coin_toss(aged_sample, default_set):
    x, age, gender = aged_sample
    router = default_set.children.router
    assert router.young_below == 4.0 and router.young_confidence is not None
    preds = default_set.classify(x)
    young = router.probabilities(x)[:, 0] >= router.young_confidence
    assert young[age <= 3].mean() > 0.8  # most babies are caught by the router
    assert preds.uncertain[young].all()
    assert (preds.confidence[young] == children.YOUNG_CONFIDENCE).all()


def test_mixed_faces_are_answered_only_when_both_readings_agree(aged_sample, default_set):
    x, age, gender = aged_sample
    policy = default_set.children
    router = policy.router
    p = router.probabilities(x)
    u = p[:, 0] + p[:, 1]
    mixed = (u >= router.mixed_from) & (u < router.child_from)
    mixed &= p[:, 0] < router.young_confidence
    preds = default_set.classify(x)
    own = replace(default_set, age=None, children=None).classify(x)
    child_only = replace(
        default_set,
        children=replace(policy, router=replace(router, mixed_from=0.0, child_from=0.0)),
    ).classify(x)  # every face read as a child
    older = replace(
        default_set,
        children=replace(policy, router=replace(router, mixed_from=1.1, child_from=1.1)),
    ).classify(x)  # every face read as older
    answered = mixed & ~preds.uncertain
    assert (~child_only.uncertain[answered]).all() and (~older.uncertain[answered]).all()
    assert (child_only.gender[answered] == older.gender[answered]).all()
    assert (preds.gender[answered] == child_only.gender[answered]).all()
    assert (older.gender == np.where(p[:, 3] >= router.adult_confidence, own.gender,
                                     older.gender)).all()  # fmt: skip


def test_leave_one_group_out_protocol_on_a_small_draw(grouped_sample, default_set, monkeypatch):
    from anfe.bench import logo
    from anfe.bench.report_ages import logo_markdown

    for name, values in (("MIXED_FROM", (0.1, 0.3)), ("CHILD_FROM", (0.5, 0.9)),
                         ("AGREE_ADULT", (0.0, 0.65)), ("AGREE_YOUNG", (0.2,)),
                         ("TEEN_SURE", (0.85, children.ALWAYS)),
                         ("CHILD_SURE", (0.8, 0.9, children.ALWAYS))):  # fmt: skip
        monkeypatch.setattr(fit_children, name, values)  # a small grid: a quick test
    x, age, gender, race = grouped_sample
    result = logo.leave_one_group_out(default_set, x, age, gender, race, boot=50,
                                      log=lambda _: None)  # fmt: skip
    assert [g["group"] for g in result["groups"]] == sorted(set(race))
    for g in result["groups"]:
        assert sum(r["n"] for r in g["age"][:-1]) == g["faces"] == np.sum(race == g["group"])
        assert [r["band"] for r in g["age"]] == [*logo.LOGO_BAND_NAMES, "all"]
        for r in g["answers"]:
            for k in ("female", "male"):
                lo, hi = r[k]["answered_ci"]
                assert r[k]["n"] == 0 or lo <= r[k]["answered"] <= hi
                assert r[k]["wrong_count"] <= r[k]["answered_count"] <= r[k]["n"]
        chosen = g["chosen"]
        assert 0 < chosen["mixed_from"] <= chosen["child_from"] <= 1
        # stricter routings only take answers away, and the first row is the policy as scored
        policy, *stricter = g["stricter"]
        kids_4_12 = {k: g["answers"][1][k] for k in ("female", "male")}
        for k in ("female", "male"):
            assert policy[f"children_4_12_{k}"]["answered"] == kids_4_12[k]["answered_count"]
            assert policy[f"children_4_12_{k}"]["wrong"] == kids_4_12[k]["wrong_count"]
        for looser, stricter_row in zip(g["stricter"], stricter, strict=False):
            for key, cell in stricter_row.items():
                if isinstance(cell, dict):
                    assert cell["answered"] <= looser[key]["answered"]
                    assert cell["wrong"] <= looser[key]["wrong"]
            assert stricter_row["adults_uncertain_change"] >= looser["adults_uncertain_change"]
    result["column"] = "race"
    text = "\n".join(logo_markdown({"ages": {"leave_one_group_out": result}}))
    assert "## Leave one group out (race;" in text and "| 4-12 |" in text
    assert "| uncertain from |" in text and "| ≥ 0.05 |" in text


def test_the_routing_keeps_the_adults_of_every_group_within_bounds(
    grouped_sample, default_set, monkeypatch
):
    """choose_agreement bounds each group's adults, not only their pool (on the shipped router)."""
    from copy import deepcopy

    x, age, gender, race = grouped_sample
    policy = deepcopy(default_set.children)
    own = replace(default_set, age=None, children=None).classify(x)
    d_f, d_m = policy.reference.distances(x)
    p = policy.router.probabilities(x)

    def choose() -> tuple[dict, children.Router, list[children.BandRule]]:
        router, rules = deepcopy(policy.router), deepcopy(policy.rules)
        chosen = fit_children.choose_agreement(
            router, rules, p, d_m - d_f, own, age, gender, race, policy.max_wrong
        )
        return chosen, router, rules

    monkeypatch.setattr(fit_children, "MIN_GROUP_ADULTS", 10)  # 14 adults per group here
    chosen, router, rules = choose()
    answered = deepcopy(own)  # the chosen routing, applied: each group's adults within the worst
    children.answer_by_agreement(rules, router, p, d_m - d_f, answered)
    adults = age >= 18
    worst, pooled = chosen["adults_uncertain_change_worst_group"], chosen["adults_uncertain_change"]

    def rise(rows: np.ndarray) -> float:
        return float(np.mean(answered.uncertain[rows]) - np.mean(own.uncertain[rows]))

    assert max(rise(adults & (race == g)) for g in set(race)) == pytest.approx(worst)
    assert rise(adults) == pytest.approx(pooled)
    assert pooled <= worst + 1e-12 <= fit_children.FALLBACK_UNCERTAIN_SLACK + 1e-12
    monkeypatch.setattr(fit_children, "MIN_GROUP_ADULTS", 1000)  # no group counts: the pool
    chosen = choose()[0]
    assert chosen["adults_uncertain_change_worst_group"] == chosen["adults_uncertain_change"]


def test_age_bins_model_round_trips_and_gives_band_probabilities(aged_sample, default_set):
    from anfe.centroids.model.age import AgeBins, age_model_from_doc

    x, age, gender = aged_sample
    model = default_set.age
    assert isinstance(model, AgeBins)
    back = age_model_from_doc(model.to_doc())
    a, b = model.predict(x), back.predict(x)
    assert np.allclose(a.value, b.value) and np.allclose(a.low, b.low)
    assert (a.low <= a.value).all() and (a.value <= a.high).all()
    p = model.band_probabilities(x, [4.0, 13.0, 18.0])
    assert p.shape == (len(x), 4) and np.allclose(p.sum(axis=1), 1.0)
    assert np.mean(p[age <= 3, 0] > 0.5) > 0.7 and np.mean(p[age >= 25, 3] > 0.5) > 0.7


def test_bench_age_and_tight_crop_tables_on_a_small_sample(aged_sample, default_set):
    x, age, gender = aged_sample
    train, test = np.arange(len(x)) % 2 == 0, np.arange(len(x)) % 2 == 1
    result = ages.score(
        default_set, (x[train], age[train], gender[train]), (x[test], age[test], gender[test]),
        methods=["calibrate", "abstain"],
    )  # fmt: skip
    assert [r["band"] for r in result["age_errors"]] == ["0-3", "4-12", "13-17", "18+", "all"]
    assert result["age_errors"][-1]["n"] == test.sum()
    names = [p["name"] for p in result["policies"]]
    assert names[0] == "before" and "calibrate < 4,13,18" in names
    assert "calibrate < 4,13,18, routed by age" in names
    for p in result["policies"]:
        assert sum(b["n"] for b in p["bands"]) == test.sum()
    abstain = result["policies"][-1]
    assert abstain["bands"][1]["answered"] < result["policies"][0]["bands"][1]["answered"]
    text = "\n".join(ages_markdown({"ages": {**result, "centroid_id": default_set.id}}))
    assert "| 4-12 |" in text and "ECE all ages" in text

    lfw = datasets.read_dataset(LFW)[:6]
    boxes = [faces.detect(decoding.load_image(it.path)) for it in lfw]
    jobs = [tight.CropJob(str(it.path), b[0], 0.15) for it, b in zip(lfw, boxes, strict=True)]
    records = tight.run_jobs(jobs, EmbeddingSettings(), 1)
    summary = tight.summarise(records, [it.gender for it in lfw], default_set)
    assert summary["images"] == 6
    assert summary["found_first"] + summary["found_second"] <= 6
    assert summary["found_second"] >= 1 and summary["second_pass_runs"] >= 1
    text = "\n".join(tight_markdown({"tight_crops": {
        "centroid_id": default_set.id, "tests": {"lfw": {"0.15": summary}}}}))  # fmt: skip
    assert "cropped 0.15 inside" in text


def test_seeding_replaces_an_older_seeded_copy_but_not_a_rebuilt_set(db_uri):
    docs = {d["_id"]: d for d in shipped.shipped_documents()}
    old = {k: v for k, v in docs["g_1000"].items() if k not in ("age", "children")}
    rebuilt = {**old, "_id": "g_2000", "created_at": "2026-12-01T00:00:00+00:00"}
    with Store(db_uri) as s:
        s.put_centroids(old)
        s.put_centroids(rebuilt)
        added = shipped.seed(s)
        assert "g_1000" in added and "g_2000" not in added
        assert "age" in s.get_centroids("g_1000")
        assert "age" not in s.get_centroids("g_2000")
        no_router = {**docs["g_5000"], "children": {**docs["g_5000"]["children"], "router": None}}
        del no_router["children"]["router"]  # as seeded by the release that routed by age
        s.put_centroids(no_router)
        assert shipped.seed(s) == ["g_5000"]
        assert "router" in s.get_centroids("g_5000")["children"]
        router = dict(docs["g_5000"]["children"]["router"])
        for key in ("young_below", "young_confidence"):
            del router[key]  # as seeded by the release without the young gate
        s.put_centroids(
            {**docs["g_5000"], "children": {**docs["g_5000"]["children"], "router": router}}
        )
        assert shipped.seed(s) == ["g_5000"]
        assert s.get_centroids("g_5000")["children"]["router"]["young_below"] == 4.0
        assert shipped.seed(s) == []


def test_a_set_built_without_an_age_model_answers_every_face_with_the_default_age_model(
    training_db, tmp_path
):
    """g_60, built by `anfe build`'s code without fit-age, borrows the shipped default's model."""
    with Store(training_db) as s:
        assert "age" not in s.get_centroids("g_60")
        g60 = shipped.load_centroid_set(s, "g_60")
    assert g60.age_from == shipped.DEFAULT_CENTROIDS and g60.children.method == "abstain"
    babies = held_out("female", 1, 2, 3) + held_out("male", 1, 2, 3)
    adults = held_out("female", 30, 50, 3) + held_out("male", 30, 50, 3)
    own = CentroidSet.from_doc({**g60.to_doc(), "age": None, "children": None})
    for it in babies + adults:
        [face] = predict_image(it.path.read_bytes(), g60)["faces"]
        age = face["age"]
        assert age["model"] == shipped.DEFAULT_CENTROIDS
        assert 0 <= age["low"] <= age["value"] <= age["high"]
        [mine] = predict_image(it.path.read_bytes(), own)["faces"]
        assert mine["age"] is None and face["gender"] == mine["gender"]
        if it in babies:
            assert age["value"] < 10 and face["uncertain"]  # routed to a child band: abstains
        else:  # the age bins pull adults younger (docs/results.md, "Leave one group out")
            assert age["value"] > 15 and age["high"] > 18

    uri = str(tmp_path / "db")  # the service: a database holding only the built set
    with Store(training_db) as s, Store(uri) as t:
        t.put_centroids(s.get_centroids("g_60"))
    settings = Settings(db=uri, cpu_workers=1, seed=False, refresh_seconds=0)
    with TestClient(create_app(settings)) as client:
        body = client.post(
            "/predict?centroids=g_60", files={"file": ("a.jpg", babies[0].path.read_bytes())}
        ).json()
    [face] = body["faces"]
    assert face["age"]["model"] == shipped.DEFAULT_CENTROIDS and face["uncertain"]


def test_children_are_routed_by_the_router_stored_with_the_policy(default_set):
    router = default_set.children.router
    assert router is not None and router.edges == [r.below for r in default_set.children.rules]
    boys = held_out("male", 1, 2, 4)
    men = held_out("male", 30, 50, 4)
    x = np.vstack([faces.encode(im, faces.detect(im)[:1]) for im in map(decoding.load_image,
                   (it.path for it in boys + men))])  # fmt: skip
    p = router.probabilities(x)
    under_13 = p[:, 0] + p[:, 1]
    assert (under_13[:4] >= router.child_from).all() and (under_13[4:] < router.mixed_from).all()
    assert np.allclose(p.sum(axis=1), 1.0)
    # every answer says by what probability it was routed, and a face routed from the mixed zone
    # on is never a confident answer of the set's adults (the shipped child rules never answer)
    answers = [classification(default_set.classify(x), i) for i in range(len(x))]
    assert np.allclose([a["age"]["under_13"] for a in answers], under_13)
    assert all(a["uncertain"] for a, u in zip(answers, under_13, strict=True)
               if u >= router.mixed_from)  # fmt: skip


def test_second_pass_encodings_are_compared_on_photos_outside_the_bench_draw(capsys):
    from anfe.bench import second_pass

    assert second_pass.main(["--test", str(LFW), "--skip", "500", "--per-gender", "4",
                             "--fractions", "0.15", "--jobs", "1"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "(photos 501 to 504 of each gender" in out
    rows = [line for line in out.splitlines() if line.startswith("| 0.15 inside | second pass")]
    assert [r.split(" | ")[2] for r in rows] == list(second_pass.WAYS)
    assert len({r.split(" | ")[3] for r in rows}) == 1  # every way scores the same faces
    [paddings] = [line for line in out.splitlines() if line.startswith("| 0.15 inside | ")
                  and line.count("|") == len(tight.PADDINGS) + 3]  # fmt: skip
    missed, *found = (int(c) for c in paddings.strip("| ").split(" | ")[1:])
    assert missed >= int(rows[0].split(" | ")[3]) and all(0 <= n <= missed for n in found)
    assert found[-1] >= int(rows[0].split(" | ")[3])  # the shipped padding found those faces
