"""The service's errors, and the one place where error codes become HTTP statuses.

Every project error carries a stable ``code`` and a message; :func:`http_status` gives the status
the service answers it with (500 for a code it does not know).
"""

from __future__ import annotations

import json

from anfe.centroids.builder.dask_pool import DaskUnavailable
from anfe.centroids.errors import (
    AnfeError,
    CentroidsNotFound,
    DatabaseUnavailable,
    DatasetError,
    EncoderCacheUnreadable,
    EncoderCacheUnwritable,
    ImageNotFound,
    ImageOverBudget,
    ImageTooLarge,
    ImageUndecodable,
    InvalidParameter,
    ModelFileInvalid,
    NoCentroids,
    UnsupportedImageType,
)


class Unauthorized(AnfeError):
    """``X-API-Key`` is missing or not one of ``ANFE_API_KEYS``."""

    code = "unauthorized"


class MalformedRequest(AnfeError):
    """The request body cannot be parsed (broken multipart, invalid JSON framing)."""

    code = "malformed_request"


class WorkerFailed(AnfeError):
    """A detection worker process died; the pool was restarted and the request can be retried."""

    code = "worker_failed"


class BodyTimeout(AnfeError):
    """The client stopped sending a body it had announced (``ANFE_TIMEOUT_BODY``)."""

    code = "request_timeout"


class ServerBusy(AnfeError):
    """The server process already has ``ANFE_LIMIT_CONCURRENCY`` requests in progress."""

    code = "server_busy"


class ClientGone(AnfeError):
    """The client closed the connection before its answer was ready; nobody reads this."""

    code = "client_closed_request"


HTTP_STATUS: dict[str, int] = {
    ImageUndecodable.code: 400,
    ImageNotFound.code: 400,
    MalformedRequest.code: 400,
    BodyTimeout.code: 408,
    Unauthorized.code: 401,
    CentroidsNotFound.code: 404,
    ImageTooLarge.code: 413,
    UnsupportedImageType.code: 415,
    InvalidParameter.code: 422,
    ImageOverBudget.code: 422,
    DatasetError.code: 422,
    NoCentroids.code: 503,
    DatabaseUnavailable.code: 503,
    DaskUnavailable.code: 503,
    WorkerFailed.code: 503,
    ServerBusy.code: 503,
    # the face encoder cannot be loaded: the service cannot classify until an operator acts
    ModelFileInvalid.code: 503,
    EncoderCacheUnwritable.code: 503,
    EncoderCacheUnreadable.code: 503,
    ClientGone.code: 499,  # nginx's convention for a request its client abandoned
}


def http_status(exc: AnfeError) -> int:
    """The HTTP status of a project error (500 for a code the service does not expect)."""
    return HTTP_STATUS.get(exc.code, 500)


def error_body(code: str, message: str) -> dict:
    """The JSON every error response carries: ``{"error": {"code", "message"}}``."""
    return {"error": {"code": code, "message": message}}


async def send_error(
    send, exc: AnfeError, close: bool = False, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer ``exc`` straight on an ASGI ``send``, outside FastAPI's error handlers (middleware).

    ``close`` asks the server to close the connection after the answer (a body left unread).
    """
    body = json.dumps(error_body(exc.code, exc.message)).encode()
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    start += [(b"connection", b"close")] if close else []
    await send(
        {
            "type": "http.response.start",
            "status": http_status(exc),
            "headers": start + (headers or []),
        }
    )
    await send({"type": "http.response.body", "body": body})
