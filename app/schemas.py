"""Request and response schemas of the HTTP API, so the OpenAPI document is exact."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Box(BaseModel):
    """A face box in pixels of the upright image (EXIF orientation applied)."""

    top: int
    right: int
    bottom: int
    left: int


class Distances(BaseModel):
    """Euclidean distance of the face embedding to each gender centroid."""

    female: float
    male: float


class Age(BaseModel):
    """Estimated age in years, with an interval from held-out errors (see centroids/model/age.py)."""

    value: float
    low: float = Field(description="lower end of the interval (nominal coverage 90 %)")
    high: float = Field(description="upper end of the interval")
    model: str = Field(
        description="the centroid set whose age model answered: the set's own, or the shipped "
        "default's for a set stored without one"
    )
    under_13: float | None = Field(
        default=None,
        description="probability that the face is under 13, by which the set's child policy "
        "routed it (null: the set has no child router); docs/results.md shows what treating "
        "higher values as uncertain would cost",
    )


class Face(BaseModel):
    box: Box
    gender: str = Field(description="'female' or 'male': the nearer centroid")
    distances: Distances
    margin: float = Field(description="|d_female - d_male|")
    confidence: float = Field(ge=0.5, le=1.0, description="calibrated from the margin")
    uncertain: bool = Field(description="margin below the set's threshold")
    in_range: bool = Field(description="distance within what training faces showed")
    age: Age | None = Field(
        description="estimated age (a set stored without an age model borrows the shipped "
        "default's)"
    )
    detection: Literal["first_pass", "second_pass"] = Field(
        description="second_pass: found only on a copy with a margin around the picture "
        "(tight crops)"
    )


class ImageSize(BaseModel):
    width: int
    height: int


class PredictResponse(BaseModel):
    centroids: str = Field(description="id of the centroid set used")
    image: ImageSize
    faces: list[Face] = Field(description="every face found, left to right; empty if none")
    timings_ms: dict[str, float]


class PredictJSON(BaseModel):
    """The JSON form of ``POST /predict``: the image as base64 (a data: URL prefix is allowed)."""

    model_config = ConfigDict(extra="forbid")

    image_base64: str


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, e.g. image_undecodable, image_too_large")
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class BatchItem(BaseModel):
    """One file of a batch: its result, or its error and the status it would have had alone."""

    index: int
    filename: str | None
    status: int
    result: PredictResponse | None = None
    error: ErrorDetail | None = None


class BatchResponse(BaseModel):
    centroids: str
    results: list[BatchItem] = Field(description="one entry per file, in upload order")


class CentroidSummary(BaseModel):
    """What a stored centroid set is: size, provenance, embedding settings, calibration."""

    model_config = ConfigDict(extra="allow")

    id: str
    per_gender: int | None = None
    mode: str = "centroid"
    counts: dict[str, int] = {}
    embedding: dict[str, Any] = {}
    source: dict[str, Any] = {}
    calibration: dict[str, Any] = {}
    working_range: dict[str, Any] = {}
    created_at: str | None = Field(None, description="when the set was built")
    revision: str | None = Field(
        None, description="SHA-256 of the stored document, new at every write that changes it"
    )
    default: bool = Field(False, description="used when a request names no set")

    @field_validator("source")
    @classmethod
    def _dataset_name_only(cls, source: dict[str, Any]) -> dict[str, Any]:
        """The dataset's folder name, never the server's path to it."""
        if isinstance(source.get("dataset"), str):
            return {**source, "dataset": PurePath(source["dataset"]).name}
        return source


class CentroidList(BaseModel):
    default: str | None
    centroids: list[CentroidSummary]


class CentroidDetail(CentroidSummary):
    vectors: dict[str, list[float]] = Field(description="the female and male 128-d centroids")


class DatabaseHealth(BaseModel):
    ok: bool
    kind: str
    error: str | None = None


class Health(BaseModel):
    status: str = Field(description="'ok' or 'unavailable'")
    database: DatabaseHealth
    centroids: list[str]
    default_centroids: str | None
    model_loaded: bool
    workers: int = Field(description="detection worker processes configured")
    workers_ready: int = Field(description="of them, alive with their models loaded now")
    workers_replaced: int = Field(
        description="workers that died, overran the budget or were abandoned, and were replaced"
    )


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (400, "undecodable image or malformed request"),
        (401, "X-API-Key missing or wrong (only when ANFE_API_KEYS is set)"),
        (404, "unknown centroid set"),
        (413, "image over the byte or pixel limit"),
        (415, "not a JPEG, PNG, WebP, BMP or GIF"),
        (422, "bad parameter"),
        (503, "database unreachable or holding no centroids, or the server busy"),
    )
}
