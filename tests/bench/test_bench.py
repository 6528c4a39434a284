"""`anfe bench` end to end on small real subsets: UTKFace crops to train, LFW and UTKFace to test.

The train folder holds 16 UTKFace adults per gender, one of the women being an LFW photo of
Ai Sugiyama filed under her name; the FaceScrub-layout test set holds another photo of her, so
the person-overlap check has something to catch. All fixtures are symlinks made in tmp_path.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from anfe.bench.report import FILES
from anfe.cli import main
from tests.helpers import LFW, UTKFACE, link, write_labels

SHARED_PERSON = "Ai_Sugiyama"
PER_GENDER_TEST = 10

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("real_data")]


def _utk(utk_rows, gender: str, adult: bool, start: int, n: int) -> list[dict[str, str]]:
    rows = [
        r
        for r in utk_rows
        if r["gender"] == gender and (int(r["age"]) >= 18) == adult and "/" in r["path"]
    ]
    return rows[start::97][:n]  # spread over the sorted list: several ages and races


@pytest.fixture(scope="module")
def folders(tmp_path_factory, utk_rows, lfw_rows) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bench-data")
    train, lfw, utk = root / "train", root / "lfw", root / "utk"
    train_rows = _utk(utk_rows, "female", True, 0, 15) + _utk(utk_rows, "male", True, 0, 16)
    for r in train_rows:
        link(UTKFACE / r["path"], train / r["path"])
    link(
        LFW / f"actresses/{SHARED_PERSON}/{SHARED_PERSON}_0001.jpg",
        train / f"female/{SHARED_PERSON}/{SHARED_PERSON}_0001.jpg",
    )
    used = {r["path"] for r in train_rows}
    test_rows = []
    for g in ("female", "male"):
        adults = [r for r in _utk(utk_rows, g, True, 40, 12) if r["path"] not in used][:7]
        test_rows += adults + _utk(utk_rows, g, False, 3, PER_GENDER_TEST - len(adults))
    for r in test_rows:
        link(UTKFACE / r["path"], utk / r["path"])
    write_labels(utk, test_rows, ["path", "gender", "age", "race"])
    firsts = {}
    for r in lfw_rows:
        if r["person"] != SHARED_PERSON:
            firsts.setdefault((r["gender"], r["person"]), r)
    picked = [LFW / f"actresses/{SHARED_PERSON}/{SHARED_PERSON}_0002.jpg"]
    for g, n in (("female", PER_GENDER_TEST - 1), ("male", PER_GENDER_TEST)):
        picked += [LFW / r["path"] for (gg, _), r in firsts.items() if gg == g][:n]
    for src in picked:
        link(src, lfw / src.relative_to(LFW))
    return {"train": train, "lfw": lfw, "utk": utk}


def _bench(folders, db: str, out: Path) -> list[str]:
    return [
        "bench", "--train", str(folders["train"]), "--cropped",
        "--test", str(folders["lfw"]), "--test", str(folders["utk"]), "--test-cropped",
        "--sizes", "8,16", "--seed", "3", "--mask", "--jobs", "2", "--no-progress",
        "--db", db, "--out", str(out),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def runs(folders, tmp_path_factory):
    """The benchmark run twice on one database: the second run finds every embedding cached."""
    base = tmp_path_factory.mktemp("bench-run")
    db = str(base / "db")
    codes = [main(_bench(folders, db, base / "out1")), main(_bench(folders, db, base / "out2"))]
    return {"codes": codes, "out1": base / "out1", "out2": base / "out2", "db": db}


@pytest.fixture(scope="module")
def results(runs) -> dict:
    return json.loads((runs["out1"] / "results.json").read_text())


def test_bench_writes_all_four_outputs(runs):
    assert runs["codes"] == [0, 0]
    for name in FILES:
        assert (runs["out1"] / name).stat().st_size > 0
    for png in ("accuracy_vs_size.png", "distances.png", "mask_examples.png"):
        with Image.open(runs["out1"] / png) as img:
            assert img.format == "PNG" and img.width > 100


def test_counts_add_up_to_the_test_set_size(results):
    assert [t["layout"] for t in results["tests"]] == ["facescrub", "gender_folders"]
    for t in results["tests"]:
        c = t["counts"]
        assert c["images"] == 2 * PER_GENDER_TEST
        assert c["scored"] + c["no_face"] + c["several_faces"] + c["unreadable"] == c["images"]
        assert [e["per_gender"] for e in t["sizes"]] == [8, 16]
        for e in t["sizes"]:
            s = e["scores"]
            assert s["tf"] + s["ff"] + s["tm"] + s["fm"] == s["n"] == c["scored"]
            assert s["right"] + s["wrong"] == s["n"]
            assert s["right"] == s["tf"] + s["tm"]
            assert e["masked"]["scores"]["n"] == c["scored"]
            assert sum(f["n"] for f in e["masked"]["by_fill"].values()) == c["scored"]
        best = max(e["scores"]["balanced_accuracy"] for e in t["sizes"])
        assert t["best_size"]["balanced_accuracy"] == best
        hist = t["distance_histogram"]
        assert sum(hist["right"]) + sum(hist["wrong"]) == c["scored"]


def test_nearest_centroid_row_agrees_with_the_stored_centroid_set(results):
    for t in results["tests"]:
        rows = t["methods"]["16"]
        assert [r["method"] for r in rows] == [
            "nearest_centroid", "logreg", "linear_svm", "rbf_svm", "knn_cosine",
        ]  # fmt: skip
        stored = t["sizes"][-1]["scores"]
        first = rows[0]["scores"]
        assert [first[k] for k in ("tf", "ff", "tm", "fm")] == [
            stored[k] for k in ("tf", "ff", "tm", "fm")
        ]
        for r in rows:
            assert r["fit_seconds"] >= 0 and r["predict_seconds"] >= 0
            assert r["scores"]["n"] == t["counts"]["scored"]


def test_group_breakdown_covers_every_scored_utkface_face(results):
    utk = results["tests"][1]
    groups = utk["sizes"][-1]["groups"]
    assert set(groups) == {"age", "race"}
    assert "0-17" in groups["age"]["groups"]
    for b in groups.values():
        assert sum(g["n"] for g in b["groups"].values()) == utk["counts"]["scored"]
    assert results["tests"][0]["sizes"][-1]["groups"] == {}  # LFW has no race or age


def test_overlap_check_catches_the_person_in_both_sets(results, runs):
    lfw, utk = results["tests"]
    assert lfw["overlap"]["known"] is True
    assert lfw["overlap"]["persons"] == 1
    assert lfw["overlap"]["examples"] == ["ai sugiyama"]
    assert lfw["overlap"]["test_images_of_them"] == 1
    assert utk["overlap"]["known"] is False
    assert (
        "Person overlap with the train sample (by name): 1 persons (ai sugiyama)"
        in (runs["out1"] / "results.md").read_text()
    )


def _md_table(md: str, heading: str) -> list[list[str]]:
    block = md.split(heading, 1)[1].split("\n\n", 2)[1]
    return [
        [c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()[2:] if line
    ]


def test_markdown_tables_agree_with_the_json(runs, results):
    md = (runs["out1"] / "results.md").read_text()
    sections = re.split(r"^## Test set: ", md, flags=re.M)[1:]
    assert len(sections) == len(results["tests"])
    for section, t in zip(sections, results["tests"], strict=True):
        rows = _md_table(section, "### Accuracy against centroid size")
        assert len(rows) == len(t["sizes"])
        for row, e in zip(rows, t["sizes"], strict=True):
            s = e["scores"]
            assert row[0] == e["centroid_id"]
            assert float(row[1]) == pytest.approx(100 * s["accuracy_female"], abs=0.006)
            assert float(row[2]) == pytest.approx(100 * s["accuracy_male"], abs=0.006)
            assert [int(x) for x in row[5:10]] == [s["tf"], s["ff"], s["tm"], s["fm"], s["n"]]
        methods = _md_table(section, "### Classifiers on the same embeddings")
        for row, r in zip(methods, t["methods"]["16"], strict=True):
            assert row[0] == r["label"]
            assert float(row[6]) == pytest.approx(100 * r["scores"]["balanced_accuracy"], abs=0.006)


def test_markdown_says_what_tf_ff_tm_fm_mean(runs):
    md = (runs["out1"] / "results.md").read_text()
    legend = md.index("TF: true female (a woman called female)")
    assert "FF: false female" in md and "TM: true male" in md and "FM: false male" in md
    assert legend < md.index("| centroids | women % |")  # before the first table using them


@pytest.mark.parametrize("sizes", [[3, 6], [8, 16], [100, 300, 1000]])
def test_accuracy_plot_labels_the_sizes_and_no_other_tick(sizes):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from anfe.bench.plots import _plot_accuracy

    scores = {"accuracy_female": 0.9, "accuracy_male": 0.8}  # any numbers: only ticks are read
    t = {"name": "lfw", "sizes": [{"per_gender": n, "scores": scores} for n in sizes]}
    fig, ax = plt.subplots()
    try:
        _plot_accuracy(ax, t)
        fig.canvas.draw()
        labels = [x.get_text() for x in ax.get_xticklabels() + ax.get_xticklabels(minor=True)]
        assert [x for x in labels if x] == [str(n) for n in sizes]
    finally:
        plt.close(fig)


def test_rerun_recomputes_no_embedding_and_gives_the_same_scores(runs, results):
    second = json.loads((runs["out2"] / "results.json").read_text())
    assert results["embedded_new"] > 0
    assert second["embedded_new"] == 0
    assert second["train"]["reused"] == ["g_8", "g_16"]
    for a, b in zip(results["tests"], second["tests"], strict=True):
        assert [e["scores"] for e in a["sizes"]] == [e["scores"] for e in b["sizes"]]


def test_missing_test_folder_is_one_clear_error(tmp_path, folders, capsys):
    code = main(
        ["bench", "--train", str(folders["train"]), "--test", str(tmp_path / "nope"),
         "--db", str(tmp_path / "db"), "--out", str(tmp_path / "out"), "--no-progress"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "does not exist" in err[0]
    assert not (tmp_path / "out").exists()


def test_bad_sizes_are_refused_before_any_work(tmp_path, folders, capsys):
    code = main(
        ["bench", "--train", str(folders["train"]), "--test", str(folders["lfw"]),
         "--sizes", "10,abc", "--db", str(tmp_path / "db"), "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert code == 2
    assert "not a whole number" in capsys.readouterr().err


MODES = ["centroid", "prototypes", "mahalanobis"]


@pytest.fixture(scope="module")
def modes_run(runs, folders):
    """The bench with --modes, adult test faces only, on the cached database of ``runs``."""
    out = Path(runs["db"]).parent / "out-modes"
    args = _bench(folders, runs["db"], out)
    args.remove("--mask")
    args += ["--modes", ",".join(MODES), "--k", "2", "--test-min-age", "18"]
    code = main(args)
    return {"code": code, "out": out, "results": json.loads((out / "results.json").read_text())}


def test_modes_are_stored_and_scored_next_to_the_baselines(modes_run):
    assert modes_run["code"] == 0
    results = modes_run["results"]
    assert results["train"]["modes"] == MODES
    for t in results["tests"]:
        modes = t["modes"]["16"]
        assert [m["mode"] for m in modes] == MODES
        assert [m["centroid_id"] for m in modes] == ["g_16", "g_16-prototypes", "g_16-mahalanobis"]
        assert modes[1]["params"]["k"] == 2
        paper = next(r for r in t["methods"]["16"] if r["method"] == "nearest_centroid")
        assert modes[0]["scores"]["balanced_accuracy"] == paper["scores"]["balanced_accuracy"]
        for row in modes + t["methods"]["16"]:
            b = row["balanced"]
            assert b["low"] <= b["value"] <= b["high"]
        for m in modes:
            assert sum(m["reliability"]["n"]) == t["counts"]["scored"]
            assert [r["faces_set_aside"] for r in m["risk_coverage"]][0] == 0
            assert m["time"]["single_ms"] > 0
            assert 0 <= m["calibration"]["test_ece"] <= 0.5
    lfw, utk = results["tests"]
    assert lfw["modes"]["16"][0]["balanced"]["unit"] == "person"
    assert utk["modes"]["16"][0]["balanced"]["unit"] == "image"


def test_test_min_age_leaves_out_the_children(modes_run, results):
    utk = modes_run["results"]["tests"][1]
    ages = utk["modes"]["16"][0]["groups_ci"]["age"]["groups"]
    assert "0-17" not in ages
    assert utk["counts"]["images"] < results["tests"][1]["counts"]["images"]


def test_modes_section_and_reliability_plot_are_written(modes_run):
    md = (modes_run["out"] / "results.md").read_text()
    assert "## Centroid modes and baselines: lfw (g_16 sample)" in md
    assert "## Targets of the centroid modes" in md
    assert "`g_16-mahalanobis`" in md
    with Image.open(modes_run["out"] / "reliability.png") as img:
        assert img.format == "PNG" and img.width > 100


def test_unknown_mode_is_refused_before_any_work(tmp_path, folders, capsys):
    code = main(
        ["bench", "--train", str(folders["train"]), "--test", str(folders["lfw"]),
         "--modes", "centroid,median", "--db", str(tmp_path / "db"),
         "--out", str(tmp_path / "out"), "--no-progress"]
    )  # fmt: skip
    assert code == 2
    assert "unknown mode 'median'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_balance_by_a_column_no_label_has_is_one_clear_error(tmp_path, folders, capsys):
    code = main(
        ["bench", "--train", str(folders["train"]), "--cropped", "--test", str(folders["lfw"]),
         "--modes", "centroid,mahalanobis", "--balance-by", "race", "--sizes", "8",
         "--db", str(tmp_path / "db"), "--out", str(tmp_path / "out"), "--no-progress"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "no image has a 'race' column" in err[0]
    assert not (tmp_path / "out").exists()
