"""Errors with a stable ``code`` and a one-line message.

Every error the project raises on purpose is an :class:`AnfeError`. Its ``code`` never changes
between releases, so clients can branch on it; its message is one readable line that never holds
a file system path of the server or a stack trace (save the two encoder cache errors, which name
the cache folder for the operator: they stop a start-up, and no request ever meets them). The model knows nothing of HTTP or of exit
codes: the service (``anfe/app/errors.py``) maps codes to HTTP statuses, the ``anfe`` command
(``anfe/cli.py``) maps each error's ``kind`` (what went wrong, for a script: ``usage``, ``image``,
``centroids``, ``database``, ``model``, ``download``) to an exit code.
"""

from __future__ import annotations


class AnfeError(Exception):
    """Base class: ``code`` is stable, ``message`` one readable line."""

    code = "anfe_error"
    kind = "failure"  # the kind of failure, which the anfe command turns into its exit code

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ImageUndecodable(AnfeError):
    """The bytes are not an image we can decode (empty, truncated, corrupt)."""

    code = "image_undecodable"
    kind = "image"


class ImageNotFound(AnfeError):
    """No image file at the path given (missing, or a folder)."""

    code = "image_not_found"
    kind = "image"


class ImageTooLarge(AnfeError):
    """The image has more bytes or more pixels than the configured limit."""

    code = "image_too_large"
    kind = "image"


class UnsupportedImageType(AnfeError):
    """The bytes are a file type we do not read (PDF, SVG, HTML, zip, ...)."""

    code = "unsupported_media_type"
    kind = "image"


class InvalidParameter(AnfeError):
    """A parameter given by the caller is out of range or malformed."""

    code = "invalid_parameter"
    kind = "usage"


class InvalidImageInput(InvalidParameter, TypeError):
    """What was given as an image is none of the accepted kinds (a path, bytes, a PIL image, a
    numpy array); a ``TypeError`` too."""


class ImageOverBudget(AnfeError):
    """Decoding and detecting faces in the image took longer than its time budget."""

    code = "image_over_budget"
    kind = "image"


class CentroidsNotFound(AnfeError):
    """The requested centroid set is not in the database."""

    code = "centroids_not_found"
    kind = "centroids"


class NoCentroids(AnfeError):
    """The database holds no centroid set at all."""

    code = "no_centroids"
    kind = "centroids"


class DatabaseUnavailable(AnfeError):
    """The database cannot be reached, opened or written."""

    code = "database_unavailable"
    kind = "database"


class MissingDependency(AnfeError, ImportError):
    """dlib, face_recognition or its models are not installed (pip cannot install them for us).

    Also an :class:`ImportError`, so ``import anfe`` can raise it where callers expect one.
    """

    code = "missing_dependency"


class DatasetError(AnfeError):
    """A dataset folder is missing or has no labelled images in a known layout."""

    code = "dataset_invalid"
    kind = "usage"


class ModelFileInvalid(AnfeError):
    """The dlib model file is missing, truncated, or not the network we know how to read."""

    code = "model_file_invalid"
    kind = "model"


class EncoderCacheUnwritable(AnfeError):
    """The folder of converted face encoders cannot be created or written (the message names it)."""

    code = "encoder_cache_unwritable"
    kind = "model"


class EncoderCacheUnreadable(AnfeError):
    """A converted face encoder is in the cache folder but this process may not read it (another
    user's file). It is left in place; the message names the folder and the fix. Raised where the
    encoder is prepared or loaded (``anfe prepare``, the start of ``anfe serve`` and of its
    workers), never in an answer to a request, so naming the folder tells no client a path."""

    code = "encoder_cache_unreadable"
    kind = "model"
