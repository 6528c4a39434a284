"""Byte helpers for image files: which format the first bytes name, the byte limit, the hash.

Plain functions on bytes, with no image decoding and no model, so the scraper can use them
without loading dlib.
"""

from __future__ import annotations

import hashlib

from anfe.centroids.errors import ImageTooLarge, ImageUndecodable, UnsupportedImageType

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


def image_format(data: bytes) -> str:
    """The format of image bytes, refusing what no decoder of ours reads before any decoding.

    :raises ImageUndecodable: the bytes are empty
    :raises UnsupportedImageType: the first bytes name no format we read (PDF, SVG, TIFF, ...)
    """
    if not data:
        raise ImageUndecodable("the image is empty (0 bytes)")
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedImageType("not a JPEG, PNG, WebP, BMP or GIF image")
    return fmt


def too_many_bytes(
    size: int, limit: int, what: str = "the image", exact: bool = True
) -> ImageTooLarge:
    """The error for ``what`` holding ``size`` bytes (more than ``size`` when not ``exact``: a
    stream cut short at the limit) over ``limit``: one wording wherever bytes are counted."""
    has = f"{size}" if exact else f"more than {size}"
    return ImageTooLarge(f"{what} has {has} bytes; the limit is {limit}")


def content_hash(data: bytes) -> str:
    """SHA-256 of the bytes, hex: the identity of an image in the embedding cache."""
    return hashlib.sha256(data).hexdigest()
