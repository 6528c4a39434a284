"""POST /predict and /predict/batch through FastAPI's TestClient: answers on real LFW photos, and
every error status of a bad upload or parameter."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from PIL import Image

from tests.app.conftest import MAX_BYTES
from tests.helpers import assert_error, jpeg, upload


def test_photo_without_face_answers_empty_faces(client, lfw_female):
    corner = Image.open(lfw_female).crop((0, 0, 60, 60)).resize((240, 240))  # background only
    resp = client.post("/predict", files=upload(jpeg(corner)))
    assert resp.status_code == 200, resp.text
    assert resp.json()["faces"] == []
    assert resp.json()["image"] == {"width": 240, "height": 240}


def test_exif_rotated_phone_photo_is_read_upright(client, lfw_female):
    # a portrait "phone photo" stored sideways with EXIF orientation 6, as cameras write it
    upright = Image.new("RGB", (250, 350), "white")
    upright.paste(Image.open(lfw_female), (0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways = jpeg(upright.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes())
    # the same pixels turned upright by hand, stored losslessly, as the reference
    by_hand = io.BytesIO()
    Image.open(io.BytesIO(sideways)).transpose(Image.Transpose.ROTATE_270).save(by_hand, "PNG")
    rotated = client.post("/predict", files=upload(sideways)).json()
    reference = client.post("/predict", files=upload(by_hand.getvalue(), "ref.png")).json()
    assert reference["image"] == {"width": 250, "height": 350}
    assert rotated["image"] == reference["image"]
    [face] = rotated["faces"]
    [ref] = reference["faces"]
    assert face["gender"] == "female"
    assert face["box"] == ref["box"]
    assert face["box"]["bottom"] <= 250  # the face is in the top, photo part of the portrait


def test_truncated_jpeg_is_400(client, lfw_female):
    data = lfw_female.read_bytes()
    assert_error(
        client.post("/predict", files=upload(data[: len(data) // 2])), 400, "image_undecodable"
    )


def test_text_file_renamed_jpg_is_415(client):
    text = b"name,gender\nAJ Cook,female\n" * 20
    assert_error(
        client.post("/predict", files=upload(text, "photo.jpg")), 415, "unsupported_media_type"
    )


def test_empty_upload_is_400(client):
    assert_error(client.post("/predict", files=upload(b"")), 400, "image_undecodable")
    assert_error(client.post("/predict", json={"image_base64": ""}), 400, "image_undecodable")


def test_body_that_is_not_a_form_or_json_is_415(client, lfw_female):
    resp = client.post(
        "/predict", content=lfw_female.read_bytes(), headers={"content-type": "text/plain"}
    )
    assert_error(resp, 415, "unsupported_media_type")


def test_giant_dimensions_in_a_tiny_file_is_413(client):
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    png = bytearray(buf.getvalue())
    png[16:24] = struct.pack(">II", 10_000, 10_000)  # IHDR claims 10000 x 10000 pixels
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    assert len(png) < 200
    body = assert_error(
        client.post("/predict", files=upload(bytes(png), "x.png")), 413, "image_too_large"
    )
    assert "pixels" in body["error"]["message"]


def test_upload_over_the_byte_limit_is_413(client, lfw_female):
    big = io.BytesIO()
    Image.open(lfw_female).resize((1000, 1000)).save(big, "PNG")
    data = big.getvalue()
    assert MAX_BYTES < len(data) < 4 * MAX_BYTES  # over the file limit, under the body limit
    assert_error(client.post("/predict", files=upload(data, "big.png")), 413, "image_too_large")
    as_json = {"image_base64": base64.b64encode(data).decode()}
    assert_error(client.post("/predict", json=as_json), 413, "image_too_large")


def test_chunked_body_over_the_limit_is_413(client):
    def chunks():  # no Content-Length: the limit is enforced on the bytes received
        for _ in range(20):
            yield b"x" * 64_000

    resp = client.post(
        "/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert_error(resp, 413, "image_too_large")


def test_declared_length_over_the_limit_is_413(client):
    resp = client.post(
        "/predict",
        content=b"x" * (2 * 1024 * 1024),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert_error(resp, 413, "image_too_large")


def test_bad_parameters_are_422(client, lfw_female):
    data = lfw_female.read_bytes()
    for query in ("max_faces=0", "max_faces=101", "max_faces=two"):
        body = assert_error(
            client.post(f"/predict?{query}", files=upload(data)), 422, "invalid_parameter"
        )
        assert "max_faces" in body["error"]["message"]
    assert_error(
        client.post("/predict", files={"image": ("a.jpg", data)}), 422, "invalid_parameter"
    )
    assert_error(client.post("/predict", json={"image": "abc"}), 422, "invalid_parameter")


def test_unknown_centroid_id_is_404(client, lfw_female):
    resp = client.post("/predict?centroids=g_999", files=upload(lfw_female.read_bytes()))
    body = assert_error(resp, 404, "centroids_not_found")
    assert "g_60" in body["error"]["message"]  # says what is stored
    assert_error(client.get("/centroids/g_999"), 404, "centroids_not_found")


def test_unknown_route_is_a_json_404(client):
    assert_error(client.get("/nothing-here"), 404, "not_found")
    assert_error(client.get("/predict"), 405, "method_not_allowed")


def test_batch_answers_each_file_in_order_with_one_bad_file(client, lfw_female, lfw_male):
    files = [
        ("files", ("woman.jpg", lfw_female.read_bytes(), "image/jpeg")),
        ("files", ("notes.jpg", b"not an image at all", "image/jpeg")),
        ("files", ("man.jpg", lfw_male.read_bytes(), "image/jpeg")),
    ]
    resp = client.post("/predict/batch", files=files)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["centroids"] == "g_60"
    results = body["results"]
    assert [r["filename"] for r in results] == ["woman.jpg", "notes.jpg", "man.jpg"]
    assert [r["status"] for r in results] == [200, 415, 200]
    assert results[0]["result"]["faces"][0]["gender"] == "female"
    assert results[1]["error"]["code"] == "unsupported_media_type" and results[1]["result"] is None
    assert results[2]["result"]["faces"][0]["gender"] == "male"


def test_batch_refuses_no_files_and_too_many(client, lfw_female):
    no_files = {"file": ("a.jpg", lfw_female.read_bytes(), "image/jpeg")}  # not `files`
    assert_error(client.post("/predict/batch", files=no_files), 422, "invalid_parameter")
    assert_error(client.post("/predict/batch", data={"x": "1"}), 415, "unsupported_media_type")
    many = [("files", (f"{i}.jpg", lfw_female.read_bytes(), "image/jpeg")) for i in range(17)]
    assert_error(client.post("/predict/batch", files=many), 422, "invalid_parameter")


def test_batch_marks_an_oversized_file_and_reads_the_rest(client, lfw_female):
    big = io.BytesIO()
    Image.open(lfw_female).resize((1000, 1000)).save(big, "PNG")
    files = [
        ("files", ("big.png", big.getvalue(), "image/png")),
        ("files", ("woman.jpg", lfw_female.read_bytes(), "image/jpeg")),
    ]
    results = client.post("/predict/batch", files=files).json()["results"]
    assert [r["status"] for r in results] == [413, 200]


def test_female_photo_is_female_with_both_distances(client, lfw_female):
    resp = client.post("/predict", files=upload(lfw_female.read_bytes()))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["centroids"] == "g_60"
    assert body["image"] == {"width": 250, "height": 250}
    [face] = body["faces"]
    d = face["distances"]
    assert face["gender"] == "female" and d["female"] < d["male"]
    assert face["margin"] == pytest.approx(abs(d["female"] - d["male"]))
    assert 0.5 <= face["confidence"] <= 1.0
    b = face["box"]
    assert 0 <= b["left"] < b["right"] <= 250 and 0 <= b["top"] < b["bottom"] <= 250
    assert set(body["timings_ms"]) >= {"decode", "detect", "landmarks", "encode"}


def test_male_photo_is_male(client, lfw_male):
    [face] = client.post("/predict", files=upload(lfw_male.read_bytes())).json()["faces"]
    assert face["gender"] == "male"
    assert face["distances"]["male"] < face["distances"]["female"]


def test_json_base64_answers_like_multipart(client, lfw_female):
    data = lfw_female.read_bytes()
    multipart = client.post("/predict", files=upload(data)).json()
    as_json = client.post("/predict", json={"image_base64": base64.b64encode(data).decode()})
    assert as_json.status_code == 200, as_json.text
    assert as_json.json()["faces"] == multipart["faces"]
    data_url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    assert (
        client.post("/predict", json={"image_base64": data_url}).json()["faces"]
        == (multipart["faces"])
    )


def test_two_faces_are_boxed_left_to_right(client, lfw_female, lfw_male):
    pair = Image.new("RGB", (500, 250))
    pair.paste(Image.open(lfw_female), (0, 0))
    pair.paste(Image.open(lfw_male), (250, 0))
    body = client.post("/predict", files=upload(jpeg(pair))).json()
    assert [f["gender"] for f in body["faces"]] == ["female", "male"]
    left, right = (f["box"] for f in body["faces"])
    assert left["right"] <= 250 <= right["left"]
    # max_faces keeps the largest faces, still in left-to-right order
    one = client.post("/predict?max_faces=1", files=upload(jpeg(pair))).json()
    assert len(one["faces"]) == 1
