"""anfe: the gender of every face in a photo, from Average Neural Face Embeddings.

    >>> import anfe
    >>> for face in anfe.predict("photo.jpg"):
    ...     print(face["box"], face["gender"], face["confidence"])

:func:`predict` uses the centroid sets shipped with the package unless given a database;
:func:`load` returns a :class:`CentroidSet` for repeated or advanced use, with
:func:`face_locations` and :func:`face_encodings` for the steps before ``CentroidSet.classify``.

Importing anfe checks that dlib and face_recognition are installed (pip cannot install them as
dependencies, see the README); when they are not, it raises :class:`MissingDependency`, an
``ImportError`` that an uncaught ``import anfe`` reports as one line with the commands to run.
"""

from __future__ import annotations

import sys
from importlib.metadata import version

from centroids import requirements as _requirements
from centroids.errors import (
    AnfeError,
    CentroidsNotFound,
    DatabaseUnavailable,
    ImageTooLarge,
    ImageUndecodable,
    InvalidParameter,
    MissingDependency,
    UnsupportedImageType,
)


def _report_in_one_line(previous):
    def hook(kind, exc, tb):
        if issubclass(kind, MissingDependency):
            print(f"anfe: error: {exc}", file=sys.stderr)
        else:
            previous(kind, exc, tb)

    return hook


try:
    _requirements.check()
except MissingDependency:
    sys.excepthook = _report_in_one_line(sys.excepthook)  # only if nothing catches it
    raise

from anfe.api import face_encodings, face_locations, load, load_image, predict  # noqa: E402
from centroids.faces import EmbeddingSettings  # noqa: E402
from centroids.model import CentroidSet, Predictions  # noqa: E402

__version__ = version("anfe")
__all__ = [
    "AnfeError",
    "CentroidSet",
    "CentroidsNotFound",
    "DatabaseUnavailable",
    "EmbeddingSettings",
    "ImageTooLarge",
    "ImageUndecodable",
    "InvalidParameter",
    "MissingDependency",
    "Predictions",
    "UnsupportedImageType",
    "face_encodings",
    "face_locations",
    "load",
    "load_image",
    "predict",
]
