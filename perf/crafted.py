"""Hostile files made at test time (never committed): each costs the server far more than its size.

- :func:`scan_bomb`: a valid greyscale progressive JPEG whose AC scan is repeated thousands of
  times. Each repeat is ~90 bytes (a Huffman table and a scan of end-of-block runs) and costs the
  decoder a pass over every block of the image (~4-10 ms at 6320x6320).
- :func:`tall_png`: a valid RGBA PNG of 1 x ``height`` pixels, under the pixel limit, a few
  hundred KB, that Pillow would hold as ``height`` separate rows.
- :func:`deep_json`, :func:`huge_int_json`: JSON bodies that break a naive ``json.loads``.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

from perf.badinputs import png_chunk


def _segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each JPEG segment; a scan's end includes its entropy-coded data."""
    out, i = [], 2
    while i < len(data):
        marker = data[i + 1]
        if marker == 0xD9:  # EOI
            out.append((marker, i, i + 2))
            break
        end = i + 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker == 0xDA:  # SOS: the data runs to the next marker that is not a stuffed 0 or RST
            while not (
                data[end] == 0xFF and data[end + 1] != 0 and not 0xD0 <= data[end + 1] <= 0xD7
            ):
                end += 1
        out.append((marker, i, end))
        i = end
    return out


def scan_bomb(scans: int, side: int = 6320) -> bytes:
    """A ``side`` x ``side`` progressive JPEG with its first AC scan repeated ``scans`` times."""
    buf = io.BytesIO()
    Image.new("L", (side, side), 128).save(buf, "JPEG", progressive=True, quality=75)
    data = buf.getvalue()
    segments = _segments(data)
    # the first small scan is an AC scan: only end-of-block runs for a flat image
    k = next(k for k, (m, s, e) in enumerate(segments) if m == 0xDA and e - s < 200)
    repeat = data[segments[k - 1][1] : segments[k][2]]  # its Huffman table (DHT) and the scan
    assert segments[k - 1][0] == 0xC4
    eoi = segments[-1][1]
    return data[:eoi] + repeat * scans + data[eoi:]


def tall_png(height: int = 39_999_999) -> bytes:
    """A valid 1 x ``height`` RGBA PNG (8 bits per channel), built row by row with zlib."""
    header = struct.pack(">IIBBBBB", 1, height, 8, 6, 0, 0, 0)  # 8-bit RGBA, no interlace
    row = b"\x00\x80\x90\xa0\xff"  # filter 0, one opaque pixel
    compressor = zlib.compressobj(9)
    block = row * 1_000_000
    parts = [compressor.compress(block) for _ in range(height // 1_000_000)]
    parts.append(compressor.compress(row * (height % 1_000_000)))
    parts.append(compressor.flush())
    idat = b"".join(parts)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def deep_json(depth: int = 100_000) -> bytes:
    """``{"image_base64": [[[...]]]}`` nested ``depth`` lists deep."""
    return b'{"image_base64": ' + b"[" * depth + b"]" * depth + b"}"


def huge_int_json(digits: int = 5000, inside_object: bool = True) -> bytes:
    """A JSON body holding an integer of ``digits`` digits (alone or as a field's value)."""
    number = b"9" * digits
    return b'{"image_base64": ' + number + b"}" if inside_object else number
