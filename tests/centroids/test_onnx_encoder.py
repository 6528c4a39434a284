"""The ONNX port of dlib's face encoder: dlib's weights read in Python, same embeddings as dlib.

Every run converts the model into a temporary cache and compares it with dlib on real faces.
"""

from __future__ import annotations

import random
import shutil
from collections import Counter

import dlib
import face_recognition
import numpy as np
import pytest
from face_recognition import api

from anfe.centroids.errors import EncoderCacheUnwritable, InvalidParameter, ModelFileInvalid
from anfe.centroids.vision.encoders.dlib_dat import (
    AddPrev,
    Affine,
    Conv,
    Pool,
    default_model_path,
    read_network,
)
from anfe.centroids.vision.encoders.onnx_encoder import (
    OnnxEncoder,
    cache_dir,
    converted_model,
    encode_faces,
)
from tests.helpers import LFW, UTKFACE

TOLERANCE = 1e-4  # Euclidean; two photos of one person are ~0.3-0.5 apart
LFW_PHOTOS = 30
UTK_CROPS = 30


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def encoder(onnx_cache) -> OnnxEncoder:
    return OnnxEncoder(threads=1, cache=onnx_cache)


def _model_bytes() -> bytes:
    return default_model_path().read_bytes()


def _landmarks(image: np.ndarray, boxes) -> dlib.full_object_detections:
    shapes = dlib.full_object_detections()
    for box in boxes:
        shapes.append(api.pose_predictor_5_point(image, api._css_to_rect(box)))
    return shapes


def _real_faces(lfw_rows, utk_rows):
    """(image, boxes) of LFW photos (HOG detection) and UTKFace crops (the whole image)."""
    rnd = random.Random(12)
    for row in rnd.sample(lfw_rows, LFW_PHOTOS):
        image = face_recognition.load_image_file(LFW / row["path"])
        yield image, face_recognition.face_locations(image)
    for row in rnd.sample(utk_rows, UTK_CROPS):
        image = face_recognition.load_image_file(UTKFACE / row["path"])
        height, width = image.shape[:2]
        yield image, [(0, width, height, 0)]


def test_file_holds_the_layers_of_dlibs_resnet():
    layers = read_network().layers
    counts = Counter(type(layer) for layer in layers)
    avg_pools = sum(1 for layer in layers if isinstance(layer, Pool) and layer.kind == "avg")
    assert (counts[Conv], counts[Affine], counts[AddPrev], avg_pools) == (29, 29, 14, 5)


def test_onnx_embeddings_equal_dlibs_on_real_faces(encoder, lfw_rows, utk_rows):
    distances = []
    for image, boxes in _real_faces(lfw_rows, utk_rows):
        if not boxes:
            continue
        expected = face_recognition.face_encodings(image, boxes, num_jitters=1, model="small")
        got = encode_faces(encoder, image, _landmarks(image, boxes))
        assert got.shape == (len(boxes), 128) and got.dtype == np.float64
        distances += np.linalg.norm(np.array(expected) - got, axis=1).tolist()
    assert len(distances) >= 50
    worst = max(distances)
    assert worst <= TOLERANCE, f"largest distance to dlib's embedding: {worst:.3g}"


def test_second_load_reuses_the_conversion(encoder, onnx_cache):
    assert encoder.converted
    before = encoder.model_path.stat().st_mtime_ns
    again = OnnxEncoder(threads=1, cache=onnx_cache)
    assert not again.converted
    assert again.model_path == encoder.model_path
    assert again.model_path.stat().st_mtime_ns == before
    assert [p.name for p in onnx_cache.iterdir()] == [encoder.model_path.name]  # no temp files


def test_cache_folder_follows_anfe_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ANFE_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"


def test_truncated_model_file_is_a_clear_error(tmp_path):
    dat = tmp_path / "dlib_face_recognition_resnet_model_v1.dat"
    dat.write_bytes(_model_bytes()[:5_000_000])
    cache = tmp_path / "cache"
    with pytest.raises(ModelFileInvalid, match="truncated") as err:
        converted_model(dat, cache)
    assert err.value.code == "model_file_invalid"
    assert not cache.exists() or not any(cache.iterdir())


def test_corrupt_layer_name_is_a_clear_error(tmp_path):
    data = bytearray(_model_bytes())
    at = data.index(b"affine_", len(data) // 2)
    data[at : at + 7] = b"afxine_"
    dat = tmp_path / "model.dat"
    dat.write_bytes(bytes(data))
    with pytest.raises(ModelFileInvalid, match="expected an affine_ layer.*'afxine_'"):
        converted_model(dat, tmp_path / "cache")


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelFileInvalid, match="cannot read model file"):
        converted_model(tmp_path / "absent.dat", tmp_path / "cache")


def test_no_faces_gives_no_embeddings(encoder, utk_rows):
    image = face_recognition.load_image_file(UTKFACE / utk_rows[0]["path"])
    assert encode_faces(encoder, image, dlib.full_object_detections()).shape == (0, 128)


@pytest.mark.parametrize(
    "chips",
    [np.zeros((1, 150, 150, 3), dtype=np.float32), np.zeros((1, 150, 149, 3), dtype=np.uint8)],
    ids=["float-pixels", "wrong-size"],
)
def test_bad_chips_are_an_invalid_parameter(encoder, chips):
    with pytest.raises(InvalidParameter, match="face chips must be uint8"):
        encoder.encode_chips(chips)


def test_model_file_copy_converts_to_the_same_cached_name(tmp_path, encoder):
    copy = tmp_path / default_model_path().name
    shutil.copyfile(default_model_path(), copy)
    path, converted = converted_model(copy, encoder.model_path.parent)
    assert (path, converted) == (encoder.model_path, False)  # keyed by content, not location


def test_damaged_cache_entry_is_converted_again(tmp_path, encoder):
    cache = tmp_path / "cache"
    cache.mkdir()
    damaged = cache / encoder.model_path.name
    damaged.write_bytes(encoder.model_path.read_bytes()[:1000])
    again = OnnxEncoder(threads=1, cache=cache)
    assert again.converted
    assert again.model_path.stat().st_size == encoder.model_path.stat().st_size


def test_unwritable_cache_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(EncoderCacheUnwritable, match="set ANFE_CACHE"):
        converted_model(cache=blocker / "cache")
