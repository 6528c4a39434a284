"""Masked copies of test faces: a surgical-mask shape drawn from the 68 facial landmarks.

The mask covers the face from the nose bridge (landmark 28, counting from 0) down to the chin,
cheek to cheek along the jaw line (landmarks 1 to 15), filled in one of three ways: ``light``
(pale blue, a surgical mask), ``dark`` (near black, a cloth mask) or ``patterned`` (diagonal
stripes). Each face gets one fill, chosen from its image hash, so every fill covers about a third
of the test set and a rerun draws the same masks.

A masked face is embedded at the box found on the unmasked photo, so the score measures what the
mask does to the gender decision, not to face detection. Masked embeddings are cached in the
``embeddings`` collection under the image hash and a settings key naming the fill and
:data:`MASK_VERSION`; a rerun computes none again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from anfe.centroids.builder.workers import (
    BATCH_IMAGES,
    BatchWriter,
    Embedded,
    Progress,
    run_batches,
)
from anfe.centroids.errors import AnfeError
from anfe.centroids.imaging import decoding
from anfe.centroids.storage.store import Store
from anfe.centroids.vision import faces
from anfe.centroids.vision.detectors import Box
from anfe.centroids.vision.settings import EmbeddingSettings

FILLS = ("light", "dark", "patterned")
MASK_VERSION = 1
JAW = list(range(1, 16))
NOSE_BRIDGE = 28
_COLOURS = {"light": (198, 222, 238), "dark": (32, 32, 38)}
_STRIPES = ((226, 232, 240), (64, 104, 168))


def fill_for(sha256: str) -> str:
    """The fill of a face, fixed by its image hash."""
    return FILLS[int(sha256[:8], 16) % len(FILLS)]


def mask_polygon(points: np.ndarray) -> list[tuple[int, int]]:
    """The mask outline from 68 landmarks ``(68, 2)`` of (x, y): jaw 1..15, then nose bridge."""
    points = np.asarray(points)
    if points.shape != (68, 2):
        raise ValueError(f"need 68 landmarks, got shape {points.shape}")
    outline = [points[i] for i in JAW] + [points[NOSE_BRIDGE]]
    return [(int(x), int(y)) for x, y in outline]


def draw_mask(image: np.ndarray, points: np.ndarray, fill: str) -> np.ndarray:
    """A copy of the RGB ``image`` with a mask of the given fill drawn over the face."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}")
    h, w = image.shape[:2]
    shape = Image.new("L", (w, h), 0)
    ImageDraw.Draw(shape).polygon(mask_polygon(points), fill=255)
    cover = np.asarray(shape) > 0
    out = image.copy()
    if fill == "patterned":
        yy, xx = np.mgrid[0:h, 0:w]
        stripe = ((xx + yy) // max(2, w // 40)) % 2 == 1
        pattern = np.where(stripe[..., None], _STRIPES[1], _STRIPES[0]).astype(np.uint8)
        out[cover] = pattern[cover]
    else:
        out[cover] = _COLOURS[fill]
    return out


def settings_key(settings: EmbeddingSettings, fill: str) -> str:
    """The cache settings key of masked embeddings of one fill."""
    return f"{settings.key()}-mask{MASK_VERSION}-{fill}"


@dataclass
class MaskJob:
    """One face to mask: the original image, its hash and the box it was embedded at."""

    path: str
    sha256: str
    box: Box


def mask_and_embed(job: MaskJob, settings: EmbeddingSettings) -> Embedded:
    """Draw the mask of this face's fill and embed the masked face at the original box."""
    try:
        image = decoding.load_image(job.path)
    except AnfeError as exc:
        return Embedded(sha256=job.sha256, faces_found=0, error=exc.code)
    box = tuple(int(v) for v in job.box)
    points = faces.landmarks(image, [box])[0]
    masked = draw_mask(image, points, fill_for(job.sha256))
    vector = faces.encode(masked, [box], settings.jitters, settings.model, settings.encoder)[0]
    return Embedded(sha256=job.sha256, faces_found=1, vector=vector, box=box)


def _embed_chunk(jobs: list[MaskJob], settings: EmbeddingSettings) -> list[Embedded]:
    """Worker task: embed the masked copy of each face of a batch."""
    return [mask_and_embed(j, settings) for j in jobs]


def masked_embeddings(
    jobs: Sequence[MaskJob],
    settings: EmbeddingSettings,
    store: Store | None,
    *,
    workers: int = 1,
    progress: bool = True,
) -> list[Embedded]:
    """Embed the masked copy of every face, from the cache where possible; one result per job.

    The work runs in the extraction's worker pool (:func:`anfe.centroids.builder.workers.run_batches`) and is
    written to the database in batches as it arrives, so an interrupted run keeps what finished.
    """
    cached: dict[str, Embedded] = {}
    if store is not None:
        for fill in FILLS:
            for sha, doc in store.cached_embeddings(settings_key(settings, fill)).items():
                cached[sha] = Embedded.from_doc(doc)
    todo = {j.sha256: j for j in jobs if j.sha256 not in cached}
    waiting: dict[str, int] = {}
    for j in jobs:
        if j.sha256 in todo:
            waiting[j.sha256] = waiting.get(j.sha256, 0) + 1
    bar = Progress(len(jobs), "masking", progress)
    bar.update(len(jobs) - sum(waiting.values()))
    writer = BatchWriter(store)
    procs = workers if len(todo) > BATCH_IMAGES else 1
    try:
        for emb in run_batches(list(todo.values()), _embed_chunk, settings, procs):
            job = todo[emb.sha256]
            cached[emb.sha256] = emb
            bar.update(waiting[emb.sha256])
            writer.add(emb.to_doc(settings_key(settings, fill_for(job.sha256)), None, job.path))
    finally:  # keep finished work when interrupted
        writer.flush()
        bar.close()
    return [cached[j.sha256] for j in jobs]


def save_examples(jobs: Sequence[MaskJob], path: Path, per_fill: int = 2) -> Path | None:
    """A strip of masked example faces (``per_fill`` of each fill) saved as a PNG."""
    tiles = []
    for fill in FILLS:
        for job in [j for j in jobs if fill_for(j.sha256) == fill][:per_fill]:
            image = decoding.load_image(job.path)
            box = tuple(int(v) for v in job.box)
            masked = draw_mask(image, faces.landmarks(image, [box])[0], fill)
            top, right, bottom, left = box
            pad = (bottom - top) // 4
            crop = masked[max(0, top - pad) : bottom + pad, max(0, left - pad) : right + pad]
            tiles.append(Image.fromarray(crop).resize((160, 160)))
    if not tiles:
        return None
    strip = Image.new("RGB", (160 * len(tiles), 160), (255, 255, 255))
    for i, tile in enumerate(tiles):
        strip.paste(tile, (160 * i, 0))
    strip.save(path)
    return path
