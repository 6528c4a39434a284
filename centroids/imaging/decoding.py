"""Image bytes or paths in, RGB arrays out: size limits, formats, EXIF orientation, alpha.

Every image the project reads goes through :func:`read_bytes` and :func:`decode` (or
:func:`as_rgb` for what a caller decoded), so the limits on bytes, pixels and sides hold
everywhere, and an image that cannot be read raises an error with a stable code.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps

from anfe.centroids.errors import (
    ImageNotFound,
    ImageTooLarge,
    ImageUndecodable,
    InvalidParameter,
    UnsupportedImageType,
)
from anfe.centroids.imaging.formats import image_format, too_many_bytes

ImageSource = str | Path | bytes | bytearray | memoryview


DEFAULT_MAX_BYTES = 20 * 1024 * 1024


DEFAULT_MAX_PIXELS = 40_000_000


# Pillow keeps one pointer per row: a 1 x 40,000,000 image costs GBs before a pixel is decoded
DEFAULT_MAX_IMAGE_SIDE = 16384


DEFAULT_MAX_DECODED_BYTES = 4 * DEFAULT_MAX_PIXELS  # the pixel limit at 4 bytes per pixel


# bytes per pixel of Pillow's in-memory modes; every other mode (RGB, RGBA, CMYK, I, F...) is 4
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}


_ROWS_PER_CHUNK = 64  # rows copied out of Pillow at a time: small temporaries


def read_bytes(source: ImageSource, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Return the bytes of a path or a bytes-like object, refusing more than ``max_bytes``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise too_many_bytes(size, max_bytes, "image")
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ImageNotFound(f"no image file {path.name!r}: {exc.strerror}") from None
        except PermissionError as exc:
            raise ImageUndecodable(
                f"cannot read image file {path.name!r}: {exc.strerror}"
            ) from None
    if len(data) > max_bytes:
        raise too_many_bytes(len(data), max_bytes, "image")
    return data


def decode(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_IMAGE_SIDE,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> np.ndarray:
    """Decode image bytes into an RGB ``uint8`` array of shape (height, width, 3).

    EXIF orientation is applied, transparency is flattened onto white, 16-bit and greyscale
    images are brought to 8-bit RGB (in integers, a few rows at a time: no float copy of the
    image), and only the first frame of an animation is used.

    :raises ImageUndecodable: empty, truncated or corrupt bytes
    :raises UnsupportedImageType: bytes of a format we do not read (PDF, SVG, HTML, zip, TIFF...)
    :raises ImageTooLarge: more than ``max_pixels`` pixels, a side longer than ``max_side``, or
        more than ``max_decoded_bytes`` once decoded; all checked from the header, before
        decoding the pixels
    """
    fmt = image_format(data)
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # face_recognition sets it to True on import
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            _check_size(img, max_pixels, max_side, max_decoded_bytes)
            img.seek(0)
            img.load()
            img = _oriented(img)
            rgb = _to_rgb(img)
    except (ImageTooLarge, UnsupportedImageType):
        raise
    except Image.DecompressionBombError:  # Pillow's own limit, past ours: say the size anyway
        _check_size(_header_only(data, fmt), max_pixels, max_side, max_decoded_bytes)
        raise ImageTooLarge(f"image has more than {max_pixels} pixels") from None
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise ImageUndecodable(f"cannot decode the {fmt} image: {_short(exc)}") from None
    return rgb


def _header_only(data: bytes, fmt: str) -> Image.Image:
    """The image of ``data`` opened by its format's reader alone, so without Pillow's
    decompression-bomb check: its header (size, mode), never its pixels."""
    factory, _ = Image.OPEN[fmt]
    return factory(io.BytesIO(data), "")


def _check_size(img: Image.Image, max_pixels: int, max_side: int, max_decoded_bytes: int) -> None:
    width, height = img.size
    if width * height > max_pixels or max(width, height) > max_side:
        raise ImageTooLarge(
            f"image is {width}x{height} pixels ({width * height}); the limits are {max_pixels} "
            f"pixels and a longest side of {max_side}"
        )
    decoded = width * height * _PIXEL_BYTES.get(img.mode, 4)
    if decoded > max_decoded_bytes:
        raise ImageTooLarge(
            f"image is {width}x{height} pixels ({img.mode}), {decoded} bytes once decoded; "
            f"the limit is {max_decoded_bytes} bytes"
        )


def load_image(
    source: ImageSource,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_IMAGE_SIDE,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> np.ndarray:
    """Load a path or image bytes as an RGB ``uint8`` array (see :func:`decode`)."""
    return decode(read_bytes(source, max_bytes), max_pixels, max_side, max_decoded_bytes)


def as_rgb(image: Image.Image | np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """An image already in memory as the RGB ``uint8`` array :func:`decode` would give.

    :param image: a PIL image (its EXIF orientation is applied, as for a file), or a ``uint8``
        numpy array of shape (height, width) greyscale, (height, width, 3) RGB or
        (height, width, 4) RGBA
    :raises ImageTooLarge: more than ``max_pixels`` pixels
    :raises ImageUndecodable: a PIL image whose pixels cannot be read
    :raises InvalidParameter: an array of another shape or type
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (
            image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))
        ):
            raise InvalidParameter(
                f"a numpy image must be uint8 of shape (h, w), (h, w, 3) or (h, w, 4), not "
                f"{image.dtype} of shape {image.shape}"
            )
        height, width = image.shape[:2]
    elif isinstance(image, Image.Image):
        width, height = image.size
    else:
        raise InvalidParameter(f"not an image: {type(image).__name__}")
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} pixels; the limit is {max_pixels} pixels")
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    try:
        img.load()
        rgb = _to_rgb(_oriented(img))
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise ImageUndecodable(f"cannot read the image: {_short(exc)}") from None
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


def _oriented(img: Image.Image) -> Image.Image:
    """The image turned upright by its EXIF orientation (the same image when already upright:
    ``exif_transpose`` would copy it)."""
    try:
        if img.getexif().get(ExifTags.Base.Orientation, 1) in (None, 1):
            return img
        return ImageOps.exif_transpose(img)
    except Exception:  # a corrupt EXIF block must not make a readable photo unreadable
        return img


def _to_rgb(img: Image.Image) -> np.ndarray:
    """The image as a C-contiguous RGB ``uint8`` array.

    Pixels leave Pillow a strip of rows at a time, so the only full-size copy is the answer
    (``np.asarray`` of a whole image would first copy it to one ``bytes`` object).
    """
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        wide = img.mode.startswith("I;16") or img.getextrema()[1] > 255
        return _rgb_by_strips(img, lambda rows: _grey_rows(rows, 8 if wide else 0))
    if img.mode in ("L", "1"):
        grey = img if img.mode == "L" else img.convert("L")
        return _rgb_by_strips(grey, lambda rows: _grey_rows(rows, 0))
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        return _rgb_by_strips(img, _flatten_on_white)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return _rgb_by_strips(img, lambda rows: rows)


def _rgb_by_strips(img: Image.Image, to_rgb) -> np.ndarray:
    width, height = img.size
    out = np.empty((height, width, 3), dtype=np.uint8)
    for top in range(0, height, _ROWS_PER_CHUNK):
        bottom = min(height, top + _ROWS_PER_CHUNK)
        out[top:bottom] = to_rgb(np.asarray(img.crop((0, top, width, bottom))))
    return out


def _grey_rows(rows: np.ndarray, shift: int) -> np.ndarray:
    if shift or rows.dtype != np.uint8:
        rows = np.clip(rows.astype(np.int64) >> shift, 0, 255).astype(np.uint8)
    return rows[..., None]


def _flatten_on_white(rgba: np.ndarray) -> np.ndarray:
    """RGBA composited onto a white background: c * a / 255 + 255 - a, rounded, in integers."""
    rows = rgba.astype(np.uint16)
    alpha = rows[..., 3:4]
    return ((rows[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
