"""anfe: the gender of every face in a photo, from Average Neural Face Embeddings.

    >>> import anfe
    >>> for face in anfe.predict("photo.jpg"):
    ...     print(face["box"], face["gender"], face["confidence"])

:func:`predict` uses the centroid sets shipped with the package unless given a database;
:func:`load` returns a :class:`CentroidSet` for repeated or advanced use, with
:func:`face_locations` and :func:`face_encodings` for the steps before ``CentroidSet.classify``.

``import anfe`` does nothing but define names: the modules behind them load on first use (PEP 562),
so that ``anfe.centroids``, ``anfe.app`` and the other subpackages import without the face models.
The first use of a function that needs dlib and face_recognition checks that they are installed
(pip cannot install them as dependencies, see the README) and raises :class:`MissingDependency`,
an ``ImportError`` whose message holds the commands to run, when they are not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module that defines it
_EXPORTS = {
    "AnfeError": "anfe.centroids.errors",
    "CentroidsNotFound": "anfe.centroids.errors",
    "DatabaseUnavailable": "anfe.centroids.errors",
    "ImageNotFound": "anfe.centroids.errors",
    "ImageTooLarge": "anfe.centroids.errors",
    "ImageUndecodable": "anfe.centroids.errors",
    "InvalidImageInput": "anfe.centroids.errors",
    "InvalidParameter": "anfe.centroids.errors",
    "MissingDependency": "anfe.centroids.errors",
    "UnsupportedImageType": "anfe.centroids.errors",
    "EmbeddingSettings": "anfe.centroids.vision.settings",
    "CentroidSet": "anfe.centroids.model.centroid_set",
    "Predictions": "anfe.centroids.model.centroid_set",
    "face_encodings": "anfe.api",
    "face_locations": "anfe.api",
    "load": "anfe.api",
    "load_image": "anfe.api",
    "predict": "anfe.api",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and editors; never run
    from anfe.api import face_encodings, face_locations, load, load_image, predict
    from anfe.centroids.errors import (
        AnfeError,
        CentroidsNotFound,
        DatabaseUnavailable,
        ImageNotFound,
        ImageTooLarge,
        ImageUndecodable,
        InvalidImageInput,
        InvalidParameter,
        MissingDependency,
        UnsupportedImageType,
    )
    from anfe.centroids.model.centroid_set import CentroidSet, Predictions
    from anfe.centroids.vision.settings import EmbeddingSettings


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("anfe")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'anfe' has no attribute {name!r}")
    if module == "anfe.api":
        _check_requirements()
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def _check_requirements() -> None:
    """On first use of a function that needs them: are dlib and face_recognition installed?

    When they are not, :class:`MissingDependency` (an ``ImportError``) is raised; left uncaught,
    it is reported as one line with the commands to run, not a traceback.
    """
    import sys

    from anfe.centroids.errors import MissingDependency
    from anfe.centroids.vision import requirements

    try:
        requirements.check()
    except MissingDependency:
        previous = sys.excepthook

        def hook(kind, exc, tb):
            if issubclass(kind, MissingDependency):
                print(f"anfe: error: {exc}", file=sys.stderr)
            else:
                previous(kind, exc, tb)

        sys.excepthook = hook  # only if nothing catches it
        raise


def __dir__() -> list[str]:
    return [*__all__, "__version__"]
