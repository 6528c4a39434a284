"""The detector choice (hog or cnn), and faces at full resolution (``max_side`` 0, in tiles)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from anfe.centroids.errors import InvalidParameter
from anfe.centroids.predict import check_max_side, embedding_settings
from anfe.centroids.storage import shipped
from anfe.centroids.vision import detectors, faces
from anfe.centroids.vision.settings import EmbeddingSettings
from tests.helpers import LFW


def test_an_unknown_detector_is_refused_in_one_clear_line(monkeypatch):
    with pytest.raises(InvalidParameter, match="detector must be one of hog, cnn, not 'retina'"):
        detectors.check("retina")
    with pytest.raises(InvalidParameter, match="detector must be one of hog, cnn"):
        EmbeddingSettings(detector="HOG")
    monkeypatch.setenv(detectors.ENV_VAR, "yolo")
    with pytest.raises(InvalidParameter, match="^ANFE_DETECTOR='yolo': the detector must be"):
        detectors.default_detector()
    monkeypatch.setenv(detectors.ENV_VAR, "cnn")
    assert detectors.default_detector() == "cnn"


def test_the_embedding_cache_key_names_the_detector_and_its_upsampling():
    hog, cnn = EmbeddingSettings(detector="hog"), EmbeddingSettings(detector="cnn")
    assert (hog.upsample, cnn.upsample) == (1, 0)  # each detector's own default
    assert hog.key() == "small-j1-hog-u1-s800"
    assert cnn.key() == "small-j1-cnn-u0-s800"
    assert EmbeddingSettings(detector="cnn", upsample=1).key() == "small-j1-cnn-u1-s800"
    assert cnn.describe()["detector"] == "cnn" and cnn.describe()["upsample"] == 0
    # cropped faces are not detected: one key whatever the detector
    assert (
        EmbeddingSettings(detector="cnn", cropped=True).key()
        == EmbeddingSettings(cropped=True).key()
    )


def test_a_set_built_with_hog_serves_with_the_detector_asked_for(monkeypatch):
    cs = shipped.shipped_set()
    assert embedding_settings(cs).detector == "hog"
    served = embedding_settings(cs, detector="cnn")
    assert (served.detector, served.upsample) == ("cnn", 0)
    monkeypatch.setenv(detectors.ENV_VAR, "cnn")
    assert embedding_settings(cs).detector == "cnn"


def test_max_side_is_zero_or_at_least_64():
    for ok in (None, 0, 64, 800, 5000):
        check_max_side(ok)
    for bad in (-1, 1, 63, True, 1.5, "800"):
        with pytest.raises(InvalidParameter, match="max_side must be 0"):
            check_max_side(bad)


def test_tiles_cover_the_photo_and_overlap_by_the_overlap():
    for length, tile in ((4000, detectors.TILE_ROWS), (3000, 1024), (1025, 1024), (9000, 4096)):
        starts = detectors.tile_origins(length, tile, detectors.TILE_OVERLAP)
        assert starts[0] == 0 and starts[-1] + tile == length
        assert all(
            b - a <= tile - detectors.TILE_OVERLAP for a, b in zip(starts, starts[1:], strict=False)
        )
    assert detectors.tile_origins(800, 1024, 256) == [0]
    rows = detectors.tile_origins(3000, 1024, 256)
    assert detectors.tiles(3000, 4000, "hog") == [(y, 0, 1024, 4096) for y in rows]
    assert len(detectors.tiles(3000, 4000, "cnn")) == len(rows) * 5


def test_the_copy_for_large_faces_sees_every_face_wider_than_the_overlap():
    assert detectors.large_face_side(3000, 4000, 1) == 800  # HOG: 256 px -> 51 px there
    assert detectors.large_face_side(3000, 4000, 0) == 1250  # CNN: 256 px -> 80 px there
    assert detectors.large_face_side(500, 600, 0) == 800


def test_a_face_cut_by_a_tiles_inner_edge_is_left_to_its_neighbour():
    # a 1024x1024 tile at (1000, 768) of a 3000x4000 photo: every edge is inner
    assert detectors.cut_by_inner_edge((500, 1023, 700, 900), 1000, 768, 1024, 1024, 3000, 4000)
    assert detectors.cut_by_inner_edge((1, 300, 200, 100), 1000, 768, 1024, 1024, 3000, 4000)
    assert not detectors.cut_by_inner_edge((10, 300, 200, 100), 1000, 768, 1024, 1024, 3000, 4000)
    # the first tile's top and left edges are the photo's: a face there is kept
    assert not detectors.cut_by_inner_edge((-5, 100, 90, -3), 0, 0, 1024, 1024, 3000, 4000)


def test_a_face_found_in_two_tiles_is_kept_once():
    face = (100, 300, 300, 100)
    shifted = (102, 301, 298, 99)  # the same face seen from the next tile
    inside = (150, 250, 250, 150)  # a box inside a larger one: one face
    other = (100, 700, 300, 500)
    assert sorted(detectors.merge([face, shifted, inside, other])) == sorted([face, other])


@pytest.fixture(scope="module")
def group_photo(real_data, lfw_rows) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A 3000x1400 canvas holding four LFW faces whose HOG box is ~60 px, and those boxes."""
    canvas = Image.new("RGB", (3000, 1400), (120, 110, 100))
    truth = []
    for i, row in enumerate(lfw_rows[5::900][:4]):
        with Image.open(LFW / row["path"]) as im:
            photo = im.convert("RGB").resize((150, 150), Image.Resampling.LANCZOS)
        x, y = 300 + 650 * i, 200 + 300 * (i % 2)
        canvas.paste(photo, (x, y))
        truth.append((y + 45, x + 105, y + 105, x + 45))  # roughly the face, for matching
    return np.asarray(canvas), truth


def _finds(boxes, truth):
    return sum(
        any(b[3] <= (t[1] + t[3]) / 2 <= b[1] and b[0] <= (t[0] + t[2]) / 2 <= b[2] for b in boxes)
        for t in truth
    )


def test_full_resolution_finds_the_small_faces_the_800_px_copy_misses(group_photo):
    image, truth = group_photo
    shrunk = faces.detect(image, 800, detector="hog")
    full = faces.detect(image, faces.FULL_RESOLUTION, detector="hog")
    assert _finds(shrunk, truth) == 0  # 60 px faces are ~16 px at 800 px
    assert _finds(full, truth) == len(truth)
    h, w = image.shape[:2]
    assert all(0 <= t < b <= h and 0 <= lf < r <= w for t, r, b, lf in full)
    assert full == sorted(full, key=lambda b: (b[3], b[0]))  # left to right


def test_full_resolution_of_a_photo_smaller_than_a_tile_is_the_photo_itself(lfw_female):
    image = np.asarray(Image.open(lfw_female).convert("RGB"))
    assert faces.detect(image, 0, detector="cnn") == faces.detect(image, 800, detector="cnn")
    assert len(faces.detect(image, 0, detector="cnn")) == 1
