"""The `anfe` command end to end on real photos: build, predict, centroids, and its errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import LFW, UTKFACE

ANFE = [sys.executable, "-m", "centroids.cli"]


def anfe(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ANFE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def built_db(real_data, tmp_path_factory) -> str:
    uri = str(tmp_path_factory.mktemp("cli") / "db")
    done = anfe(
        "build", str(UTKFACE), "--sizes", "25,50", "--min-age", "18", "--seed", "0",
        "--db", uri, "--jobs", "2", "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "built g_25, g_50" in done.stdout
    return uri


@pytest.fixture(scope="module")
def held_out_photos(tmp_path_factory, lfw_rows) -> Path:
    """55 LFW photos per gender, one per person, in a folder of their own."""
    root = tmp_path_factory.mktemp("lfw-held-out")
    for gender in ("female", "male"):
        seen = set()
        rows = [r for r in lfw_rows if r["gender"] == gender]
        for row in rows[:: max(1, len(rows) // 200)]:
            if row["person"] in seen:
                continue
            seen.add(row["person"])
            (root / gender).mkdir(exist_ok=True)
            shutil.copy(LFW / row["path"], root / gender / Path(row["path"]).name)
            if len(seen) == 55:
                break
    return root


def test_build_then_predict_beats_chance_by_a_wide_margin(built_db, held_out_photos):
    done = anfe("predict", str(held_out_photos), "--json", "--db", built_db, "--centroids", "g_50")
    assert done.returncode == 0, done.stderr
    right = {"female": 0, "male": 0}
    total = {"female": 0, "male": 0}
    for line in done.stdout.splitlines():
        result = json.loads(line)
        truth = Path(result["path"]).parent.name
        assert result["centroids"] == "g_50"
        if not result["faces"]:
            continue
        centre = result["image"]["width"] / 2
        face = min(
            result["faces"], key=lambda f: abs((f["box"]["left"] + f["box"]["right"]) / 2 - centre)
        )
        assert set(face["distances"]) == {"female", "male"}
        total[truth] += 1
        right[truth] += face["gender"] == truth
    assert min(total.values()) >= 50 and sum(total.values()) >= 100
    balanced = (right["female"] / total["female"] + right["male"] / total["male"]) / 2
    assert balanced >= 0.85, (right, total)


def test_rerun_of_build_embeds_nothing(real_data, built_db):
    done = anfe(
        "build", str(UTKFACE), "--sizes", "25,50", "--min-age", "18", "--seed", "0",
        "--db", built_db, "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "embedded 0 new images" in done.stdout
    assert "unchanged g_25, g_50" in done.stdout


def test_centroids_list_and_show(built_db):
    listed = anfe("centroids", "list", "--db", built_db)
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["g_25", "g_50"]
    shown = anfe("centroids", "show", "g_25", "--db", built_db)
    doc = json.loads(shown.stdout)
    assert doc["per_gender"] == 25 and len(doc["vectors"]["female"]) == 128


def test_predict_prints_box_gender_distances_and_confidence(built_db, lfw_female):
    done = anfe("predict", str(lfw_female), "--db", built_db, "--centroids", "g_50")
    assert done.returncode == 0
    line = done.stdout.strip()
    assert "face 1 box=(" in line and " female " in line
    assert "d_female=" in line and "d_male=" in line and "confidence=" in line


def test_unknown_centroid_id_is_one_line_and_exit_4(built_db, lfw_female):
    done = anfe("predict", str(lfw_female), "--db", built_db, "--centroids", "g_404")
    assert done.returncode == 4
    assert done.stderr.strip() == "anfe: error: no centroid set with id 'g_404'"


def test_bad_image_is_reported_without_traceback(built_db, tmp_path):
    bad = tmp_path / "photo.jpg"
    bad.write_text("this is text")
    done = anfe("predict", str(bad), "--db", built_db)
    assert done.returncode == 3
    assert "Traceback" not in done.stdout + done.stderr
    assert "not a JPEG, PNG, WebP, BMP or GIF image" in done.stdout


def test_missing_path_and_unusable_database_are_clear_errors(tmp_path, lfw_female):
    done = anfe("predict", str(tmp_path / "nope.jpg"), "--db", str(tmp_path / "db"))
    assert done.returncode == 2 and "no such file or folder" in done.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = anfe("predict", str(lfw_female), "--db", str(blocker / "db"))
    assert done.returncode == 5
    assert done.stderr.startswith("anfe: error: database folder") and "Traceback" not in done.stderr


def test_build_on_a_missing_folder_is_exit_2(tmp_path):
    done = anfe("build", str(tmp_path / "nothing"), "--db", str(tmp_path / "db"))
    assert done.returncode == 2
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr


def test_every_subcommand_has_help_with_examples():
    top = anfe("--help")
    assert top.returncode == 0
    for command in ("build", "predict", "centroids"):
        done = anfe(command, "--help")
        assert done.returncode == 0 and "examples:" in done.stdout, command
