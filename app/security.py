"""API-key checks and cross-origin (CORS) settings: the service's security knobs in one place.

Keys are compared in constant time: each candidate and each configured key are first hashed to
SHA-256 digests of equal length, and every configured key is compared (no early exit), so the
time taken tells neither how much of a key matched, nor its length, nor which key it was.
Keys are never logged. CORS is off unless ``ANFE_CORS_ORIGINS`` names the allowed origins.
Every answer says ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``; the
upload page also carries a Content-Security-Policy allowing only its own inline script (by
hash) and calls to this server, and may not be framed by another site.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
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


COMMON_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]


class SecurityHeaders:
    """ASGI middleware: :data:`COMMON_HEADERS` on every answer."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message):
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in COMMON_HEADERS if n not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def page_headers(page: str) -> dict[str, str]:
    """Headers of the upload page: a CSP naming the page's inline scripts by their SHA-256."""
    scripts = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", page, flags=re.S)
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in scripts
    )
    policy = "; ".join(
        (
            "default-src 'self'",
            f"script-src 'self' {hashes}".strip(),
            "style-src 'self' 'unsafe-inline'",  # the page's own <style> and style attributes
            "img-src 'self' blob: data:",  # the chosen photo is shown from a blob: URL
            "media-src 'self' blob: mediastream:",  # a camera preview
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )
    return {"Content-Security-Policy": policy, "X-Frame-Options": "DENY"}
