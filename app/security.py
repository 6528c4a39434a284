"""API-key checks and cross-origin (CORS) settings: the service's security knobs in one place.

Keys are compared in constant time: each candidate and each configured key are first hashed to
SHA-256 digests of equal length, and every configured key is compared (no early exit), so the
time taken tells neither how much of a key matched, nor its length, nor which key it was.
Keys are never logged. CORS is off unless ``ANFE_CORS_ORIGINS`` names the allowed origins.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def key_matches(given: str | None, keys: Iterable[str]) -> bool:
    """Whether ``given`` is one of ``keys``, in time that depends only on how many keys there are."""
    candidate = _digest(given or "")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, _digest(key))
    return matched and bool(given)


def origins(text: str) -> list[str]:
    """``"https://a.example, https://b.example"`` → the list; ``""`` → ``[]`` (CORS off)."""
    return [o.strip().rstrip("/") for o in text.split(",") if o.strip()]


def add_cors(app: FastAPI, allowed: list[str]) -> None:
    """Let browsers on ``allowed`` origins call the API (``*``: any origin). Nothing if empty."""
    if not allowed:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=allowed,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "X-API-Key"],
        allow_credentials=False,
        max_age=600,
    )
