"""`anfe bench --ages` run as a user runs it, as a subprocess, on a small draw of UTKFace crops.

The draw is one face of each race group, gender and band of the leave-one-group-out protocol
(bench/logo.py): 50 symlinks and their labels.csv in tmp_path, the fewest with which the router
and the child references of every held-out group can be fitted. Faces are found by HOG, as the
scored set's own faces were (the documented command, docs/results.md, has no --cropped), so the
bench and its --ages phase share one embedding per face.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from subprocess import CompletedProcess

import numpy as np
import pytest

from anfe.bench.logo import LOGO_BAND_NAMES, LOGO_BANDS, STRICTER_FROM, band_index
from anfe.centroids.builder import datasets
from anfe.centroids.builder.ages import set_settings
from anfe.centroids.builder.extract import embed_paths
from anfe.centroids.storage.store import Store
from tests.helpers import UTKFACE, anfe, grouped_draw, link, write_labels

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("real_data")]

# one face per band of the protocol (40+: 40 to 80; "100_..." files would come first by path)
CELLS = [(lo, 80 if hi is None else hi, 1) for lo, hi in LOGO_BANDS]
FIELDS = ["path", "gender", "age", "race"]
# one BLAS thread: on a busy 2-core machine OpenBLAS's two threads made the fits of --ages
# (eigh, lbfgs) about 3 times slower; the figures are the same
ENV = {"OMP_NUM_THREADS": "1"}


def _folder(root: Path, items: list[datasets.Item], fields: list[str], blank_race: int = 0) -> Path:
    """``root`` holding links to ``items`` under female/ and male/, and their labels.csv with
    ``fields``; the race of the first ``blank_race`` rows left empty."""
    rows = []
    for i, it in enumerate(items):
        rel = it.path.relative_to(UTKFACE).as_posix()
        link(it.path, root / rel)
        rows.append({"path": rel, "gender": it.gender, **it.extra})
        if i < blank_race:
            rows[-1]["race"] = ""
    write_labels(root, rows, fields)
    return root


def _bench_ages(train: Path, out: Path, db: Path) -> CompletedProcess:
    return anfe(
        "bench", "--train", str(train), "--test", str(train), "--sizes", "4", "--min-age", "18",
        "--baselines", "none", "--ages", "--jobs", "1", "--no-progress",
        "--db", str(db), "--out", str(out),
        env=ENV, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def drawn(real_data) -> list[datasets.Item]:
    return grouped_draw(datasets.read_dataset(UTKFACE), CELLS)


@dataclass
class Run:
    proc: CompletedProcess
    out: Path
    db: Path


@pytest.fixture(scope="module")
def run(drawn, tmp_path_factory) -> Run:
    base = tmp_path_factory.mktemp("bench-ages")
    train = _folder(base / "utkface", drawn, FIELDS)
    return Run(_bench_ages(train, base / "out", base / "db"), base / "out", base / "db")


@pytest.fixture(scope="module")
def results(run) -> dict:
    assert run.proc.returncode == 0, run.proc.stderr
    return json.loads((run.out / "results.json").read_text())


@pytest.fixture(scope="module")
def faces(run, results, drawn, default_set) -> list[datasets.Item]:
    """The drawn images in which HOG found exactly one face, read from the run's embedding cache
    (the run embedded every one: nothing is computed here)."""
    with Store(str(run.db)) as s:
        before = s.count_embeddings()
        embedded = embed_paths([it.path for it in drawn], set_settings(default_set), s, jobs=1,
                               progress=False)  # fmt: skip
        assert s.count_embeddings() == before
    return [it for it, e in zip(drawn, embedded, strict=True) if e.usable]


def _counts(faces: list[datasets.Item]) -> Counter:
    """Faces by (race, LOGO band, gender), by (race, band) and by race."""
    c: Counter = Counter()
    bands = band_index(np.array([int(it.extra["age"]) for it in faces]))
    for it, b in zip(faces, bands, strict=True):
        race, band = it.extra["race"], LOGO_BAND_NAMES[b]
        c[race, band, it.gender] += 1
        c[race, band] += 1
        c[race] += 1
    return c


def _tables(md: str, heading: str) -> list[list[list[str]]]:
    """The cells of every table in the ``## heading`` section of ``md``."""
    section = md.split("\n## " + heading, 1)[1].split("\n## ", 1)[0]
    return [
        [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()[2:]]
        for block in section.split("\n\n")
        if block.startswith("| ")
    ]


def test_bench_ages_exits_0_after_holding_out_each_group(run, drawn):
    assert run.proc.returncode == 0, run.proc.stderr
    assert "Traceback" not in run.proc.stderr
    races = sorted({it.extra["race"] for it in drawn})
    assert len(races) == 5 and len(drawn) == 5 * 2 * len(LOGO_BANDS)
    for race in races:
        assert f"ages, leave one group out: fitting without {race}\n" in run.proc.stdout
    assert (run.out / "results.md").is_file()


def test_each_group_is_scored_on_its_own_faces_of_both_sides_of_the_split(results, faces):
    counts = _counts(faces)
    ages = results["ages"]
    logo = ages["leave_one_group_out"]
    assert logo["column"] == "race" and logo["method"] == "child-set"
    assert len(faces) >= 0.9 * 5 * 2 * len(LOGO_BANDS)  # HOG finds nearly every crop's face
    assert logo["faces"] == len(faces) == ages["train_faces"] + ages["test_faces"]
    assert [g["group"] for g in logo["groups"]] == sorted({it.extra["race"] for it in faces})
    for g in logo["groups"]:
        race = g["group"]
        assert g["faces"] == counts[race]
        assert [r["band"] for r in g["age"]] == [*LOGO_BAND_NAMES, "all"]
        assert [r["n"] for r in g["age"]] == [
            *(counts[race, b] for b in LOGO_BAND_NAMES), counts[race],
        ]  # fmt: skip
        for r in g["age"]:
            assert (r["mae"] is not None) == (r["n"] > 0)  # null in results.json for no face
        for which in ("answers", "before"):
            assert [r["band"] for r in g[which]] == LOGO_BAND_NAMES
            for r in g[which]:
                for k in ("female", "male"):
                    assert r[k]["n"] == counts[race, r["band"], k]
                    assert r[k]["wrong_count"] <= r[k]["answered_count"] <= r[k]["n"]
        assert g["adults"]["n"] == counts[race, "18-39"] + counts[race, "40+"]
        assert g["children_4_12"] == {k: counts[race, "4-12", k] for k in ("female", "male")}
        assert 0 < g["chosen"]["mixed_from"] <= g["chosen"]["child_from"] <= 1
        assert [r["from"] for r in g["stricter"]] == [None, *STRICTER_FROM]
        for key, band in (("children_4_12", "4-12"), ("under_4", "0-3")):
            for k in ("female", "male"):
                cells = [r[f"{key}_{k}"] for r in g["stricter"]]
                assert {c["n"] for c in cells} == {counts[race, band, k]}
                answered = [c["answered"] for c in cells]  # stricter: never more answers
                assert answered == sorted(answered, reverse=True)
                assert all(c["wrong"] <= c["answered"] for c in cells)


def test_results_md_holds_the_leave_one_group_out_tables_of_the_run(run, results, faces):
    counts = _counts(faces)
    races = sorted({it.extra["race"] for it in faces})
    md = (run.out / "results.md").read_text()
    assert f"\n## Leave one group out (race; {len(faces)} faces, child-set)\n" in md
    age, answers, adults, stricter = _tables(md, "Leave one group out")
    assert [row[0] for row in age] == races
    for row in age:
        mae = row[1 : 1 + len(LOGO_BAND_NAMES)]
        assert [c != "-" for c in mae] == [counts[row[0], b] > 0 for b in LOGO_BAND_NAMES]
    assert [tuple(row[:3]) for row in answers] == list(
        product(races, ("policy", "before"), LOGO_BAND_NAMES)
    )
    for row in answers:
        race, band = row[0], row[2]
        assert [int(row[3]), int(row[6])] == [
            counts[race, band, "female"],
            counts[race, band, "male"],
        ]
    assert [tuple(row[:2]) for row in stricter] == list(
        product(races, ["policy", *(f"≥ {t:g}" for t in STRICTER_FROM)])
    )
    assert [(row[0], int(row[1])) for row in adults] == [
        (r, counts[r, "18-39"] + counts[r, "40+"]) for r in races
    ]


@pytest.mark.parametrize(
    ("fields", "blank_race"),
    [(["path", "gender", "age"], 0), (FIELDS, 1)],
    ids=["no race column", "one race value empty"],
)
def test_images_without_a_race_are_one_usage_error_before_any_work(
    drawn, tmp_path, fields, blank_race
):
    train = _folder(tmp_path / "utkface", drawn, fields, blank_race)
    proc = _bench_ages(train, tmp_path / "out", tmp_path / "db")
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2
    assert len(err) == 1 and "Traceback" not in proc.stderr
    lacking = drawn[:blank_race] or drawn
    first = min(lacking, key=lambda it: it.path.relative_to(UTKFACE).as_posix())
    assert err[0].startswith("anfe: error: --ages holds out each 'race' group in turn")
    assert f"{len(lacking)} of the {len(drawn)} images with an age have no 'race'" in err[0]
    assert f"(the first: {first.path.name})" in err[0]
    assert proc.stdout == "" and not (tmp_path / "out").exists()


def test_ages_without_the_train_folder_among_the_tests_is_refused_before_any_work(drawn, tmp_path):
    train = _folder(tmp_path / "utkface", drawn, FIELDS)
    other = _folder(tmp_path / "other", drawn, FIELDS)  # a test folder, not the train folder
    proc = anfe(
        "bench", "--train", str(train), "--test", str(other), "--sizes", "4",
        "--min-age", "18", "--ages", "--db", str(tmp_path / "db"), "--out", str(tmp_path / "out"),
        env=ENV, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "anfe: error: --ages needs the train folder among the --test folders"
    ]
    assert not (tmp_path / "out").exists()


def test_a_group_holding_all_the_boys_is_refused_before_any_work(drawn, tmp_path):
    """Without 'white', no boy under 18 would be left to fit the child references on."""
    kept = [it for it in drawn
            if not (it.gender == "male" and int(it.extra["age"]) < 18)
            or it.extra["race"] == "white"]  # fmt: skip
    train = _folder(tmp_path / "utkface", kept, FIELDS)
    proc = _bench_ages(train, tmp_path / "out", tmp_path / "db")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "without 'white' only 0 male image(s) under 18 are left" in line
    assert not (tmp_path / "out").exists()
