"""Generate the bad-input corpus for ``POST /predict`` from one real photo, at test time.

Every file is made from the bytes of a real face photo (an LFW image), so the corpus holds no
committed binaries and nothing random pretends to be a face. Each :class:`Case` says what the
service documents for it: 200 (with faces, or with none) or an error status and code.

Run it by hand to look at the files::

    .venv/bin/python -m perf.badinputs ../shared/data/lfw/actresses/AJ_Cook/AJ_Cook_0001.jpg /tmp/corpus
"""

from __future__ import annotations

import io
import struct
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    """One corpus file and the answer the service documents for it.

    ``faces`` is True when the answer must hold at least one face, False when it must hold none,
    None for an error answer.
    """

    name: str
    filename: str
    data: bytes
    status: int
    code: str | None = None
    faces: bool | None = None


def _save(img: Image.Image, fmt: str, **opts) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **opts)
    return buf.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, payload and the CRC of type + payload."""
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def giant_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid-looking PNG of a few hundred bytes whose header claims ``width`` x ``height``."""
    png = bytearray(_save(Image.new("L", (8, 8), 128), "PNG"))
    png[16:24] = struct.pack(">II", width, height)  # IHDR width and height
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))  # its CRC, so it still parses
    return bytes(png)


def jpeg_bomb(side: int = 8000) -> bytes:
    """A real, decodable JPEG of ``side`` x ``side`` pixels that compresses to a few hundred KB.

    8000 x 8000 = 64 million pixels, over the 40 million default: decoding it would take
    192 MB as RGB, from a file about 1/500 of that.
    """
    return _save(Image.new("L", (side, side), 128), "JPEG", quality=50)


def jpeg_claiming(photo: Image.Image, width: int, height: int) -> bytes:
    """A small real JPEG whose start-of-frame header is patched to claim ``width`` x ``height``."""
    data = bytearray(_save(photo.resize((64, 64)), "JPEG", quality=80))
    i = 2
    while i < len(data) - 9:
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise ValueError("no SOF marker")


def corrupt_exif_jpeg(photo: Image.Image) -> bytes:
    """The photo as a JPEG whose APP1 EXIF block is garbage (a TIFF header pointing nowhere)."""
    exif = b"MM\x00\x2a\xff\xff\xff\xf0" + bytes(range(256)) * 2
    return _save(photo, "JPEG", quality=92, exif=b"Exif\x00\x00" + exif)


def animated_gif(frames: list[Image.Image]) -> bytes:
    first, *rest = (f.convert("P", palette=Image.Palette.ADAPTIVE) for f in frames)
    return _save(first, "GIF", save_all=True, append_images=rest, duration=200, loop=0)


def sixteen_bit_png(photo: Image.Image) -> bytes:
    grey = np.asarray(photo.convert("L"), dtype=np.uint16) * 257  # 0..65535
    return _save(Image.fromarray(grey), "PNG")  # mode I;16: a 16-bit greyscale PNG


def alpha_png(photo: Image.Image) -> bytes:
    """The photo with an alpha channel: opaque face, corners fading to fully transparent."""
    w, h = photo.size
    yy, xx = np.mgrid[0:h, 0:w]
    dist = np.hypot((xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2))
    alpha = np.clip((1.4 - dist) * 400, 0, 255).astype(np.uint8)
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.fromarray(alpha, "L"))
    return _save(rgba, "PNG")


def heic_bytes(jpeg: bytes) -> bytes:
    """What an iPhone HEIC file starts with (an ISO-BMFF ``ftyp heic`` box), then image data."""
    ftyp = b"ftypheic" + b"\x00\x00\x00\x00" + b"mif1heicmiaf"
    return (
        struct.pack(">I", len(ftyp) + 4) + ftyp + struct.pack(">I", len(jpeg) + 8) + b"mdat" + jpeg
    )


def zip_of(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, data)
    return buf.getvalue()


def svg_of(jpeg: bytes) -> bytes:
    import base64

    href = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    return (
        '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
        'xmlns:xlink="http://www.w3.org/1999/xlink" width="250" height="250">'
        f'<image width="250" height="250" xlink:href="{href}"/></svg>'
    ).encode()


def html_of(jpeg: bytes) -> bytes:
    import base64

    src = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    return f'<!doctype html><html><body><h1>photo</h1><img src="{src}"></body></html>'.encode()


UNDECODABLE = (400, "image_undecodable")
TOO_LARGE = (413, "image_too_large")
UNSUPPORTED = (415, "unsupported_media_type")


def make_corpus(photo_path: Path, big_side: int = 6000) -> list[Case]:
    """The bad-input corpus made from the single-face photo at ``photo_path``."""
    original = photo_path.read_bytes()
    photo = Image.open(io.BytesIO(original)).convert("RGB")
    blank = Image.new("RGB", photo.size, (90, 110, 140))
    jpeg = _save(photo, "JPEG", quality=92)
    png = _save(photo, "PNG")
    big = photo.resize((big_side, big_side), Image.Resampling.BICUBIC)
    big_jpeg = _save(big, "JPEG", quality=85)
    del big

    def ok(name: str, filename: str, data: bytes, faces: bool = True) -> Case:
        return Case(name, filename, data, 200, None, faces)

    def bad(name: str, filename: str, data: bytes, answer: tuple[int, str]) -> Case:
        return Case(name, filename, data, answer[0], answer[1])

    return [
        bad("zero_bytes", "empty.jpg", b"", UNDECODABLE),
        bad("truncated_jpeg", "truncated.jpg", jpeg[: len(jpeg) // 2], UNDECODABLE),
        bad("truncated_png", "truncated.png", png[: len(png) // 2], UNDECODABLE),
        bad("jpeg_header_only", "header.jpg", jpeg[:200], UNDECODABLE),
        bad("png_claims_100000x100000", "giant.png", giant_png(), TOO_LARGE),
        bad("jpeg_claims_65500x65500", "giant.jpg", jpeg_claiming(photo, 65500, 65500), TOO_LARGE),
        bad("jpeg_bomb_8000x8000", "bomb.jpg", jpeg_bomb(), TOO_LARGE),
        ok("cmyk_jpeg", "cmyk.jpg", _save(photo.convert("CMYK"), "JPEG", quality=92)),
        ok("sixteen_bit_png", "16bit.png", sixteen_bit_png(photo)),
        ok("greyscale_png", "grey.png", _save(photo.convert("L"), "PNG")),
        ok("png_with_alpha", "alpha.png", alpha_png(photo)),
        ok("animated_gif_face_first", "anim.gif", animated_gif([photo, blank, blank])),
        ok("animated_gif_face_later", "anim2.gif", animated_gif([blank, photo]), faces=False),
        ok("webp", "photo.webp", _save(photo, "WEBP", quality=90)),
        ok("bmp", "photo.bmp", _save(photo, "BMP")),
        ok("corrupt_exif_jpeg", "exif.jpg", corrupt_exif_jpeg(photo)),
        ok(f"photo_{big_side}x{big_side}", "big.jpg", big_jpeg),
        bad("multipage_tiff", "pages.tiff", _tiff(photo, blank), UNSUPPORTED),
        bad("svg", "photo.svg", svg_of(jpeg), UNSUPPORTED),
        bad("heic", "photo.heic", heic_bytes(jpeg), UNSUPPORTED),
        bad("pdf", "photo.pdf", _save(photo, "PDF"), UNSUPPORTED),
        bad("html", "page.html", html_of(jpeg), UNSUPPORTED),
        bad("zip_renamed_jpg", "photo.jpg", zip_of("photo.jpg", jpeg), UNSUPPORTED),
    ]


def _tiff(*pages: Image.Image) -> bytes:
    first, *rest = pages
    return _save(first, "TIFF", save_all=True, append_images=rest)


def write_corpus(photo_path: Path, out: Path) -> list[Path]:
    """Write every case of the corpus to ``out`` as ``<name>--<filename>``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for case in make_corpus(photo_path):
        path = out / f"{case.name}--{case.filename}"
        path.write_bytes(case.data)
        paths.append(path)
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    for p in write_corpus(Path(sys.argv[1]), Path(sys.argv[2])):
        print(f"{p.stat().st_size:>10}  {p}")
