"""``import anfe``: the Python API, called from another working directory on real LFW photos."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TRAIN_PER_GENDER

pytestmark = pytest.mark.usefixtures("real_data")


def python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter whose working directory is ``cwd``."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300
    )


EVERY_INPUT_KIND = """
import json, anfe, numpy as np
from PIL import Image
out = {}
for name in ("woman.jpg", "man.jpg"):
    with open(name, "rb") as fh:
        data = fh.read()
    out[name] = {
        "path": anfe.predict(name),
        "bytes": anfe.predict(data),
        "pil": anfe.predict(Image.open(name)),
        "numpy": anfe.predict(np.asarray(Image.open(name).convert("RGB"))),
    }
print(json.dumps(out))
"""


def test_predict_takes_a_path_bytes_a_pil_image_or_an_array_without_a_database(
    tmp_path, lfw_female, lfw_male
):
    shutil.copy(lfw_female, tmp_path / "woman.jpg")
    shutil.copy(lfw_male, tmp_path / "man.jpg")
    done = python(EVERY_INPUT_KIND, tmp_path)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    for name, gender in (("woman.jpg", "female"), ("man.jpg", "male")):
        by_kind = results[name]
        assert by_kind["bytes"] == by_kind["path"] == by_kind["pil"] == by_kind["numpy"]
        [face] = by_kind["path"]
        assert face["gender"] == gender
        assert set(face["box"]) == {"top", "right", "bottom", "left"}
        assert set(face["distances"]) == {"female", "male"}
        assert face["margin"] == pytest.approx(
            abs(face["distances"]["female"] - face["distances"]["male"])
        )
        assert 0.5 <= face["confidence"] <= 1
        assert isinstance(face["uncertain"], bool) and isinstance(face["in_range"], bool)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["man.jpg", "woman.jpg"]  # no database


def test_predict_answers_as_the_service_would(tmp_path, lfw_female):
    from anfe.centroids.predict import predict_image
    from anfe.centroids.storage import shipped

    expected = predict_image(lfw_female.read_bytes(), shipped.shipped_set())["faces"]
    done = python(
        f"import anfe, json; print(json.dumps(anfe.predict({str(lfw_female)!r})))", tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == expected


def test_predict_and_face_encodings_give_the_same_answers_with_either_encoder(tmp_path, lfw_male):
    code = f"""
import anfe, json
photo = {str(lfw_male)!r}
image = anfe.load_image(photo)
out = {{e: [anfe.predict(photo, encoder=e), anfe.face_encodings(image, encoder=e).tolist()]
        for e in ("onnx", "dlib")}}
print(json.dumps(out))
"""
    done = python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    [onnx], [dlib] = out["onnx"][0], out["dlib"][0]
    assert (onnx["box"], onnx["gender"]) == (dlib["box"], dlib["gender"])
    for side in ("female", "male"):
        assert onnx["distances"][side] == pytest.approx(dlib["distances"][side], abs=1e-5)
    vectors = {e: out[e][1] for e in out}
    assert len(vectors["onnx"]) == 1 and len(vectors["onnx"][0]) == 128
    diff = [abs(a - b) for a, b in zip(vectors["onnx"][0], vectors["dlib"][0], strict=True)]
    assert max(diff) < 1e-5


def test_load_reads_a_set_from_a_database_and_predict_reuses_it(tmp_path, training_db, lfw_male):
    code = f"""
import anfe, json
from anfe.centroids import answers
cs = anfe.load("g_{TRAIN_PER_GENDER}", db={training_db!r})
faces = anfe.predict({str(lfw_male)!r}, centroids=cs)
again = anfe.predict({str(lfw_male)!r}, centroids="g_{TRAIN_PER_GENDER}", db={training_db!r})
boxes = anfe.face_locations(anfe.load_image({str(lfw_male)!r}))
vectors = anfe.face_encodings(anfe.load_image({str(lfw_male)!r}), boxes)
print(json.dumps({{"id": cs.id, "mode": cs.mode, "faces": faces, "again": again,
                  "classified": answers.classification(cs.classify(vectors), 0)}}))
"""
    done = python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["id"] == f"g_{TRAIN_PER_GENDER}" and out["mode"] == "centroid"
    assert out["faces"] == out["again"]
    [face] = out["faces"]
    assert {k: face[k] for k in out["classified"]} == out["classified"]
    assert face["distances"]["male"] < 1.0  # Euclidean: the paper's rule, not the shipped default


def test_errors_are_the_model_s_error_classes(tmp_path, lfw_female):
    code = f"""
import anfe, numpy as np
for call in (lambda: anfe.load("g_7"), lambda: anfe.predict(b"not a photo"),
             lambda: anfe.predict(np.zeros((4, 4, 3), dtype=np.float32)),
             lambda: anfe.predict({str(lfw_female)!r}, max_faces=0),
             lambda: anfe.predict("missing.jpg"), lambda: anfe.predict(42)):
    try:
        call()
    except anfe.AnfeError as exc:
        print(exc.code, exc.message)
"""
    done = python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("centroids_not_found no shipped centroid set with id 'g_7'")
    assert lines[1].startswith("unsupported_media_type ")
    assert lines[2].startswith("invalid_parameter a numpy image must be uint8")
    assert lines[3].startswith("invalid_parameter max_faces")
    assert lines[4] == "image_not_found no image file 'missing.jpg': No such file or directory"
    assert lines[5] == (
        "invalid_parameter image must be a file path, the bytes of an image file, a PIL image or "
        "a numpy array, not int"
    )


def test_a_missing_file_and_a_wrong_type_raise_their_own_classes():
    import anfe

    with pytest.raises(anfe.ImageNotFound):
        anfe.predict("no-such-photo.jpg")
    with pytest.raises(anfe.InvalidImageInput) as err:
        anfe.predict(42)
    assert isinstance(err.value, TypeError) and isinstance(err.value, anfe.AnfeError)


HIDE_DLIB = "import sys; sys.modules['dlib'] = None  # as if dlib-bin were not installed\n"


def test_import_without_dlib_is_one_line_with_the_commands(tmp_path):
    bare = python(
        HIDE_DLIB + "import anfe, anfe.centroids.errors; print(sorted(anfe.__all__)[0])", tmp_path
    )
    assert bare.returncode == 0 and bare.stdout.strip() == "AnfeError", (
        bare.stderr
    )  # no side effect
    done = python(HIDE_DLIB + "import anfe\nanfe.predict", tmp_path)  # the first use checks
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        "anfe: error: dlib not installed; run: pip install dlib-bin face_recognition_models "
        "'setuptools<81' && pip install --no-deps face_recognition==1.3.0"
    )
    caught = python(
        HIDE_DLIB
        + "try:\n    from anfe import predict\nexcept ImportError as e:\n    print('caught', e.code)",
        tmp_path,
    )
    assert caught.stdout.strip() == "caught missing_dependency" and caught.stderr == ""
