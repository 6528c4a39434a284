"""Classify every face in one image: the service layer shared by ``anfe predict`` and the API."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from anfe.centroids import answers
from anfe.centroids.errors import ImageOverBudget, InvalidParameter
from anfe.centroids.imaging import decoding
from anfe.centroids.model.centroid_set import CentroidSet
from anfe.centroids.vision import detectors, encoders, faces
from anfe.centroids.vision.detectors import Box
from anfe.centroids.vision.settings import DEFAULT_MAX_SIDE, EmbeddingSettings


def embedding_settings(
    cs: CentroidSet, encoder: str | None = None, detector: str | None = None
) -> EmbeddingSettings:
    """Settings for embedding new faces the way the centroid set's faces were embedded.

    :param encoder: ``onnx`` or ``dlib`` (default: ``$ANFE_ENCODER`` or ``onnx``): either gives
        the vectors the set was built from
    :param detector: ``hog`` or ``cnn`` (default: ``$ANFE_DETECTOR`` or ``hog``), whichever
        the set was built with: dlib's landmarks align the face from either box, and the answers
        hardly move (docs/performance.md, "Face detectors"). The set's upsampling is used with
        its own detector, the detector's default with the other.
    """
    emb = cs.embedding
    detector = detectors.check(detector or detectors.default_detector())
    same = detector == emb.get("detector", detectors.DEFAULT_DETECTOR)
    return EmbeddingSettings(
        model=emb.get("landmarks", "small"),
        jitters=int(emb.get("jitters", 1)),
        detector=detector,
        upsample=int(emb.get("upsample", 1)) if same else None,
        max_side=int(emb.get("max_side", DEFAULT_MAX_SIDE)),
        encoder=encoder or encoders.default_encoder(),
    )


def predict_image(
    data: bytes | np.ndarray,
    cs: CentroidSet,
    *,
    max_faces: int = 20,
    max_bytes: int = decoding.DEFAULT_MAX_BYTES,
    max_pixels: int = decoding.DEFAULT_MAX_PIXELS,
    max_image_side: int = decoding.DEFAULT_MAX_IMAGE_SIDE,
    max_decoded_bytes: int = decoding.DEFAULT_MAX_DECODED_BYTES,
    max_side: int | None = None,
    encoder: str | None = None,
    detector: str | None = None,
    budget_seconds: float | None = None,
    on_detected: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Detect, encode and classify every face (largest first up to ``max_faces``).

    ``data`` is the bytes of an image file, or an image already decoded (see
    :func:`decoding.as_rgb`, whose checks it passes through). All the faces of the image go to the
    encoder (``encoder``: ``onnx`` or ``dlib``; default ``$ANFE_ENCODER`` or ``onnx``) in one call.
    Faces are found by ``detector`` (``hog`` or ``cnn``; default ``$ANFE_DETECTOR`` or ``hog``)
    on a copy whose longest side is ``max_side`` (default: the set's, 800 px), or on the photo at
    full resolution, in tiles, with ``max_side=0``: slower, for small faces in large photos.
    ``budget_seconds`` bounds decoding plus detection: past it, the next step is not started
    (the service also kills a worker that overruns it inside a step). ``on_detected(n)`` is
    called with the number of faces to encode once detection is done.

    :return: ``{"image": {"width", "height"}, "faces": [...], "timings_ms": {...}}`` where each face
        is ``{"box": {...}, "gender", "distances", "margin", "confidence", "uncertain", "in_range",
        "age", "detection"}`` and faces are ordered left to right. ``detection`` is
        ``"second_pass"`` for faces found only on a copy with a margin around the picture
        (:func:`anfe.centroids.vision.faces.second_pass`), ``"first_pass"`` otherwise.
    :raises ImageUndecodable, ImageTooLarge, UnsupportedImageType: for bad bytes
    :raises ImageOverBudget: decoding and detection took longer than ``budget_seconds``
    """
    if not 1 <= max_faces <= 100:
        raise InvalidParameter("max_faces must be between 1 and 100")
    check_max_side(max_side)
    settings = embedding_settings(cs, encoder, detector)
    if max_side is None:
        max_side = settings.max_side
    t0 = time.perf_counter()
    if isinstance(data, np.ndarray):
        image = decoding.as_rgb(data, max_pixels)
    else:
        data = decoding.read_bytes(data, max_bytes)
        image = decoding.decode(data, max_pixels, max_image_side, max_decoded_bytes)
    t1 = time.perf_counter()
    _check_budget(t1 - t0, budget_seconds, "decoding")
    boxes = faces.detect(image, max_side, settings.upsample, settings.detector)
    detection, encode_boxes = "first_pass", boxes
    if not boxes:  # a tight crop: try again with a margin around the picture
        boxes, encode_boxes = faces.second_pass(
            image, max_side, settings.upsample, detector=settings.detector
        )
        detection = "second_pass"
    if len(boxes) > max_faces:
        keep = sorted(range(len(boxes)), key=lambda i: _area(boxes[i]), reverse=True)[:max_faces]
        keep.sort(key=lambda i: (boxes[i][3], boxes[i][0]))
        boxes, encode_boxes = [boxes[i] for i in keep], [encode_boxes[i] for i in keep]
    t2 = time.perf_counter()
    _check_budget(t2 - t0, budget_seconds, "decoding and detection")
    if on_detected is not None:
        on_detected(len(boxes))
    chips = faces.chips(image, encode_boxes, settings.model)
    t3 = time.perf_counter()
    vectors = faces.encode_chips(chips, settings.jitters, settings.encoder)
    t4 = time.perf_counter()
    out_faces = []
    if boxes:
        preds = cs.classify(vectors)
        out_faces = [answers.face(box, preds, i, detection) for i, box in enumerate(boxes)]
    t5 = time.perf_counter()
    return {
        "centroids": cs.id,
        "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
        "faces": out_faces,
        "timings_ms": {
            "decode": round((t1 - t0) * 1000, 2),
            "detect": round((t2 - t1) * 1000, 2),
            "landmarks": round((t3 - t2) * 1000, 2),  # and the face chips
            "encode": round((t4 - t3) * 1000, 2),
            "classify": round((t5 - t4) * 1000, 2),
        },
    }


def _area(box: Box) -> int:
    top, right, bottom, left = box
    return (bottom - top) * (right - left)


def check_max_side(max_side: int | None) -> None:
    """:raises InvalidParameter: unless ``max_side`` is None, 0 (full resolution) or >= 64"""
    if max_side is not None and (
        isinstance(max_side, bool)
        or not isinstance(max_side, int)
        or (max_side != faces.FULL_RESOLUTION and not 64 <= max_side <= 1_000_000)
    ):
        raise InvalidParameter(
            f"max_side must be 0 (full resolution) or a number of pixels of at least 64, "
            f"not {max_side!r}"
        )


def _check_budget(spent: float, budget: float | None, what: str) -> None:
    if budget is not None and spent > budget:
        raise ImageOverBudget(f"{what} took {spent:.1f} s; the budget per image is {budget:g} s")
