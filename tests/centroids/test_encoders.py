"""Either encoder, the same results: ``anfe build`` and ``anfe predict`` with ``--encoder onnx``
and ``--encoder dlib`` on real photos store the same centroids and give the same answers.

(The encoder alone, face by face against dlib, is checked in ``test_onnx_encoder.py``.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from anfe.centroids import vectors
from anfe.centroids.errors import InvalidParameter
from anfe.centroids.storage.store import Store
from anfe.centroids.vision import encoders
from anfe.centroids.vision.settings import EmbeddingSettings
from tests.helpers import LFW, UTKFACE, anfe, free_port

ENCODERS = ("onnx", "dlib")
CENTROID_TOLERANCE = 1e-5  # every component of every stored centroid
DISTANCE_TOLERANCE = 1e-5
PER_GENDER = 15


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory, utk_rows) -> Path:
    """UTKFace adult crops, a few more per gender than a set needs."""
    root = tmp_path_factory.mktemp("utk-small")
    for gender in ("female", "male"):
        rows = [r for r in utk_rows if r["gender"] == gender and int(r["age"]) >= 18]
        (root / gender).mkdir()
        for row in rows[:: len(rows) // (PER_GENDER + 3)][: PER_GENDER + 3]:
            shutil.copy(UTKFACE / row["path"], root / gender / Path(row["path"]).name)
    return root


@pytest.fixture(scope="module")
def built(small_dataset, tmp_path_factory) -> dict[str, str]:
    """One database per encoder, each holding g_15 and g_15-mahalanobis built by that encoder."""
    uris = {}
    for encoder in ENCODERS:
        uri = str(tmp_path_factory.mktemp(f"built-{encoder}") / "db")
        done = anfe(
            "build", str(small_dataset), "--cropped", "--sizes", str(PER_GENDER),
            "--mode", "centroid,mahalanobis", "--encoder", encoder, "--jobs", "1",
            "--no-progress", "--db", uri,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        uris[encoder] = uri
    return uris


def _docs(uri: str) -> dict[str, dict]:
    with Store(uri) as s:
        return {d["_id"]: d for d in s.list_centroids(with_vectors=True)}


def test_build_with_either_encoder_stores_the_same_centroids(built):
    onnx, dlib = _docs(built["onnx"]), _docs(built["dlib"])
    ids = [f"g_{PER_GENDER}", f"g_{PER_GENDER}-mahalanobis"]
    assert sorted(onnx) == sorted(dlib) == sorted(ids)
    for cid in ids:
        a, b = onnx[cid], dlib[cid]
        assert a["source"]["sample_sha256"] == b["source"]["sample_sha256"]  # same faces drawn
        assert a["embedding"] == b["embedding"]  # the document does not name the encoder
        for gender in ("female", "male"):
            diff = np.abs(
                vectors.unpack(a["vectors"][gender]) - vectors.unpack(b["vectors"][gender])
            )
            assert diff.max() <= CENTROID_TOLERANCE, f"{cid} {gender}: {diff.max():.3g}"


def test_predict_gives_the_same_answers_with_either_encoder(built, lfw_rows, tmp_path):
    for row in lfw_rows[::400][:12]:
        shutil.copy(LFW / row["path"], tmp_path / Path(row["path"]).name)
    answers = {}
    for encoder in ENCODERS:
        done = anfe("predict", str(tmp_path), "--json", "--encoder", encoder,
                    "--db", built["onnx"], "--centroids", f"g_{PER_GENDER}")  # fmt: skip
        assert done.returncode == 0, done.stderr
        answers[encoder] = [json.loads(line) for line in done.stdout.splitlines()]
    faces = 0
    for ours, theirs in zip(answers["onnx"], answers["dlib"], strict=True):
        assert ours["path"] == theirs["path"]
        assert len(ours["faces"]) == len(theirs["faces"])
        for a, b in zip(ours["faces"], theirs["faces"], strict=True):
            faces += 1
            assert (a["box"], a["gender"], a["uncertain"]) == (
                b["box"],
                b["gender"],
                b["uncertain"],
            )
            for side in ("female", "male"):
                assert a["distances"][side] == pytest.approx(
                    b["distances"][side], abs=DISTANCE_TOLERANCE
                )
    assert faces >= 10


def test_embedding_cache_is_shared_by_the_encoders():
    onnx, dlib = EmbeddingSettings(encoder="onnx"), EmbeddingSettings(encoder="dlib")
    assert onnx.key() == dlib.key() and onnx.describe() == dlib.describe()


def test_jitters_run_dlibs_encoder():
    assert encoders.used_for("onnx", 1) == "onnx"
    assert encoders.used_for("onnx", 2) == "dlib"


def test_anfe_encoder_variable_sets_the_default(monkeypatch):
    monkeypatch.setenv("ANFE_ENCODER", "dlib")
    assert EmbeddingSettings().encoder == "dlib"
    monkeypatch.setenv("ANFE_ENCODER", "tensorflow")
    with pytest.raises(InvalidParameter, match="ANFE_ENCODER='tensorflow': the encoder must be"):
        EmbeddingSettings()


def test_unknown_encoder_is_one_line_and_exit_2(lfw_female):
    done = anfe("predict", str(lfw_female), env={"ANFE_ENCODER": "tensorflow"})
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "anfe: error: ANFE_ENCODER='tensorflow': the encoder must be one of onnx, dlib"
    )  # the variable is named: the user never typed 'tensorflow' on the command line


def test_unwritable_encoder_cache_is_one_line_and_exit_6(lfw_female, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = anfe("predict", str(lfw_female), env={"ANFE_CACHE": str(blocker / "cache")})
    assert done.returncode == 6
    assert done.stderr.startswith("anfe: error: cannot write the converted face encoder")
    assert f"cache folder {str(blocker / 'cache')!r}" in done.stderr  # which folder
    assert len(done.stderr.strip().splitlines()) == 1


def test_serve_refuses_an_unknown_encoder_before_listening():
    done = anfe("serve", "--port", str(free_port()), env={"ANFE_ENCODER": "tensorflow"}, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("anfe: error: ANFE_ENCODER: Input should be 'onnx' or")


def test_serve_with_an_unwritable_encoder_cache_is_exit_6_before_listening(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = anfe(
        "serve", "--port", str(free_port()), "--db", str(tmp_path / "db"),
        env={"ANFE_CACHE": str(blocker / "cache")}, timeout=60,
    )  # fmt: skip
    assert done.returncode == 6
    assert done.stderr.startswith("anfe: error: cannot write the converted face encoder")
    assert "serving" not in done.stdout
