"""Errors with a stable ``code`` that the HTTP layer maps to a status and the CLI to an exit code.

Every error the project raises on purpose is an :class:`AnfeError`. Its ``code`` never changes
between releases, so clients can branch on it; its message is one readable line that never holds
a file system path of the server or a stack trace.
"""

from __future__ import annotations


class AnfeError(Exception):
    """Base class: ``code`` is stable, ``status`` is the HTTP status, ``exit_code`` the CLI's."""

    code = "anfe_error"
    status = 500
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ImageUndecodable(AnfeError):
    """The bytes are not an image we can decode (empty, truncated, corrupt)."""

    code = "image_undecodable"
    status = 400
    exit_code = 3


class ImageTooLarge(AnfeError):
    """The image has more bytes or more pixels than the configured limit."""

    code = "image_too_large"
    status = 413
    exit_code = 3


class UnsupportedImageType(AnfeError):
    """The bytes are a file type we do not read (PDF, SVG, HTML, zip, ...)."""

    code = "unsupported_media_type"
    status = 415
    exit_code = 3


class InvalidParameter(AnfeError):
    """A parameter given by the caller is out of range or malformed."""

    code = "invalid_parameter"
    status = 422
    exit_code = 2


class CentroidsNotFound(AnfeError):
    """The requested centroid set is not in the database."""

    code = "centroids_not_found"
    status = 404
    exit_code = 4


class NoCentroids(AnfeError):
    """The database holds no centroid set at all."""

    code = "no_centroids"
    status = 503
    exit_code = 4


class DatabaseUnavailable(AnfeError):
    """The database cannot be reached, opened or written."""

    code = "database_unavailable"
    status = 503
    exit_code = 5


class DatasetError(AnfeError):
    """A dataset folder is missing or has no labelled images in a known layout."""

    code = "dataset_invalid"
    status = 422
    exit_code = 2
