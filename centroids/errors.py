"""Errors with a stable ``code`` and a one-line message; the CLI exits with the error's code.

Every error the project raises on purpose is an :class:`AnfeError`. Its ``code`` never changes
between releases, so clients can branch on it; its message is one readable line that never holds
a file system path of the server or a stack trace. The model knows nothing of HTTP: the service
(``app/errors.py``) maps codes to HTTP statuses.
"""

from __future__ import annotations


class AnfeError(Exception):
    """Base class: ``code`` is stable, ``message`` one readable line, ``exit_code`` the CLI's."""

    code = "anfe_error"
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ImageUndecodable(AnfeError):
    """The bytes are not an image we can decode (empty, truncated, corrupt)."""

    code = "image_undecodable"
    exit_code = 3


class ImageTooLarge(AnfeError):
    """The image has more bytes or more pixels than the configured limit."""

    code = "image_too_large"
    exit_code = 3


class UnsupportedImageType(AnfeError):
    """The bytes are a file type we do not read (PDF, SVG, HTML, zip, ...)."""

    code = "unsupported_media_type"
    exit_code = 3


class InvalidParameter(AnfeError):
    """A parameter given by the caller is out of range or malformed."""

    code = "invalid_parameter"
    exit_code = 2


class ImageOverBudget(AnfeError):
    """Decoding and detecting faces in the image took longer than its time budget."""

    code = "image_over_budget"
    exit_code = 3


class CentroidsNotFound(AnfeError):
    """The requested centroid set is not in the database."""

    code = "centroids_not_found"
    exit_code = 4


class NoCentroids(AnfeError):
    """The database holds no centroid set at all."""

    code = "no_centroids"
    exit_code = 4


class DatabaseUnavailable(AnfeError):
    """The database cannot be reached, opened or written."""

    code = "database_unavailable"
    exit_code = 5


class MissingDependency(AnfeError, ImportError):
    """dlib, face_recognition or its models are not installed (pip cannot install them for us).

    Also an :class:`ImportError`, so ``import anfe`` can raise it where callers expect one.
    """

    code = "missing_dependency"
    exit_code = 1


class DatasetError(AnfeError):
    """A dataset folder is missing or has no labelled images in a known layout."""

    code = "dataset_invalid"
    exit_code = 2


class ModelFileInvalid(AnfeError):
    """The dlib model file is missing, truncated, or not the network we know how to read."""

    code = "model_file_invalid"
    exit_code = 6


class EncoderCacheUnwritable(AnfeError):
    """The folder of converted face encoders cannot be created or written."""

    code = "encoder_cache_unwritable"
    exit_code = 6
