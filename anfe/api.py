"""The functions of ``import anfe``: a thin layer over ``centroids/``, the path the service takes.

``predict`` runs the same code as ``POST /predict`` and ``anfe predict`` (detect on a downscaled
copy, encode at full resolution, classify by the nearer centroid), in this process and without
HTTP. The models (dlib's detector and landmarks; the face encoder, dlib's network on onnxruntime
unless ``encoder="dlib"`` or ``ANFE_ENCODER=dlib``: the same embeddings) load once per process, on
the first face; the shipped centroid sets are read once, on first use.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from anfe.centroids.errors import InvalidImageInput, InvalidParameter
from anfe.centroids.imaging import decoding
from anfe.centroids.model.centroid_set import CentroidSet
from anfe.centroids.predict import check_max_side, predict_image
from anfe.centroids.storage import shipped
from anfe.centroids.storage.store import Store
from anfe.centroids.vision import detectors, faces
from anfe.centroids.vision.settings import DEFAULT_MAX_SIDE

ImageInput = str | Path | bytes | bytearray | memoryview | Image.Image | np.ndarray
IMAGE_TYPES = (str, Path, bytes, bytearray, memoryview, Image.Image, np.ndarray)


def load(set_id: str | None = None, db: str | None = None) -> CentroidSet:
    """Load a centroid set: one shipped with anfe, or one from a database.

    :param set_id: id of the set, e.g. ``"g_5000"``; None for the default
        (``g_5000-mahalanobis``, else the largest stored)
    :param db: database URI (``mongodb://host:27017``, a folder, ``montydb:///path``); None reads
        the sets shipped in the package, with no database. An empty database is first seeded
        with the shipped sets, as ``anfe serve`` does.
    :return: a :class:`CentroidSet`; pass it to :func:`predict` as ``centroids`` to classify many
        images without loading it again, or call its ``classify`` on embeddings
    :raises CentroidsNotFound: no set has that id
    :raises DatabaseUnavailable: the database cannot be opened or read
    """
    if db is None:
        return _shipped(set_id)
    with Store(db) as store:
        return shipped.load_centroid_set(store, set_id)


@functools.cache
def _shipped(set_id: str | None) -> CentroidSet:
    return shipped.shipped_set(set_id)


def predict(
    image: ImageInput,
    centroids: str | CentroidSet | None = None,
    db: str | None = None,
    max_faces: int = 20,
    encoder: str | None = None,
    detector: str | None = None,
    max_side: int | None = None,
) -> list[dict[str, Any]]:
    """Find every face in an image and tell the gender of each.

    :param image: the image: a file path, the bytes of an image file (JPEG, PNG, WebP, BMP, GIF),
        a PIL image, or a numpy array (uint8 RGB, e.g. from ``face_recognition.load_image_file``;
        greyscale and RGBA are accepted too)
    :param centroids: a set id (default: ``g_5000-mahalanobis``), or a set from :func:`load`
    :param db: database URI to read the set from; None uses the sets shipped with anfe
    :param max_faces: classify at most this many faces (1-100), the largest ones
    :param encoder: ``"onnx"`` or ``"dlib"`` (default: ``$ANFE_ENCODER`` or ``"onnx"``); both
        give the same embeddings, dlib's several times slower
    :param detector: ``"hog"`` or ``"cnn"`` (default: ``$ANFE_DETECTOR`` or ``"hog"``): dlib's
        HOG detector, or dlib's CNN detector (on onnxruntime), which also finds turned and tilted
        faces and costs about 1.3 times HOG's time
    :param max_side: faces are searched on a copy whose longest side is this (default: 800);
        ``0`` searches the photo at full resolution, in tiles: small faces in large photos, for
        several seconds on a 4000x3000 photo
    :return: one dict per face, left to right, as ``POST /predict`` answers: ``box``
        (``top``, ``right``, ``bottom``, ``left`` in pixels of the upright image), ``gender``
        (``"female"`` or ``"male"``, the nearer centroid), ``distances`` to each centroid,
        ``margin`` between them, ``confidence`` (0.5-1, calibrated), ``uncertain``, ``in_range``,
        and ``age`` when the set carries an age model. An image without a face gives ``[]``.
    :raises ImageNotFound: no file at the path given
    :raises InvalidImageInput: ``image`` is none of the kinds above (also a ``TypeError``)
    :raises ImageUndecodable, UnsupportedImageType, ImageTooLarge: an image that cannot be used
    :raises InvalidParameter: an unknown detector, or a ``max_side`` neither 0 nor >= 64
    :raises CentroidsNotFound, DatabaseUnavailable: see :func:`load`
    """
    if not isinstance(image, IMAGE_TYPES):
        raise InvalidImageInput(
            "image must be a file path, the bytes of an image file, a PIL image or a numpy "
            f"array, not {type(image).__name__}"
        )
    cs = centroids if isinstance(centroids, CentroidSet) else load(centroids, db)
    if isinstance(image, (Image.Image, np.ndarray)):
        data: bytes | np.ndarray = decoding.as_rgb(image)
    else:
        data = decoding.read_bytes(image)
    return predict_image(
        data, cs, max_faces=max_faces, encoder=encoder, detector=detector, max_side=max_side
    )["faces"]


def load_image(image: str | Path | bytes) -> np.ndarray:
    """Load an image file into a numpy array, upright (EXIF orientation applied).

    :param image: a file path, or the bytes of an image file
    :return: the image as a uint8 RGB array of shape (height, width, 3)
    """
    return decoding.load_image(image)


def face_locations(
    image: np.ndarray,
    detector: str | None = None,
    upsample: int | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
) -> list[tuple[int, int, int, int]]:
    """Find the faces in an image, as :func:`predict` does.

    :param image: an RGB image array (see :func:`load_image`)
    :param detector: ``"hog"`` or ``"cnn"`` (default: ``$ANFE_DETECTOR`` or ``"hog"``); with
        ``"cnn"`` the boxes are those of ``dlib.cnn_face_detection_model_v1(image, upsample)``
        (computed on onnxruntime), trimmed to the image, for an image within ``max_side``
    :param upsample: times the image is doubled before the search, to find smaller faces
        (default: 1 for HOG, 0 for the CNN; each time costs about 4 times as much)
    :param max_side: the search runs on a copy whose longest side is this (default: 800); 0:
        on the image itself, in tiles when it is large
    :return: a list of face boxes ``(top, right, bottom, left)`` in pixels, left to right
    :raises InvalidParameter: an unknown detector, an upsample outside 0-3, a ``max_side``
        neither 0 nor >= 64
    """
    detector = detectors.check(detector or detectors.default_detector())
    if upsample is not None and (
        isinstance(upsample, bool) or not isinstance(upsample, int) or not 0 <= upsample <= 3
    ):
        raise InvalidParameter(f"upsample must be between 0 and 3, not {upsample!r}")
    check_max_side(max_side)
    return faces.detect(decoding.as_rgb(image), max_side, upsample, detector)


def face_encodings(
    image: np.ndarray,
    known_face_locations: list[tuple[int, int, int, int]] | None = None,
    encoder: str | None = None,
) -> np.ndarray:
    """The 128-d embedding of each face in an image, the input of ``CentroidSet.classify``.

    :param image: an RGB image array (see :func:`load_image`)
    :param known_face_locations: the boxes of the faces, if already known (else detected)
    :param encoder: ``"onnx"`` or ``"dlib"`` (default: ``$ANFE_ENCODER`` or ``"onnx"``)
    :return: a float array of shape (number of faces, 128)
    """
    boxes = face_locations(image) if known_face_locations is None else known_face_locations
    return faces.encode(image, list(boxes), encoder=encoder)
