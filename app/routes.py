"""The routes: thin functions that read the request, call the service and shape the answer."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Security
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import APIKeyHeader

from anfe.app import uploads
from anfe.app.errors import Unauthorized, http_status
from anfe.app.schemas import (
    ERROR_RESPONSES,
    BatchItem,
    BatchResponse,
    CentroidDetail,
    CentroidList,
    CentroidSummary,
    ErrorDetail,
    Health,
    PredictResponse,
)
from anfe.app.security import key_matches
from anfe.app.service import Service
from anfe.centroids.errors import AnfeError
from anfe.centroids.predict import check_max_side
from anfe.centroids.vision import detectors

log = logging.getLogger("anfe.app")
api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="One of the service's ANFE_API_KEYS; needed only when the service has keys.",
)

CentroidsQuery = Annotated[
    str | None,
    Query(max_length=64, description="centroid set id, e.g. g_5000 (default: the service's)"),
]
MaxFacesQuery = Annotated[
    int | None, Query(ge=1, le=100, description="classify at most this many faces, largest first")
]
DetectorQuery = Annotated[
    str | None,
    Query(
        max_length=16,
        description="face detector: hog (dlib's HOG) or cnn (dlib's CNN, on onnxruntime: also "
        "turned and tilted faces); default: the service's. Also a multipart field.",
    ),
]
MaxSideQuery = Annotated[
    int | None,
    Query(
        description="faces are searched on a copy whose longest side is this many pixels "
        "(default: 800); 0: the photo at full resolution, in tiles (small faces in large "
        "photos, within the per-image time budget). Also a multipart field.",
    ),
]

PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "detector": {"type": "string", "enum": list(detectors.DETECTORS)},
                        "max_side": {"type": "integer", "minimum": 0},
                    },
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["image_base64"],
                    "properties": {"image_base64": {"type": "string", "format": "byte"}},
                }
            },
        },
    }
}
BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            }
        },
    }
}


def service(request: Request) -> Service:
    return request.app.state.service


async def require_key(
    request: Request, key: Annotated[str | None, Security(api_key_header)] = None
) -> None:
    """When ``ANFE_API_KEYS`` is set, the request must carry one of them in ``X-API-Key``."""
    keys = request.app.state.service.settings.key_set()
    if not keys:
        return
    if not key_matches(key, keys):  # constant time; the key is never logged
        raise Unauthorized("send a valid API key in the X-API-Key header")


Svc = Annotated[Service, Depends(service)]
open_router = APIRouter()
api = APIRouter(dependencies=[Depends(require_key)], responses=ERROR_RESPONSES)


@open_router.api_route(
    "/", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False
)
async def upload_page(request: Request) -> HTMLResponse:
    return HTMLResponse(request.app.state.page, headers=request.app.state.page_headers)


@open_router.head("/health", include_in_schema=False)
async def health_head(svc: Svc) -> JSONResponse:
    """``HEAD /health``: the status code of ``GET /health`` (monitors and load balancers)."""
    return await health(svc)


@open_router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "not ready: see the fields"}},
    summary="Database reachable, centroids available, models loaded",
)
async def health(svc: Svc) -> JSONResponse:
    cache = await svc.health_view()  # never waits on a slow database: < 100 ms
    db_ok, db_error = cache.status()
    ids = cache.ids() if db_ok else []
    pool = svc.pool.status()
    ok = db_ok and cache.default() in ids and pool["ready"]
    body = Health(
        status="ok" if ok else "unavailable",
        database={"ok": db_ok, "kind": cache.kind, "error": db_error},
        centroids=ids,
        default_centroids=cache.default() if ids else None,
        model_loaded=pool["ready"],
        workers=pool["size"],
        workers_ready=pool["ready_count"],
        workers_replaced=pool["replaced"],
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@api.post(
    "/predict",
    response_model=PredictResponse,
    openapi_extra=PREDICT_BODY,
    summary="Gender of every face in one image",
)
async def predict(
    request: Request,
    svc: Svc,
    centroids: CentroidsQuery = None,
    max_faces: MaxFacesQuery = None,
    detector: DetectorQuery = None,
    max_side: MaxSideQuery = None,
) -> dict:
    _check_options(detector, max_side)  # 422 before reading a large body
    cs = await svc.centroid_set(centroids)  # 404/503 before reading a large body
    data, fields = await uploads.predict_upload(request, svc.settings.max_bytes)
    detector = detector if detector is not None else fields.get("detector")
    max_side = max_side if max_side is not None else fields.get("max_side")
    result = await svc.predict(
        data, cs, max_faces, request.is_disconnected, detector=detector, max_side=max_side
    )
    request.app.state.metrics.count_result(result)
    return result


@api.post(
    "/predict/batch",
    response_model=BatchResponse,
    openapi_extra=BATCH_BODY,
    summary="Several images at once: one result or one error per file, in order",
)
async def predict_batch(
    request: Request,
    svc: Svc,
    centroids: CentroidsQuery = None,
    max_faces: MaxFacesQuery = None,
    detector: DetectorQuery = None,
    max_side: MaxSideQuery = None,
) -> BatchResponse:
    _check_options(detector, max_side)
    cs = await svc.centroid_set(centroids)
    s = svc.settings
    files = await uploads.batch_uploads(request, s.max_bytes, s.max_batch_files)
    metrics = request.app.state.metrics

    async def one(i: int, up: uploads.Upload) -> BatchItem:
        try:
            if up.error:
                raise up.error
            result = await svc.predict(
                up.data, cs, max_faces, request.is_disconnected, detector, max_side
            )
            metrics.count_result(result)
            return BatchItem(index=i, filename=up.filename, status=200, result=result)
        except AnfeError as exc:
            metrics.errors.labels(exc.code).inc()
            err = ErrorDetail(code=exc.code, message=exc.message)
            return BatchItem(index=i, filename=up.filename, status=http_status(exc), error=err)
        except Exception:
            metrics.errors.labels("internal_error").inc()
            log.exception("batch file %d (%s) failed", i, up.filename)
            err = ErrorDetail(code="internal_error", message="internal error; see the server log")
            return BatchItem(index=i, filename=up.filename, status=500, error=err)

    results = await asyncio.gather(*(one(i, up) for i, up in enumerate(files)))
    return BatchResponse(centroids=cs.id, results=list(results))


@api.get("/centroids", response_model=CentroidList, summary="The stored centroid sets")
async def list_centroids(svc: Svc) -> CentroidList:
    cache = await svc.centroids()
    default = cache.default() if cache.ids() else None
    items = [_summary(cid, fields, default) for cid, fields in cache.summaries()]
    return CentroidList(default=default, centroids=items)


@api.get(
    "/centroids/{cid}", response_model=CentroidDetail, summary="One centroid set with its vectors"
)
async def get_centroids(svc: Svc, cid: Annotated[str, Path(max_length=64)]) -> CentroidDetail:
    cache = await svc.centroids()
    summary = _summary(cid, cache.summary(cid), cache.default())
    return CentroidDetail(**summary.model_dump(), vectors=cache.vectors(cid))


def _summary(cid: str, fields: dict, default: str | None) -> CentroidSummary:
    return CentroidSummary(id=cid, default=cid == default, **_finite(fields))


def _finite(value):
    """The value with NaN and infinities replaced by None, which JSON cannot carry."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _check_options(detector: str | None, max_side: int | None) -> None:
    """:raises InvalidParameter: an unknown detector, a ``max_side`` neither 0 nor >= 64"""
    if detector is not None:
        detectors.check(detector)
    check_max_side(max_side)
