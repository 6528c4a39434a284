"""The `anfe` command as a new user meets it: wrong usage, missing databases, tiny sets, messages.

Every case runs the command as a subprocess, as a user would, and checks the one line it prints
and its exit code; none of them leaves a file where it was not asked to write one.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.helpers import ANFE, LFW, UTKFACE, anfe, read_labels


def run_in(folder: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``anfe ARGS`` run from ``folder`` with no ANFE_DB, as in a fresh shell."""
    environ = {k: v for k, v in os.environ.items() if k != "ANFE_DB"}
    return subprocess.run(
        [*ANFE, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        env={**environ, **(env or {})},
    )


def one_error_line(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("anfe: error: "), lines[0]
    assert "usage:" not in done.stderr and "Traceback" not in done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> str:
    db = str(tmp_path_factory.mktemp("usage") / "db")
    assert anfe("centroids", "seed", "--db", db).returncode == 0
    return db


@pytest.fixture(scope="module")
def tiny_db(real_data, tmp_path_factory) -> tuple[str, subprocess.CompletedProcess]:
    """A fresh database holding only sets built from 6 UTKFace adults per gender."""
    db = str(tmp_path_factory.mktemp("tiny") / "db")
    done = anfe(
        "build", str(UTKFACE), "--sizes", "6", "--min-age", "18", "--cropped",
        "--mode", "mahalanobis,prototypes", "--db", db, "--jobs", "1", "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return db, done


# -- 6: usage errors are one line, -v goes anywhere, nothing is silently ignored ---------------


@pytest.mark.parametrize(
    "args, expected",
    [
        (["predict"], "anfe: error: predict: the following arguments are required: path"),
        (["predict", "a.jpg", "--max-faces", "x"], "predict: argument --max-faces: invalid int"),
        (["centroids", "lists"], "centroids: argument action: invalid choice: 'lists'"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["centroids", "list", "extra"], "`anfe centroids list` takes no id, not 'extra'"),
        (["centroids", "list", "--data", "foo"], "--data: only for `anfe centroids fit-age`"),
        (["centroids", "seed", "--hold-out", "0.3"], "--hold-out: only for `anfe centroids"),
    ],
)
def test_wrong_usage_is_one_line_and_exit_2(tmp_path, args, expected):
    done = run_in(tmp_path, *args)
    assert done.returncode == 2
    assert expected in one_error_line(done)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_works_before_or_after_the_command(seeded, where):
    args = ["centroids", "list", "--db", seeded]
    done = anfe(*(["-v", *args] if where == "before" else [*args, "-v"]))
    assert done.returncode == 0, done.stderr
    assert "g_5000-mahalanobis" in done.stdout


# -- 11: centroids list is aligned; show says `id`, as HTTP does ---------------------------------


def test_centroids_list_columns_line_up_and_show_says_id(seeded):
    lines = anfe("centroids", "list", "--db", seeded).stdout.splitlines()
    assert [line.split()[0] for line in lines][-1] == "g_5000-mahalanobis"
    assert len({line.index("per_gender=") for line in lines}) == 1  # one column for all
    shown = json.loads(anfe("centroids", "show", "g_1000", "--db", seeded).stdout)
    assert shown["id"] == "g_1000" and "_id" not in shown


# -- 5: reading creates no database -------------------------------------------------------------


def test_predict_in_an_empty_folder_reads_the_shipped_sets_and_writes_nothing(tmp_path, lfw_female):
    done = run_in(tmp_path, "predict", str(lfw_female))
    assert done.returncode == 0, done.stderr
    assert " female " in done.stdout and "set=g_5000-mahalanobis" in done.stdout
    assert list(tmp_path.iterdir()) == []  # no ./.anfe/db


def test_predict_unknown_shipped_set_names_the_shipped_ones(tmp_path, lfw_female):
    done = run_in(tmp_path, "predict", str(lfw_female), "--centroids", "g_7")
    assert done.returncode == 4
    assert "shipped: g_1000, g_2000, g_5000, g_5000-mahalanobis" in one_error_line(done)
    assert list(tmp_path.iterdir()) == []


def test_centroids_list_of_a_missing_database_creates_nothing_and_says_how_to_seed(tmp_path):
    missing = tmp_path / "nonexistent"
    done = run_in(tmp_path, "centroids", "list", "--db", str(missing))
    assert done.returncode == 0, done.stderr
    assert "does not exist" in done.stdout
    assert f"anfe centroids seed --db {missing}" in done.stdout
    shown = run_in(tmp_path, "centroids", "show", "g_1000", "--db", str(missing))
    assert shown.returncode == 4 and "anfe centroids seed" in one_error_line(shown)
    assert not missing.exists() and list(tmp_path.iterdir()) == []


def test_unknown_set_of_a_database_lists_the_stored_ones(seeded):
    done = anfe("centroids", "show", "g_7", "--db", seeded)
    assert done.returncode == 4
    assert one_error_line(done) == (
        "anfe: error: no centroid set with id 'g_7'; "
        "stored: g_1000, g_2000, g_5000, g_5000-mahalanobis"
    )


# -- 2: --min-age on a folder without ages ------------------------------------------------------


def test_build_min_age_refuses_a_folder_without_ages(tmp_path, lfw_female, lfw_male):
    data = tmp_path / "photos"
    for gender, photo in (("female", lfw_female), ("male", lfw_male)):
        (data / gender).mkdir(parents=True)
        for n in range(2):
            (data / gender / f"{n}.jpg").write_bytes(photo.read_bytes())
    db = tmp_path / "db"
    done = run_in(tmp_path, "build", str(data), "--sizes", "2", "--min-age", "18", "--db", str(db))
    assert done.returncode == 2
    assert "--min-age needs ages" in one_error_line(done)
    assert not db.exists()


# -- 4: tiny sets are uncalibrated, every answer uncertain, and the output says which set -------


def test_tiny_sets_are_uncalibrated_with_every_answer_uncertain(tiny_db, tmp_path, lfw_female):
    db, built = tiny_db
    assert "anfe: warning: g_6-mahalanobis, g_6-prototypes uncalibrated" in built.stderr
    shown = json.loads(anfe("centroids", "show", "g_6-prototypes", "--db", db).stdout)
    assert shown["calibration"]["calibrated"] is False
    photos = tmp_path / "photos"
    photos.mkdir()
    rows = [r for r in read_labels(LFW)][:6]
    for row in rows:
        (photos / Path(row["path"]).name).write_bytes((LFW / row["path"]).read_bytes())
    done = anfe("predict", str(photos), "--json", "--db", db)
    assert done.returncode == 0, done.stderr
    faces = [f for line in done.stdout.splitlines() for f in json.loads(line)["faces"]]
    assert len(faces) >= 5
    assert all(f["uncertain"] and f["confidence"] == 0.5 for f in faces)
    # the default is not silently another set: the command names the one that answers
    assert "g_5000-mahalanobis is not in" in done.stderr
    assert "largest set g_6-prototypes answers" in done.stderr
    text = anfe("predict", str(lfw_female), "--db", db)
    assert "set=g_6-prototypes" in text.stdout and " uncertain" in text.stdout


# -- 9: folders, help -------------------------------------------------------------------------


def test_folder_prediction_skips_hidden_files_and_names_the_files_it_skips(
    seeded, tmp_path, lfw_female
):
    folder = tmp_path / "photos"
    (folder / ".thumbnails").mkdir(parents=True)
    for name in ("a.jpg", ".hidden.jpg", ".thumbnails/b.jpg", "scan.tiff", "noextension"):
        (folder / name).write_bytes(lfw_female.read_bytes())
    done = anfe("predict", str(folder), "--json", "--db", seeded)
    assert done.returncode == 0, done.stderr
    paths = [Path(json.loads(line)["path"]).name for line in done.stdout.splitlines()]
    assert paths == ["a.jpg"]
    assert "skipped 2 file(s) not named as JPEG, PNG, WebP, BMP or GIF images" in done.stderr
    assert "noextension" in done.stderr and "scan.tiff" in done.stderr


def test_help_shows_defaults_and_mentions_only_options_the_command_has():
    for command in ("predict", "serve"):
        text = anfe(command, "--help").stdout
        assert "--jitters" not in text, command
    assert "(default: bench-out)" in anfe("bench", "--help").stdout
    assert "(default: 800)" in anfe("build", "--help").stdout
    assert "(default: 40)" in anfe("clean", "--help").stdout
    scrape = " ".join(anfe("scrape", "--help").stdout.split())
    for default in ("(default: 1.0)", "(default: 3)", "(default: 20.0)", "(default: 15728640"):
        assert default in scrape
    centroids = anfe("centroids", "--help").stdout
    assert "list them (id, mode, size, source)" in " ".join(centroids.split())
    bench = anfe("bench", "--help").stdout
    ages = bench[
        bench.index("anfe bench --train ../shared/data/utkface --min-age 18 --sizes 1000") :
    ]
    assert ages.splitlines()[0].endswith("\\") and ages.splitlines()[1].endswith("\\")
    predict = " ".join(anfe("predict", "--help").stdout.split())
    assert "box=(top,right,bottom,left)" in predict


# -- 7: messages that name what is wrong ---------------------------------------------------------


def png_header(width: int, height: int) -> bytes:
    """A PNG of the given size, its pixels left out: the header alone says how large it is."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def test_a_huge_image_is_refused_with_its_size_and_both_limits(tmp_path):
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header(20000, 20000))
    done = run_in(tmp_path, "predict", str(huge))
    assert done.returncode == 3
    assert (
        "image is 20000x20000 pixels (400000000); the limits are 40000000 pixels and a longest "
        "side of 16384"
    ) in done.stdout


def test_an_unreachable_mongodb_is_one_short_line(tmp_path):
    done = run_in(tmp_path, "centroids", "list", "--db", "mongodb://127.0.0.1:9")
    assert done.returncode == 5
    line = one_error_line(done)
    assert "Connection refused" in line
    assert "Topology" not in line and len(line) < 300
