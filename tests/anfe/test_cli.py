"""The `anfe` command end to end on real photos: build, predict, centroids, and its errors."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ANFE, LFW, UTKFACE, anfe


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
    assert done.stderr.strip() == (
        "anfe: error: no centroid set with id 'g_404'; stored: g_25, g_50"
    )  # the stored sets, as HTTP's 404 lists them


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


def test_a_refused_download_is_exit_6_in_one_line(tmp_path):
    # PrivateAddress, a fetch error of the scraper, exits with its parent FetchError's code
    done = anfe(
        "scrape", "--facescrub", "http://127.0.0.1:9/facescrub_actors.txt",
        "--out", str(tmp_path / "out"), timeout=120,
    )  # fmt: skip
    assert done.returncode == 6
    assert done.stderr == (
        "anfe: error: 127.0.0.1 is the non-public address 127.0.0.1; refused "
        "(--allow-private-hosts allows it for a local mirror)\n"
    )
    assert done.stdout == "" and not (tmp_path / "out").exists()


def test_exit_code_table_covers_the_codes_it_spells_out_and_defaults_to_1():
    from anfe.app.errors import Unauthorized
    from anfe.centroids.errors import MissingDependency
    from anfe.cli import exit_code
    from anfe.scraper.errors import FetchError, HttpStatus, RobotsDisallowed, SeedError

    assert exit_code(SeedError("x")) == 2
    assert [exit_code(e) for e in (FetchError("x"), RobotsDisallowed("x"), HttpStatus("x", 404))] == [
        6, 6, 6,
    ]  # fmt: skip
    assert exit_code(MissingDependency("x")) == exit_code(Unauthorized("x")) == 1


def test_every_subcommand_has_help_with_examples():
    top = anfe("--help")
    assert top.returncode == 0
    for command in ("build", "predict", "centroids"):
        done = anfe(command, "--help")
        assert done.returncode == 0 and "examples:" in done.stdout, command


def test_own_subcommands_run_without_importing_the_other_packages_but_help_lists_them(tmp_path):
    code = (
        "import sys; from anfe.cli import main; "
        f"code = main(['-v', 'centroids', 'list', '--db', {str(tmp_path / 'db')!r}]); "
        "print(code, sorted(m for m in ('app', 'bench', 'scraper') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split("\n")[-2] == "0 []", done.stderr
    for args in (("--help",), ("-h", "build"), ("-v", "--help", "build")):
        top = anfe(*args)
        assert top.returncode == 0 and "serve" in top.stdout and "scrape" in top.stdout, args
    assert anfe("serve", "--help").returncode == 0


def test_version():
    done = anfe("--version")
    assert done.returncode == 0 and done.stdout.strip() == "anfe 0.1.0"


def test_every_option_of_every_subcommand_has_help():
    import argparse

    from anfe.cli import parser

    def walk(p: argparse.ArgumentParser, name: str):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield from walk(sub, f"{name} {sub_name}")
            else:
                yield name, action

    seen = list(walk(parser(), "anfe"))
    commands = {name for name, _ in seen}
    assert {"anfe serve", "anfe bench", "anfe scrape", "anfe clean", "anfe build"} <= commands
    missing = [
        f"{name} {'/'.join(a.option_strings) or a.dest}"
        for name, a in seen
        if not a.help or a.help == argparse.SUPPRESS
    ]
    assert not missing, missing


@pytest.mark.parametrize(
    "uri", ["postgres://localhost/x", "file:///tmp/x", "redis://localhost:6379/0"]
)
def test_unknown_database_scheme_is_exit_5_and_creates_nothing(tmp_path, uri):
    done = subprocess.run(
        [*ANFE, "centroids", "list", "--db", uri], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 5
    scheme = uri.split("://")[0]
    assert done.stderr == (
        f"anfe: error: unsupported database URI scheme '{scheme}://'; use mongodb://, "
        "mongodb+srv://, montydb:///path or a folder\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_options_are_refused_before_any_image_is_embedded(tmp_path, lfw_female):
    db = str(tmp_path / "db")
    for args, message in [
        (["build", str(UTKFACE), "--jobs", "0"], "--jobs must be at least 1, not 0"),
        (["build", str(UTKFACE), "--min-age", "-1"], "--min-age must be at least 0, not -1"),
        (["build", str(UTKFACE), "--mode", "foo"], "unknown mode 'foo'"),
        (["predict", str(lfw_female), "--max-faces", "0"], "--max-faces must be between 1 and 100"),
        (["build", str(UTKFACE), "--db", "postgres://localhost/x"], "unsupported database URI"),
    ]:
        done = anfe(*args, *(["--db", db] if "--db" not in args else []), "--no-progress"
                    if args[0] == "build" else "--json", timeout=120)  # fmt: skip
        assert done.returncode in (2, 5), (args, done.stdout, done.stderr)
        assert done.stderr.startswith("anfe: error: ") and message in done.stderr, args
        assert len(done.stderr.splitlines()) == 1 and done.stdout == "", args
    assert not (tmp_path / "db" / "anfe" / "embeddings.collection").exists()


def test_folder_with_a_failed_image_exits_3_with_a_summary(built_db, tmp_path, lfw_female):
    shutil.copy(lfw_female, tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_text("not a photo")
    done = anfe("predict", str(tmp_path), "--db", built_db, "--centroids", "g_50")
    assert done.returncode == 3
    assert done.stderr == "anfe: 1 of 2 images failed\n"
    assert "a.jpg: face 1 box=" in done.stdout and "b.jpg: error: not a JPEG" in done.stdout
    (tmp_path / "b.jpg").unlink()
    assert anfe("predict", str(tmp_path), "--db", built_db).returncode == 0


def test_predict_csv_has_one_row_per_face_and_per_failed_image(built_db, tmp_path, lfw_female):
    import csv

    shutil.copy(lfw_female, tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_text("not a photo")
    done = anfe("predict", str(tmp_path), "--csv", "--db", built_db, "--centroids", "g_50")
    assert done.returncode == 3
    rows = list(csv.DictReader(done.stdout.splitlines()))
    assert [Path(r["path"]).name for r in rows] == ["a.jpg", "b.jpg"]
    face, failed = rows
    assert face["face"] == "1" and face["gender"] == "female" and face["error_code"] == ""
    assert (int(face["top"]), int(face["right"]), int(face["bottom"]), int(face["left"])) == (
        80, 175, 187, 67,
    )  # fmt: skip
    assert abs(float(face["d_female"]) - float(face["d_male"])) == pytest.approx(
        float(face["margin"])
    )
    assert failed["error_code"] == "unsupported_media_type" and failed["gender"] == ""
    assert 0 <= float(face["age_under_13"]) < 0.5  # g_50 borrows the default's router
    assert failed["age_under_13"] == ""


def piped(
    command: list[str], reader: str, buffered: bool = True, stderr_too: bool = False
) -> subprocess.CompletedProcess:
    """``anfe COMMAND | READER`` in bash; anfe's exit status is the last line of stderr.

    ``buffered``: stdout block-buffered, as users run anfe (no ``PYTHONUNBUFFERED``);
    ``stderr_too``: anfe's stderr goes into the pipe as well (``2>&1``).
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    redirect = " 2>&1" if stderr_too else ""
    return subprocess.run(
        f"{shlex.join([*ANFE, *command])}{redirect} | {reader}; "
        'echo "status=${PIPESTATUS[0]}" >&2',
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, **({} if buffered else {"PYTHONUNBUFFERED": "1"})},
    )


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory) -> str:
    db = str(tmp_path_factory.mktemp("seeded") / "db")
    assert anfe("centroids", "seed", "--db", db).returncode == 0
    return db


def test_a_closed_output_pipe_ends_quietly(seeded_db):
    # the Mahalanobis set's JSON (~1 MB) overflows the pipe long before `head` has read it
    done = piped(["centroids", "show", "g_5000-mahalanobis", "--db", seeded_db], "head -1")
    assert done.stdout == "{\n"
    assert done.stderr == "status=141\n"


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
def test_predict_into_a_pipe_closed_before_its_first_line_ends_quietly(
    seeded_db, lfw_female, buffered
):
    # `true` has left long before the model is loaded and the first line written
    done = piped(["predict", str(lfw_female), "--json", "--db", seeded_db], "true", buffered)
    assert done.stderr == "status=141\n"


def test_an_error_after_output_to_a_closed_pipe_keeps_its_code_and_one_line(tmp_path):
    # the list's bad lines are reported on stdout (buffered, not yet written) before the error
    bad_list = tmp_path / "facescrub_actors.txt"
    bad_list.write_text("not a FaceScrub line\n")
    done = piped(["scrape", "--facescrub", str(bad_list), "--out", str(tmp_path / "o")], "true")
    errors = [line for line in done.stderr.splitlines() if " WARNING " not in line]
    assert errors == [
        "anfe: error: FaceScrub list 'facescrub_actors.txt' holds no valid line",
        "status=2",
    ]


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
def test_an_error_line_into_a_closed_pipe_keeps_its_code(tmp_path, buffered):
    # `anfe ... 2>&1 | true`: the error line itself meets the closed pipe
    args = ["predict", str(tmp_path / "nope.jpg"), "--db", str(tmp_path / "db")]
    done = piped(args, "true", buffered, stderr_too=True)
    assert done.stdout == "" and done.stderr == "status=2\n"


def test_serve_on_a_busy_port_fails_at_once_in_one_line(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = anfe("serve", "--port", str(port), "--db", str(tmp_path / "db"), timeout=120)
    assert done.returncode == 2
    assert done.stderr == (
        f"anfe: error: port {port} on 127.0.0.1 is in use; choose another with --port\n"
    )
    assert done.stdout == "" and not (tmp_path / "db").exists()


def test_missing_dlib_is_one_line_with_the_install_commands(tmp_path, lfw_female):
    code = (
        "import sys; sys.modules['dlib'] = None  # as if dlib-bin were not installed\n"
        "from anfe.cli import main\n"
        f"sys.exit(main(['predict', {str(lfw_female)!r}, '--db', {str(tmp_path / 'db')!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        "anfe: error: dlib not installed; run: pip install dlib-bin face_recognition_models "
        "'setuptools<81' && pip install --no-deps face_recognition==1.3.0\n"
    )
