"""``create_app(settings)``: the FastAPI app, its error handlers, and its start-up and shutdown.

Errors leave as ``{"error": {"code", "message"}}`` with the status that ``app/errors.py`` maps
their code to; an unexpected exception is logged with its traceback and answered 500 without one.
"""

from __future__ import annotations

import logging
import math
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from anfe.app.concurrency import RequestLimit
from anfe.app.docs import add_docs
from anfe.app.errors import ClientGone, error_body, http_status
from anfe.app.limits import OVERHEAD, BodyLimit
from anfe.app.metrics import add_metrics
from anfe.app.routes import api, open_router
from anfe.app.security import SecurityHeaders, add_cors, origins, page_headers
from anfe.app.service import Service
from anfe.app.settings import Settings
from anfe.centroids.errors import AnfeError

log = logging.getLogger("anfe.app")

DESCRIPTION = """Gender of every face in a photo, from Average Neural Face Embeddings:
each face's 128-d dlib embedding is compared with a female and a male centroid, and the nearer
one wins. Every answer carries both distances, the margin and a calibrated confidence.

Errors are `{"error": {"code": "...", "message": "..."}}`. When the service runs with
`ANFE_API_KEYS`, send one of the keys in `X-API-Key` (all routes but `/health`, `/` and the
documentation): on this page, use "Authorize"."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service. Nothing starts until the app's lifespan does (uvicorn, TestClient)."""
    settings = settings or Settings()
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="anfe",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # app/docs.py serves /docs and /redoc from local files
        redoc_url=None,
        openapi_url="/openapi.json",  # open, like the docs: see SECURITY.md
    )
    app.state.service = service
    app.state.page = (resources.files("anfe.app") / "static" / "index.html").read_text("utf-8")
    app.state.page_headers = page_headers(app.state.page)
    app.include_router(open_router)
    app.include_router(api)
    add_docs(app, "anfe")
    _add_error_handlers(app)
    predict_limit = math.ceil(settings.max_bytes * 4 / 3) + OVERHEAD  # base64 grows by 4/3
    batch_limit = settings.max_batch_files * (settings.max_bytes + OVERHEAD)
    limits = {"/predict": predict_limit, "/predict/batch": batch_limit}
    app.add_middleware(
        BodyLimit,
        limit_for=lambda path: limits.get(path.rstrip("/"), OVERHEAD),
        timeout=settings.timeout_body,
    )
    app.add_middleware(RequestLimit, limit=settings.limit_concurrency)  # before reading bodies
    add_cors(app, origins(settings.cors_origins))  # error answers carry CORS too
    metrics = add_metrics(app, settings.cpu_workers)  # counts every answer, 413s included
    service.pool.on_send = metrics.count_sent
    app.add_middleware(SecurityHeaders)  # outermost: every answer says nosniff
    return app


def app_from_env() -> FastAPI:
    """The app configured from ``ANFE_*`` variables: the factory ``anfe serve`` gives uvicorn."""
    return create_app(Settings())


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ClientDisconnect)
    async def client_disconnect(request: Request, exc: ClientDisconnect) -> JSONResponse:
        return await anfe_error(request, ClientGone("the client went away during the upload"))

    @app.exception_handler(AnfeError)
    async def anfe_error(request: Request, exc: AnfeError) -> JSONResponse:
        status = http_status(exc)
        if isinstance(exc, ClientGone):  # one line, nobody reads the answer
            client = request.client.host if request.client else "?"
            log.info("%s %s from %s: %s", request.method, request.url.path, client, exc.message)
        elif status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc.message)
        headers = {}
        if status == 401:
            headers["WWW-Authenticate"] = "X-API-Key"
        if status in (408, 413):  # stop reading an upload that may still be arriving
            headers["Connection"] = "close"
        return JSONResponse(error_body(exc.code, exc.message), status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse(error_body("invalid_parameter", "; ".join(parts)), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal error; see the server log"), 500)
