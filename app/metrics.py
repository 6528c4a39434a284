"""Prometheus metrics of the service, served by ``GET /metrics`` in the text exposition format.

Counted: HTTP requests and their latency by method, route template (``/centroids/{cid}``, never
the raw path; ``unmatched`` for unknown paths) and status; error answers by error code (also
each failed file of a batch); faces classified; the detection worker processes; and what the
service sends them: images, bytes, and centroid sets (sent once per worker and set version).

Each app has its own registry (no global state between apps in one process). With several
server processes (``anfe serve --workers N``) each would count only its own requests, so
``anfe serve`` then points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before the processes
start, and ``/metrics`` adds up every process's files (prometheus_client's multiprocess mode;
the worker gauge sums the live processes).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LABELS = ("method", "route", "status")


class Metrics:
    """The service's counters, histogram and gauge, in a registry of their own."""

    def __init__(self, detection_workers: int) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("anfe_http_requests", "HTTP requests answered", LABELS, registry=r)
        self.latency = Histogram(
            "anfe_http_request_duration_seconds",
            "time from the request's arrival to the end of its answer",
            LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "anfe_errors", "error answers (and failed files of a batch) by error code", ["code"],
            registry=r,
        )  # fmt: skip
        self.faces = Counter("anfe_faces_classified", "faces classified", registry=r)
        self.workers = Gauge(
            "anfe_detection_workers",
            "face detection processes of the service",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.workers.set(detection_workers)
        self.worker_images = Counter(
            "anfe_worker_images", "images sent to the detection workers", registry=r
        )
        self.worker_bytes = Counter(
            "anfe_worker_sent_bytes",
            "bytes pickled to the detection workers: images, limits, and a centroid set when "
            "the worker does not hold it yet",
            registry=r,
        )
        self.worker_sets = Counter(
            "anfe_worker_set_transfers",
            "centroid sets pickled to a detection worker: once per worker and set version, "
            "again after a worker is replaced or has dropped the set",
            registry=r,
        )

    def exposition(self) -> bytes:
        """Every metric in the text format: this process's, or all processes' in multiprocess mode."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)

    def count_sent(self, set_sent: bool, nbytes: int) -> None:
        """Count one image sent to a detection worker (``CpuPool``'s ``on_send``)."""
        self.worker_images.inc()
        self.worker_bytes.inc(nbytes)
        if set_sent:
            self.worker_sets.inc()

    def count_result(self, result: dict[str, Any]) -> None:
        """Count the faces of one image's answer."""
        self.faces.inc(len(result.get("faces", ())))


class MetricsMiddleware:
    """Pure ASGI middleware: times every HTTP request and reads the code of each error answer."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        error_body: list[bytes] | None = None

        async def watch(message) -> None:
            nonlocal status, error_body
            if message["type"] == "http.response.start":
                status = message["status"]
                error_body = [] if status >= 400 else None
            elif message["type"] == "http.response.body" and error_body is not None:
                error_body.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            labels = (scope["method"], route, str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - start)
            if error_body is not None:
                self.metrics.errors.labels(_error_code(b"".join(error_body))).inc()


def _error_code(body: bytes) -> str:
    """The ``code`` of an ``{"error": {"code", "message"}}`` body (``unknown`` for any other)."""
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "unknown"


def add_metrics(app: FastAPI, detection_workers: int) -> Metrics:
    """Count the app's requests and serve them at ``GET /metrics`` (open, like ``/health``)."""
    metrics = Metrics(detection_workers)
    app.state.metrics = metrics

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return metrics
