"""Loading images safely and finding and encoding faces on real LFW photos."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from anfe.centroids.errors import ImageTooLarge, ImageUndecodable, UnsupportedImageType
from anfe.centroids.imaging import decoding
from anfe.centroids.vision import faces
from anfe.centroids.vision.settings import EmbeddingSettings


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def test_loads_jpeg_as_rgb_uint8(lfw_female):
    image = decoding.load_image(lfw_female)
    assert image.dtype == np.uint8
    assert image.shape == (250, 250, 3)


def test_exif_orientation_is_applied(lfw_female):
    upright = Image.open(lfw_female).convert("RGB")
    # A phone stores the sensor's pixels turned on their side and says so in EXIF (6 = rotate 90 CW)
    sideways = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    image = decoding.decode(_jpeg(sideways, exif=exif.tobytes()))
    assert image.shape[:2] == (upright.height, upright.width)
    diff = np.abs(image.astype(int) - np.asarray(upright).astype(int)).mean()
    assert diff < 6, diff
    assert len(faces.detect(image)) == 1


def test_corrupt_exif_block_does_not_make_photo_unreadable(lfw_female):
    data = bytearray(_jpeg(Image.open(lfw_female), exif=b"Exif\x00\x00MM\x00*\xff\xff\xff\xff"))
    image = decoding.decode(bytes(data))
    assert image.shape == (250, 250, 3)


def test_png_with_alpha_is_flattened_on_white(lfw_male):
    rgba = Image.open(lfw_male).convert("RGBA")
    alpha = np.full((rgba.height, rgba.width), 255, np.uint8)
    alpha[:, :40] = 0  # transparent left strip
    rgba.putalpha(Image.fromarray(alpha))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    image = decoding.decode(buf.getvalue())
    assert image.shape == (250, 250, 3)
    assert (image[:, :40] == 255).all()
    assert len(faces.detect(image)) == 1


def test_sixteen_bit_and_grey_png_become_rgb(lfw_male):
    grey = np.asarray(Image.open(lfw_male).convert("L"), dtype=np.uint16) * 257
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, "PNG")
    image = decoding.decode(buf.getvalue())
    assert image.shape == (250, 250, 3) and image.dtype == np.uint8
    assert image.max() > 200  # scaled down from 16 bits, not clipped to white or black


def test_truncated_jpeg_is_undecodable(lfw_female):
    data = lfw_female.read_bytes()
    with pytest.raises(ImageUndecodable) as err:
        decoding.decode(data[: len(data) // 2])
    assert err.value.code == "image_undecodable"


def test_empty_bytes_are_undecodable():
    with pytest.raises(ImageUndecodable):
        decoding.decode(b"")


@pytest.mark.parametrize(
    "payload",
    [b"%PDF-1.4\n1 0 obj\n", b"<html><body>not a photo</body></html>", b"PK\x03\x04zipped"],
)
def test_non_image_bytes_are_unsupported(payload):
    with pytest.raises(UnsupportedImageType) as err:
        decoding.decode(payload)
    assert err.value.code == "unsupported_media_type"


def test_text_file_renamed_jpg_is_unsupported(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_text("hello, I am not a photo")
    with pytest.raises(UnsupportedImageType):
        decoding.load_image(path)


def test_too_many_bytes_is_refused_before_reading(lfw_female):
    with pytest.raises(ImageTooLarge) as err:
        decoding.load_image(lfw_female, max_bytes=1000)
    assert err.value.code == "image_too_large"


def test_pixel_bomb_is_refused_before_decoding():
    # a 20000x20000 image of one colour compresses to a few hundred kilobytes
    buf = io.BytesIO()
    Image.new("L", (20000, 20000)).save(buf, "PNG")
    with pytest.raises(ImageTooLarge):
        decoding.decode(buf.getvalue(), max_pixels=40_000_000)


def test_one_pixel_wide_png_under_the_pixel_limit_is_refused_from_its_header():
    from perf.crafted import tall_png

    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge, match="longest side"):
            decoding.decode(tall_png(39_999_999))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024  # the zlib-built file, not its 160 MB of decoded rows


def test_decoded_bytes_are_capped_whatever_the_pixel_count(lfw_female):
    data = lfw_female.read_bytes()  # 250x250 RGB: 250 000 bytes once decoded (4 per pixel)
    with pytest.raises(ImageTooLarge, match="once decoded"):
        decoding.decode(data, max_decoded_bytes=200_000)
    assert decoding.decode(data, max_decoded_bytes=250_000).shape == (250, 250, 3)


def traced_decode(data: bytes) -> tuple[np.ndarray, int]:
    """The decoded image and the peak of Python and numpy allocations while decoding it."""
    tracemalloc.start()
    try:
        image = decoding.decode(data)
        return image, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_16_bit_image_is_decoded_without_a_float_copy(lfw_female):
    grey = np.asarray(Image.open(lfw_female).convert("L").resize((2000, 2000)), dtype=np.uint16)
    buf = io.BytesIO()
    Image.fromarray(grey * 257).save(buf, "PNG")  # 16-bit greyscale, 0..65535
    image, peak = traced_decode(buf.getvalue())
    assert np.array_equal(image[..., 0], grey.astype(np.uint8)) and image.shape[2] == 3
    # one float64 copy of the pixels alone would be 32 MB; the RGB answer is 12 MB
    assert peak < 2000 * 2000 * 8, f"decoding traced {peak / 1e6:.0f} MB"


def test_rgba_image_leaves_pillow_without_a_whole_image_copy(lfw_female):
    rgba = Image.open(lfw_female).convert("RGBA").resize((2000, 2000))
    buf = io.BytesIO()
    rgba.save(buf, "PNG", compress_level=1)
    image, peak = traced_decode(buf.getvalue())
    assert image.shape == (2000, 2000, 3)
    # the 12 MB answer plus strips; np.asarray of the whole image would add a 16 MB bytes copy
    assert peak < 12e6 + 2000 * 2000 * 4 / 2, f"decoding traced {peak / 1e6:.0f} MB"


def test_palette_image_with_transparency_is_flattened_onto_white():
    img = Image.new("P", (4, 2), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.putpixel((1, 0), 1)
    img.info["transparency"] = 0  # palette entry 0 (red) is transparent
    buf = io.BytesIO()
    img.save(buf, "PNG", transparency=0)
    image = decoding.decode(buf.getvalue())
    assert image[0, 0].tolist() == [255, 255, 255]
    assert image[0, 1].tolist() == [0, 0, 255]


def test_detects_one_face_on_lfw_photos(lfw_rows):
    from tests.helpers import LFW

    rows = [r for r in lfw_rows if r["person"] in ("AJ_Cook", "AJ_Lamas", "Aaron_Eckhart")]
    assert rows
    for row in rows:
        image = decoding.load_image(LFW / row["path"])
        boxes = faces.detect(image)
        assert len(boxes) >= 1
        top, right, bottom, left = min(boxes, key=lambda b: abs((b[1] + b[3]) / 2 - 125))
        assert 0 <= left < right <= 250 and 0 <= top < bottom <= 250
        assert 60 < (left + right) / 2 < 190  # the face near the centre, as LFW is funneled


def test_boxes_map_back_to_full_resolution(lfw_female):
    image = decoding.load_image(lfw_female)
    big = np.asarray(Image.fromarray(image).resize((1000, 1000), Image.Resampling.BICUBIC))
    (t, r, b, l_) = faces.detect(image)[0]
    (bt, br, bb, bl) = faces.detect(big, max_side=250)[0]
    for small, large in ((t, bt), (r, br), (b, bb), (l_, bl)):
        assert abs(large - 4 * small) <= 12


def test_embedding_shape_and_determinism(lfw_male):
    image = decoding.load_image(lfw_male)
    boxes = faces.detect(image)
    first = faces.encode(image, boxes)
    second = faces.encode(image, boxes)
    assert first.shape == (1, 128)
    assert np.array_equal(first, second)
    assert 0.5 < np.linalg.norm(first[0]) < 2.0


def test_different_people_are_further_apart_than_one_person(lfw_rows):
    from tests.helpers import LFW

    by_person: dict[str, list] = {}
    for row in lfw_rows:
        by_person.setdefault(row["person"], []).append(row["path"])
    person = next(p for p, paths in by_person.items() if len(paths) >= 2)
    other = next(p for p in by_person if p != person)

    def emb(rel):
        img = decoding.load_image(LFW / rel)
        return faces.encode(img, [max(faces.detect(img), key=lambda b: b[1] - b[3])])[0]

    a, b = emb(by_person[person][0]), emb(by_person[person][1])
    c = emb(by_person[other][0])
    assert np.linalg.norm(a - b) < np.linalg.norm(a - c)


def test_cropped_mode_uses_whole_image(utk_rows):
    from tests.helpers import UTKFACE

    image = decoding.load_image(UTKFACE / utk_rows[0]["path"])
    boxes = faces.face_boxes(image, EmbeddingSettings(cropped=True))
    assert boxes == [(0, image.shape[1], image.shape[0], 0)]
    assert faces.encode(image, boxes).shape == (1, 128)
    assert faces.face_boxes(image, EmbeddingSettings()) == faces.detect(image)


def test_landmarks_are_68_points_inside_the_face(lfw_female):
    image = decoding.load_image(lfw_female)
    box = faces.detect(image)[0]
    (points,) = faces.landmarks(image, [box])
    assert points.shape == (68, 2)
    top, right, bottom, left = box
    assert left - 20 <= points[:, 0].mean() <= right + 20


def test_model_files_are_those_face_recognition_models_names_without_importing_it(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from anfe.centroids.vision import faces\n"
        "faces.warm_up('onnx', landmarks='large')\n"
        "print(sorted(m for m in ('face_recognition_models', 'pkg_resources') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.stdout.strip() == "[]", done.stderr  # its __init__ imports pkg_resources (~0.1 s)
    import face_recognition_models as package

    from anfe.centroids.vision import requirements
    from anfe.centroids.vision.encoders.dlib_dat import default_model_path

    folder = requirements.models_dir()
    assert str(folder / "shape_predictor_5_face_landmarks.dat") == (
        package.pose_predictor_five_point_model_location()
    )
    assert str(folder / "shape_predictor_68_face_landmarks.dat") == (
        package.pose_predictor_model_location()
    )
    assert str(default_model_path()) == package.face_recognition_model_location()
