"""``detector`` and ``max_side`` on ``POST /predict`` (query or multipart field), and on the
``anfe`` command (``--detector``, ``ANFE_DETECTOR``, ``--max-side``): choices, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
from PIL import Image

from tests.helpers import ANFE, anfe, assert_error, jpeg, upload


def test_cnn_detector_answers_like_hog_on_a_plain_photo(client, lfw_female):
    data = lfw_female.read_bytes()
    hog = client.post("/predict", files=upload(data)).json()["faces"]
    cnn = client.post("/predict?detector=cnn", files=upload(data)).json()["faces"]
    form = client.post("/predict", files=upload(data), data={"detector": "cnn"}).json()["faces"]
    assert len(hog) == len(cnn) == 1 and cnn == form
    assert cnn[0]["gender"] == hog[0]["gender"] == "female"
    assert cnn[0]["box"] != hog[0]["box"]  # found by the other detector


def test_full_resolution_finds_a_small_face_the_default_misses(client, lfw_female):
    canvas = Image.new("RGB", (2400, 900), (128, 128, 128))
    with Image.open(lfw_female) as im:
        canvas.paste(im.convert("RGB").resize((160, 160)), (1500, 400))  # a ~60 px face
    data = jpeg(canvas)
    assert client.post("/predict", files=upload(data)).json()["faces"] == []
    full = client.post("/predict?max_side=0", files=upload(data)).json()["faces"]
    by_form = client.post("/predict", files=upload(data), data={"max_side": "0"}).json()["faces"]
    assert len(full) == 1 and full == by_form
    box = full[0]["box"]
    assert 1500 <= box["left"] < box["right"] <= 1660 and 400 <= box["top"] < box["bottom"] <= 560


def test_bad_detector_or_max_side_is_422_with_a_clear_message(client, lfw_female):
    data = lfw_female.read_bytes()
    for query, word in (
        ("detector=retina", "detector must be one of hog, cnn"),
        ("detector=", "detector must be one of hog, cnn"),
        ("max_side=-1", "max_side must be 0"),
        ("max_side=10", "max_side must be 0"),
        ("max_side=big", "max_side"),
    ):
        body = assert_error(
            client.post(f"/predict?{query}", files=upload(data)), 422, "invalid_parameter"
        )
        assert word in body["error"]["message"], query
    for fields in ({"detector": "mtcnn"}, {"max_side": "ten"}, {"max_side": "32"}):
        assert_error(
            client.post("/predict", files=upload(data), data=fields), 422, "invalid_parameter"
        )
    assert_error(
        client.post("/predict/batch?detector=x", files=[("files", ("a.jpg", data))]),
        422,
        "invalid_parameter",
    )


def test_cli_refuses_a_bad_detector_or_max_side_in_one_line_with_exit_2(tmp_path, lfw_female):
    db = str(tmp_path / "db")
    done = anfe("predict", str(lfw_female), "--detector", "retina", "--db", db)
    assert done.returncode == 2 and "invalid choice: 'retina'" in done.stderr
    done = anfe("predict", str(lfw_female), "--db", db, env={"ANFE_DETECTOR": "retina"})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "anfe: error: ANFE_DETECTOR='retina': the detector must be one of hog, cnn"
    ]
    done = anfe("predict", str(lfw_female), "--max-side", "10", "--db", db)
    assert done.returncode == 2 and "max_side must be 0" in done.stderr
    assert "Traceback" not in done.stderr
    for command in ("build", "bench", "serve"):
        done = anfe(command, "--detector", "retina", "--help")
        assert done.returncode == 2 and "invalid choice: 'retina'" in done.stderr, command


def test_cli_predicts_with_the_cnn_detector_at_full_resolution(tmp_path, lfw_male):
    # no database: the shipped sets answer (run where ./.anfe/db does not exist)
    env = {k: v for k, v in os.environ.items() if k != "ANFE_DB"}
    done = subprocess.run(
        [*ANFE, "predict", str(lfw_male), "--detector", "cnn", "--max-side", "0", "--json"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [f["gender"] for f in result["faces"]] == ["male"]
    assert result["faces"][0]["box"] == {"top": 86, "right": 167, "bottom": 181, "left": 72}


def test_face_locations_checks_its_options():
    import pytest

    import anfe as api
    from anfe.centroids.errors import InvalidParameter

    image = np.zeros((50, 50, 3), np.uint8)
    assert api.face_locations(image, detector="cnn") == []
    for kwargs in ({"detector": "x"}, {"upsample": 4}, {"upsample": -1}, {"max_side": 5}):
        with pytest.raises(InvalidParameter):
            api.face_locations(image, **kwargs)
