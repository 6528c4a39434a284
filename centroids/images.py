"""Byte helpers for image files: which format the first bytes name, and the content hash.

Plain functions on bytes, with no image decoding and no model, so the scraper can use them
without loading dlib.
"""

from __future__ import annotations

import hashlib

# Magic bytes of the formats we read, in the order we test them.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)


def sniff_format(data: bytes) -> str | None:
    """Return the image format named by the first bytes (``"JPEG"``, ``"PNG"``, ...) or None."""
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def content_hash(data: bytes) -> str:
    """SHA-256 of the bytes, hex: the identity of an image in the embedding cache."""
    return hashlib.sha256(data).hexdigest()
