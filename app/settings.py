"""Service settings, read once from ``ANFE_*`` environment variables into one pydantic object."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from anfe.app.pool import WORKER_SETS
from anfe.centroids.cpus import usable_cpus
from anfe.centroids.imaging import decoding
from anfe.centroids.storage.store import default_uri

# the slowest real photo measured took 6.3 s (a 4000x3000 PNG, perf/image_budget.py on a
# busy 2-core machine); the budget leaves a few seconds beyond it
IMAGE_BUDGET_SECONDS = 10.0


class Settings(BaseSettings):
    """Everything the service can be told, e.g. ``ANFE_DB=mongodb://mongo:27017``.

    ``api_keys`` is a comma-separated list; empty means the API is open.
    """

    model_config = SettingsConfigDict(env_prefix="ANFE_", extra="ignore")

    db: str = Field(default_factory=default_uri, description="database URI or embedded folder")
    centroids: str | None = Field(
        None, description="default centroid set id (else g_5000-mahalanobis, else the largest)"
    )
    max_bytes: int = Field(decoding.DEFAULT_MAX_BYTES, ge=1, description="largest upload, in bytes")
    max_pixels: int = Field(
        decoding.DEFAULT_MAX_PIXELS, ge=1, description="largest image, in pixels"
    )
    max_image_side: int = Field(
        decoding.DEFAULT_MAX_IMAGE_SIDE, ge=1, description="longest side of an image, in pixels"
    )
    max_decoded_bytes: int = Field(
        decoding.DEFAULT_MAX_DECODED_BYTES, ge=1, description="largest image once decoded, in bytes"
    )
    max_faces: int = Field(20, ge=1, le=100, description="default faces classified per image")
    max_batch_files: int = Field(16, ge=1, le=256, description="most files in one batch request")
    api_keys: str = Field("", description="comma-separated keys; when set, X-API-Key is required")
    cors_origins: str = Field(
        "",
        description="comma-separated origins browsers may call the API from ('*': any); "
        "empty: CORS off",
    )
    cpu_workers: int = Field(default_factory=usable_cpus, ge=1, description="detection processes")
    encoder: Literal["onnx", "dlib"] = Field(
        "onnx", description="face encoder: onnx (dlib's network on onnxruntime) or dlib"
    )
    detector: Literal["hog", "cnn"] = Field(
        "hog",
        description="default face detector: hog (dlib's HOG) or cnn (dlib's CNN on onnxruntime); "
        "a request may ask for the other",
    )
    image_budget_seconds: float = Field(
        IMAGE_BUDGET_SECONDS,
        gt=0,
        description="most time one image may take to decode and detect faces in; then 422",
    )
    limit_concurrency: int = Field(
        32,
        ge=1,
        description="requests in progress per server process; past it 503 server_busy "
        "(each JSON upload may hold 28 MB in memory)",
    )
    timeout_keep_alive: float = Field(
        5.0, gt=0, description="seconds an idle kept-alive connection stays open"
    )
    timeout_headers: float = Field(
        10.0, gt=0, description="seconds for a request's line and headers to arrive, then closed"
    )
    timeout_body: float = Field(
        15.0, gt=0, description="seconds without a byte of an unfinished body, then 408"
    )
    refresh_seconds: float = Field(2.0, ge=0, description="how often to look for changed centroids")
    worker_sets: int = Field(
        WORKER_SETS,
        ge=0,
        description="centroid sets each detection process keeps between requests "
        "(0: the set is sent with every image)",
    )
    seed: bool = Field(True, description="seed the shipped centroid sets into an empty database")

    @field_validator("centroids", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return v or None

    def key_set(self) -> frozenset[str]:
        """The accepted API keys (empty: no key needed)."""
        return frozenset(k.strip() for k in self.api_keys.split(",") if k.strip())
