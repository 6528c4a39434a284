"""Read the image bytes out of a request: multipart ``file``/``files`` or JSON ``image_base64``.

Sizes are enforced while reading: the body as a whole by :mod:`anfe.app.limits`, each file here by
reading at most one byte past ``max_bytes`` (multipart files are spooled to disk past 1 MB).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from anfe.app.errors import MalformedRequest
from anfe.app.jsonbody import JsonImage
from anfe.centroids.errors import AnfeError, InvalidParameter, UnsupportedImageType
from anfe.centroids.imaging.formats import too_many_bytes

MULTIPART = "multipart/form-data"
JSON = "application/json"


@dataclass
class Upload:
    """One uploaded image: its bytes, or the error that refused it."""

    filename: str | None
    data: bytes = b""
    error: AnfeError | None = None


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def predict_upload(
    request: Request, max_bytes: int
) -> tuple[bytes | JsonImage, dict[str, Any]]:
    """The image of a ``POST /predict``: multipart field ``file``, or the JSON body holding
    ``image_base64`` (decoded later, in a worker: see :mod:`anfe.app.jsonbody`); and the
    detection options given as multipart fields (see :func:`form_options`).

    :raises UnsupportedImageType: a body that is neither multipart nor JSON
    :raises InvalidParameter: no ``file`` field, JSON without ``image_base64``, a bad option
    :raises ImageTooLarge, ImageUndecodable: from the image bytes themselves
    """
    kind = media_type(request)
    if kind == MULTIPART:
        form = await _form(request, max_files=1)
        options = form_options(form)
        item = form.get("file")
        if item is None:
            raise InvalidParameter("send the image in the multipart field `file`")
        upload = await read_upload(item, max_bytes)
        if upload.error:
            raise upload.error
        return upload.data, options
    if kind == JSON or kind.endswith("+json"):
        # parsed and decoded in the detection worker: a 28 MB body must not hold up the event
        # loop, nor hold this process's GIL in a thread for a tenth of a second at a time
        return JsonImage(await request.body()), {}
    raise UnsupportedImageType(
        "send multipart/form-data with the image in field `file`, or application/json "
        f"with `image_base64` (got content type {kind or 'none'!r})"
    )


def form_options(form) -> dict[str, Any]:
    """The multipart fields ``detector`` (text) and ``max_side`` (an integer) when given.

    :raises InvalidParameter: a field that is a file, or a ``max_side`` that is no integer
    """
    options: dict[str, Any] = {}
    for name in ("detector", "max_side"):
        value = form.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidParameter(f"the multipart field `{name}` must be text, not a file")
        if name == "max_side":
            try:
                options[name] = int(value.strip())
            except ValueError:
                raise InvalidParameter(
                    f"max_side must be an integer (0: full resolution), not {value[:20]!r}"
                ) from None
        else:
            options[name] = value.strip()
    return options


async def batch_uploads(request: Request, max_bytes: int, max_files: int) -> list[Upload]:
    """The files of a ``POST /predict/batch`` (field ``files``, repeated), in upload order.

    A file that is too large is returned with its error; the other files are still read.
    """
    if media_type(request) != MULTIPART:
        raise UnsupportedImageType("send multipart/form-data with one `files` field per image")
    form = await _form(request, max_files=max_files)
    items = form.getlist("files")
    if not items:
        raise InvalidParameter("send the images in multipart fields named `files`")
    return [await read_upload(item, max_bytes) for item in items]


async def read_upload(item: UploadFile | str, max_bytes: int) -> Upload:
    if not isinstance(item, UploadFile):
        return Upload(None, error=InvalidParameter("the image field must be a file upload"))
    data = await item.read(max_bytes + 1)
    await item.close()
    if len(data) > max_bytes:
        return Upload(
            item.filename,
            error=too_many_bytes(max_bytes, max_bytes, exact=False),
        )
    return Upload(item.filename, data)


async def _form(request: Request, max_files: int):
    try:
        return await request.form(max_files=max_files, max_fields=16)
    except HTTPException as exc:  # starlette's MultiPartException, already turned into a 400
        detail = str(exc.detail)
        if "Too many files" in detail:
            raise InvalidParameter(f"too many files; the limit is {max_files}") from None
        raise MalformedRequest(f"cannot parse the multipart body: {detail}") from None
