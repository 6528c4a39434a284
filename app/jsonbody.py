"""The JSON form of an upload, ``{"image_base64": "..."}``, and the image bytes it holds.

A JSON body is parsed in the detection worker that classifies its image, never in the server
process: parsing and base64-decoding 28 MB holds the GIL for about a tenth of a second, and
sixteen such bodies at once stalled ``/health`` for seconds. orjson refuses nesting past 1024
levels and numbers that fit neither 64 bits nor a finite double, so no body can raise
RecursionError or ValueError here: every failure is a 4xx error with a code.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import orjson
from pydantic import ValidationError

from anfe.app.errors import MalformedRequest
from anfe.app.schemas import PredictJSON
from anfe.centroids.errors import ImageUndecodable, InvalidParameter
from anfe.centroids.imaging.formats import too_many_bytes


@dataclass(frozen=True)
class JsonImage:
    """The raw body of a JSON upload, still to be parsed by :func:`image_from_json`."""

    body: bytes


def image_from_json(body: bytes, max_bytes: int) -> bytes:
    """The image bytes of a JSON upload body.

    :raises MalformedRequest: not JSON (or nested too deep, or a number out of range)
    :raises InvalidParameter: JSON, but not ``{"image_base64": "..."}``
    :raises ImageUndecodable, ImageTooLarge: bad base64, or too many bytes
    """
    try:
        payload = PredictJSON.model_validate(orjson.loads(body))
    except orjson.JSONDecodeError as exc:
        reason = str(exc).split(":")[0]
        raise MalformedRequest(f"the body is not valid JSON ({reason})") from None
    except ValidationError:
        raise InvalidParameter(
            'the JSON body must be {"image_base64": "<base64 of the image bytes>"}'
        ) from None
    text = payload.image_base64.strip()
    if text.startswith("data:") and "," in text:  # a data: URL, as a browser makes it
        text = text.split(",", 1)[1]
    if len(text) * 3 // 4 > max_bytes + 3:
        raise too_many_bytes(max_bytes, max_bytes, exact=False)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageUndecodable("image_base64 is not valid base64") from None
    if len(data) > max_bytes:
        raise too_many_bytes(len(data), max_bytes)
    return data
