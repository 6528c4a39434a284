"""Masks drawn from the 68 landmarks of a real face cover the lower face and nothing else."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from anfe.bench.masks import FILLS, MaskJob, draw_mask, fill_for, mask_and_embed, mask_polygon
from anfe.centroids.imaging import decoding, formats
from anfe.centroids.vision import faces
from anfe.centroids.vision.settings import EmbeddingSettings


@pytest.fixture(scope="module")
def face(lfw_female):
    image = decoding.load_image(lfw_female)
    boxes = faces.detect(image)
    assert len(boxes) == 1
    return image, boxes[0], faces.landmarks(image, boxes)[0]


def _inside(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    shape = Image.new("L", (w, h), 0)
    ImageDraw.Draw(shape).polygon(mask_polygon(points), fill=255)
    return np.asarray(shape) > 0


@pytest.mark.parametrize("fill", FILLS)
def test_mask_changes_only_the_lower_face(face, fill):
    image, _, points = face
    before = image.copy()
    masked = draw_mask(image, points, fill)
    assert np.array_equal(image, before)  # the original is left alone
    changed = np.any(masked != image, axis=2)
    inside = _inside(image, points)
    assert not np.any(changed & ~inside)  # nothing outside the mask outline
    assert changed[inside].mean() > 0.9  # almost every pixel inside
    mouth = points[48:68]
    assert all(inside[y, x] for x, y in mouth)  # the mouth is covered
    assert not any(inside[y, x] for x, y in points[36:48])  # the eyes are not


def test_fills_look_different(face):
    image, _, points = face
    inside = _inside(image, points)
    colours = [draw_mask(image, points, f)[inside].mean(axis=0) for f in FILLS]
    assert np.abs(colours[0] - colours[1]).max() > 100  # light vs dark
    patterned = draw_mask(image, points, "patterned")[inside]
    assert len(np.unique(patterned, axis=0)) == 2  # two stripe colours


def test_fill_is_fixed_by_the_image_hash():
    shas = [f"{i:08x}" + "0" * 56 for i in range(30)]
    assert [fill_for(s) for s in shas] == [fill_for(s) for s in shas]
    assert {fill_for(s) for s in shas} == set(FILLS)


def test_masked_face_is_embedded_at_the_original_box(face, lfw_female):
    image, box, _ = face
    sha = formats.content_hash(lfw_female.read_bytes())
    emb = mask_and_embed(MaskJob(str(lfw_female), sha, box), EmbeddingSettings())
    plain = faces.encode(image, [box])[0]
    assert emb.usable and emb.box == box
    assert emb.vector.shape == (128,)
    assert 0.05 < np.linalg.norm(emb.vector - plain) < 1.0  # changed, yet still a face


def test_masked_embeddings_resume_where_an_earlier_run_stopped(store, lfw_rows):
    from anfe.bench.masks import masked_embeddings
    from tests.helpers import LFW

    settings = EmbeddingSettings()
    jobs = []
    for r in lfw_rows[:8]:
        path = LFW / r["path"]
        image = decoding.load_image(path)
        boxes = faces.detect(image)
        if len(boxes) == 1:
            jobs.append(MaskJob(str(path), formats.content_hash(path.read_bytes()), boxes[0]))
    jobs = jobs[:3]
    assert len(jobs) == 3
    first = masked_embeddings(jobs[:2], settings, store, progress=False)  # "interrupted" here
    assert store.count_embeddings() == 2
    again = masked_embeddings(jobs, settings, store, progress=False)
    assert store.count_embeddings() == 3  # only the third face was computed
    for a, b in zip(first, again[:2], strict=True):
        assert np.array_equal(a.vector, b.vector)
