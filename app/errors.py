"""Errors only the service raises; like every project error they carry a stable ``code``."""

from __future__ import annotations

from centroids.errors import AnfeError


class Unauthorized(AnfeError):
    """``X-API-Key`` is missing or not one of ``ANFE_API_KEYS``."""

    code = "unauthorized"
    status = 401


class MalformedRequest(AnfeError):
    """The request body cannot be parsed (broken multipart, invalid JSON framing)."""

    code = "malformed_request"
    status = 400


class WorkerFailed(AnfeError):
    """A detection worker process died; the pool was restarted and the request can be retried."""

    code = "worker_failed"
    status = 503


def error_body(code: str, message: str) -> dict:
    """The JSON every error response carries: ``{"error": {"code", "message"}}``."""
    return {"error": {"code": code, "message": message}}
