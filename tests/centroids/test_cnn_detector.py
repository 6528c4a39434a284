"""The ONNX port of dlib's CNN face detector: dlib's boxes and confidences, on real photos.

Every run compares the port with ``dlib.cnn_face_detection_model_v1`` on 24 real photos (LFW
photos cut to their central 150x150, UTKFace crops, two side by side) without upsampling and on
three with one upsampling; and dlib's resampling, which the port repeats, pixel for pixel.
"""

from __future__ import annotations

import dlib
import numpy as np
import pytest
from PIL import Image

from anfe.centroids.errors import ModelFileInvalid
from anfe.centroids.vision.encoders import dlib_pyramid
from anfe.centroids.vision.encoders.dlib_dat import (
    Affine,
    Conv,
    InputRGBPyramid,
    LossMMOD,
    detector_model_path,
    mmod_face_detector,
    parse_network,
    read_detector,
)
from anfe.centroids.vision.encoders.onnx_detector import CnnFaceDetector
from tests.helpers import LFW, UTKFACE

pytestmark = pytest.mark.usefixtures("real_data")

SIDE = 1  # pixels a box side may differ from dlib's
CONFIDENCE = 1e-3


def rgb(path, crop: int | None = None) -> np.ndarray:
    with Image.open(path) as im:
        image = np.asarray(im.convert("RGB"))
    if crop:
        y, x = (image.shape[0] - crop) // 2, (image.shape[1] - crop) // 2
        image = image[y : y + crop, x : x + crop]
    return np.ascontiguousarray(image)


@pytest.fixture(scope="module")
def photos(lfw_rows, utk_rows) -> list[np.ndarray]:
    """16 LFW photos (central 150x150), 6 UTKFace crops, and two LFW photos side by side."""
    lfw = [rgb(LFW / r["path"], 150) for r in lfw_rows[::500][:18]]
    utk = [rgb(UTKFACE / r["path"]) for r in utk_rows[::4000][:6]]
    pair = np.ascontiguousarray(np.concatenate(lfw[16:18], axis=1))
    return lfw[:16] + utk + [pair]


@pytest.fixture(scope="module")
def port() -> CnnFaceDetector:
    return CnnFaceDetector()


@pytest.fixture(scope="module")
def reference():
    return dlib.cnn_face_detection_model_v1(str(detector_model_path()))


def dlib_boxes(reference, image, upsample):
    return [
        (d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), d.confidence)
        for d in reference(image, upsample)
    ]


def assert_same(ours, theirs):
    assert len(ours) == len(theirs)
    for o, t in zip(ours, theirs, strict=True):
        assert max(abs(a - b) for a, b in zip(o[:4], t[:4], strict=False)) <= SIDE, (o, t)
        assert abs(o[4] - t[4]) <= CONFIDENCE, (o, t)


def test_port_finds_dlibs_faces_on_real_photos(photos, port, reference):
    faces = 0
    for image in photos:
        ours = [(d.left, d.top, d.right, d.bottom, d.confidence) for d in port(image, 0)]
        theirs = dlib_boxes(reference, image, 0)
        assert_same(ours, theirs)
        faces += len(theirs)
    assert faces >= 20  # the photos hold faces: the comparison is not of empty lists


def test_port_finds_dlibs_faces_when_upsampling(photos, port, reference):
    for image in (photos[0][25:125, 25:125], photos[16][50:150, 50:150], photos[3]):
        image = np.ascontiguousarray(image)
        ours = [(d.left, d.top, d.right, d.bottom, d.confidence) for d in port(image, 1)]
        assert_same(ours, dlib_boxes(reference, image, 1))


def test_face_locations_returns_dlibs_boxes_trimmed_to_the_image(photos, reference):
    import anfe

    for image in photos[:4] + photos[-1:]:
        h, w = image.shape[:2]
        expected = sorted(
            (max(t, 0), min(r, w), min(b, h), max(lf, 0))
            for lf, t, r, b, _ in dlib_boxes(reference, image, 0)
        )
        assert sorted(anfe.face_locations(image, detector="cnn", upsample=0)) == expected


def test_images_too_small_for_the_network_have_no_face(port):
    for shape in ((0, 0, 3), (1, 1, 3), (7, 9, 3), (3, 300, 3)):
        assert port(np.zeros(shape, np.uint8), 0) == []
        assert port(np.zeros(shape, np.uint8), 1) == []


def test_resampling_is_dlibs_pixel_for_pixel(photos):
    for image in photos[:6]:
        up = dlib_pyramid.pyramid_up(image)
        assert up.shape[:2] == (2 * image.shape[0] + 1, 2 * image.shape[1] + 2)
        assert np.array_equal(up, dlib.resize_image(image, *up.shape[:2]))
        grey = (image[:, :, 1].astype(np.float32) - np.float32(117.001)) / np.float32(256)
        rows, cols = grey.shape[0] * 5 // 6, grey.shape[1] * 5 // 6
        ours = dlib_pyramid.resize_float(grey[None], rows, cols)[0]
        assert np.array_equal(ours, dlib.resize_image(np.ascontiguousarray(grey), rows, cols))


def test_tiled_pyramid_layout_places_each_level_apart():
    rects, rows, cols = dlib_pyramid.tiled_pyramid_layout(250, 250, 10, 11)
    assert (rects[0].left, rects[0].top, rects[0].width, rects[0].height) == (11, 11, 250, 250)
    assert cols == 250 + 22
    for above, below in zip(rects, rects[1:], strict=False):
        assert below.height == int(above.height * 5 / 6)
    for i, a in enumerate(rects):
        assert 0 <= a.left and a.right < cols and 0 <= a.top and a.bottom < rows
        for b in rects[i + 1 :]:
            assert a.right < b.left or b.right < a.left or a.bottom < b.top or b.bottom < a.top


def test_detector_file_is_read_as_dlibs_network():
    layers = read_detector().layers
    assert isinstance(layers[0], InputRGBPyramid) and isinstance(layers[-1], LossMMOD)
    convs = [x for x in layers if isinstance(x, Conv)]
    assert [(c.filters, c.stride) for c in convs] == [
        (16, 2), (32, 2), (32, 2), (45, 1), (45, 1), (45, 1), (1, 1)
    ]  # fmt: skip
    assert sum(isinstance(x, Affine) for x in layers) == 6  # bn_con layers, read as affine
    loss = layers[-1]
    assert [(w.width, w.height) for w in loss.windows] == [(80, 80)]
    assert 0 < loss.overlaps_nms.iou < 1


def test_truncated_detector_file_is_refused():
    data = detector_model_path().read_bytes()
    with pytest.raises(ModelFileInvalid, match="truncated"):
        parse_network(data[: len(data) // 2], "mmod_human_face_detector.dat", mmod_face_detector)
    with pytest.raises(ModelFileInvalid):
        parse_network(data + b"\0", "mmod_human_face_detector.dat", mmod_face_detector)
