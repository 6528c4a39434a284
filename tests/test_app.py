"""The HTTP service through FastAPI's TestClient: every route, every error status, real photos.

One app (one detection worker) serves the whole module from a database holding the small
``g_60`` centroid set; photos are LFW images, combined or re-encoded at test time.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app import Settings, create_app
from centroids.store import Store
from tests.test_worker_sets import swapped

MAX_BYTES = 200_000  # LFW photos are ~15 KB; a larger limit is tested with an upscaled photo


@pytest.fixture(scope="module")
def served(tmp_path_factory, small_centroids_doc):
    """(client, db path) of a running app whose database holds g_60."""
    uri = str(tmp_path_factory.mktemp("app") / "db")
    with Store(uri) as s:
        s.put_centroids(small_centroids_doc)
    settings = Settings(db=uri, cpu_workers=1, seed=False, refresh_seconds=0, max_bytes=MAX_BYTES)
    with TestClient(create_app(settings)) as client:
        yield client, uri


@pytest.fixture
def client(served) -> TestClient:
    return served[0]


def jpeg(img: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, **save)
    return buf.getvalue()


def upload(data: bytes, name: str = "photo.jpg", kind: str = "image/jpeg") -> dict:
    return {"file": (name, data, kind)}


def assert_error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert "Traceback" not in resp.text
    return body


# -- /predict: answers ---------------------------------------------------------------------------


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


# -- /predict: errors ----------------------------------------------------------------------------


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


# -- /predict/batch ------------------------------------------------------------------------------


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


# -- centroids, health, page, docs ---------------------------------------------------------------


def test_centroids_lists_metadata_not_only_ids(client, small_centroids_doc):
    body = client.get("/centroids").json()
    assert body["default"] == "g_60"
    [item] = [c for c in body["centroids"] if c["id"] == "g_60"]
    assert item["per_gender"] == small_centroids_doc["per_gender"]
    assert item["counts"] == small_centroids_doc["counts"]
    assert item["embedding"]["landmarks"] == small_centroids_doc["embedding"]["landmarks"]
    assert item["default"] is True
    assert "vectors" not in item
    assert item["source"]["dataset"] == "utkface"  # the folder's name, not the server's path
    assert "/" not in item["source"]["dataset"]


def test_one_centroid_set_has_its_vectors(client, small_centroids_doc):
    body = client.get("/centroids/g_60").json()
    assert body["id"] == "g_60"
    assert body["vectors"]["female"] == pytest.approx(small_centroids_doc["vectors"]["female"])
    assert len(body["vectors"]["male"]) == 128


def test_health_reports_database_centroids_and_loaded_model(client):
    resp = client.get("/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True, "kind": "montydb", "error": None}
    assert "g_60" in body["centroids"]
    assert body["model_loaded"] is True and body["workers"] == 1


def test_upload_page_has_a_file_input(client):
    resp = client.get("/")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert 'type="file"' in resp.text and "predict" in resp.text


def test_openapi_documents_both_bodies_and_the_response(client):
    spec = client.get("/openapi.json").json()
    content = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    ok = spec["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"]["$ref"].endswith("/PredictResponse")
    assert "413" in spec["paths"]["/predict"]["post"]["responses"]
    assert {"/predict/batch", "/centroids", "/centroids/{cid}", "/health"} <= set(spec["paths"])
    scheme = spec["components"]["securitySchemes"]["APIKeyHeader"]  # Swagger's "Authorize"
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")
    assert spec["paths"]["/predict"]["post"]["security"] == [{"APIKeyHeader": []}]


def test_docs_and_redoc_use_only_local_assets(client):
    for path, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        page = client.get(path)
        assert page.status_code == 200
        assert f'src="/docs-assets/{asset}"' in page.text
        assert "http://" not in page.text and "https://" not in page.text  # no CDN, no fonts
        policy = page.headers["content-security-policy"]  # nor anything the scripts ask for
        assert "default-src 'self'" in policy and "connect-src 'self'" in policy
        script = client.get(f"/docs-assets/{asset}")
        assert script.status_code == 200 and len(script.content) > 100_000


# -- the database changing under a running service ----------------------------------------------


def test_new_centroid_set_is_served_without_restart(served, small_centroids_doc, lfw_male):
    client, uri = served
    doc = {**small_centroids_doc, "_id": "g_61", "created_at": "2030-01-01T00:00:00+00:00"}
    with Store(uri) as s:
        s.put_centroids(doc)
    try:
        assert "g_61" in [c["id"] for c in client.get("/centroids").json()["centroids"]]
        resp = client.post("/predict?centroids=g_61", files=upload(lfw_male.read_bytes()))
        assert resp.status_code == 200 and resp.json()["centroids"] == "g_61"
    finally:
        with Store(uri) as s:
            s.delete_centroids("g_61")
    assert_error(client.get("/centroids/g_61"), 404, "centroids_not_found")


def test_set_stored_again_with_its_created_at_is_used_by_the_next_request(served, lfw_female):
    """Stored again the way `anfe centroids fit-age` does: same created_at, other content."""
    client, uri = served
    photo = upload(lfw_female.read_bytes())
    before = client.post("/predict?centroids=g_60", files=photo).json()["faces"][0]
    assert before["gender"] == "female"
    with Store(uri) as s:
        original = s.get_centroids("g_60")  # every field as stored, created_at included
        s.put_centroids(swapped(original, original["created_at"]))
    try:
        after = client.post("/predict?centroids=g_60", files=photo).json()["faces"][0]
        assert after["gender"] == "male"
        assert after["distances"]["female"] == pytest.approx(before["distances"]["male"])
        listed = client.get("/centroids/g_60").json()
        assert listed["created_at"] == original["created_at"]
        assert listed["revision"] != original["revision"]
    finally:
        with Store(uri) as s:
            s.put_centroids(original)
    restored = client.post("/predict?centroids=g_60", files=photo).json()["faces"][0]
    assert restored["gender"] == "female"


def test_shipped_set_reseeded_over_an_older_copy_is_used_by_the_next_request(served, lfw_female):
    """`shipped.seed` replaces a copy seeded by an older release: same id, same created_at."""
    from centroids import shipped

    client, uri = served
    docs = shipped.shipped_documents()
    older = {k: v for k, v in docs[0].items() if k not in ("age", "children")}
    cid = older["_id"]
    with Store(uri) as s:  # the other shipped sets as shipped: seeding adds no new id
        for doc in [older, *docs[1:]]:
            s.put_centroids(doc)
    try:
        photo = upload(lfw_female.read_bytes())
        face = client.post(f"/predict?centroids={cid}", files=photo).json()["faces"][0]
        assert face["age"]["model"] == shipped.DEFAULT_CENTROIDS  # borrowed: the copy has none
        with Store(uri) as s:
            assert shipped.seed(s) == [cid]
        face = client.post(f"/predict?centroids={cid}", files=photo).json()["faces"][0]
        assert face["age"]["model"] == cid  # its own, as shipped
        assert "age" in client.get(f"/centroids/{cid}").json()
    finally:
        with Store(uri) as s:
            for doc in docs:
                s.delete_centroids(doc["_id"])
    assert [c["id"] for c in client.get("/centroids").json()["centroids"]] == ["g_60"]


def test_cache_rereads_a_set_stored_again_at_its_next_refresh(tmp_path, small_centroids_doc):
    """Between two looks at the database the service answers with what it holds; then the new."""
    from app.cache import CentroidCache

    uri = str(tmp_path / "db")
    with Store(uri) as s:
        s.put_centroids(small_centroids_doc)
    now = [0.0]
    cache = CentroidCache(uri, refresh_seconds=5, seed=False, clock=lambda: now[0])
    try:
        cache.refresh()
        female = cache.get("g_60").female.copy()
        with Store(uri) as s:
            doc = s.get_centroids("g_60")
            s.put_centroids(swapped(doc, doc["created_at"]))
        now[0] = 4.0
        cache.refresh()
        assert (cache.get("g_60").female == female).all()
        now[0] = 5.0
        cache.refresh()
        assert (cache.get("g_60").male == female).all()
        assert not (cache.get("g_60").female == female).all()
    finally:
        cache.close()


def test_database_folder_gone_is_503_and_the_service_recovers(served, lfw_female):
    client, uri = served
    away = uri + "-away"
    os.rename(uri, away)  # as root, chmod cannot make it unreadable; a vanished folder can
    try:
        resp = client.post("/predict", files=upload(lfw_female.read_bytes()))
        assert resp.status_code == 503 and "Traceback" not in resp.text
        assert resp.json()["error"]["code"] in ("database_unavailable", "no_centroids")
        assert client.get("/health").status_code == 503
    finally:
        os.rename(away, uri)
    assert client.post("/predict", files=upload(lfw_female.read_bytes())).status_code == 200
    assert client.get("/health").status_code == 200


def test_unreadable_collection_file_is_503_and_the_service_recovers(served, lfw_female):
    client, uri = served
    collection = Path(uri) / "anfe" / "centroids.collection"
    saved = collection.with_name("saved")
    shutil.copyfile(collection, saved)
    collection.write_bytes(b"this is not an sqlite database" * 100)
    try:
        body = assert_error(
            client.post("/predict", files=upload(lfw_female.read_bytes())),
            503,
            "database_unavailable",
        )
        assert uri not in body["error"]["message"]  # no server path in messages
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["database"]["ok"] is False
    finally:
        shutil.copyfile(saved, collection)
    assert client.post("/predict", files=upload(lfw_female.read_bytes())).status_code == 200


# -- other configurations ------------------------------------------------------------------------


def test_empty_database_is_503_until_a_set_is_stored(tmp_path, small_centroids_doc, lfw_female):
    uri = str(tmp_path / "db")
    settings = Settings(db=uri, cpu_workers=1, seed=False, refresh_seconds=0)
    with TestClient(create_app(settings)) as client:
        body = assert_error(
            client.post("/predict", files=upload(lfw_female.read_bytes())), 503, "no_centroids"
        )
        assert "anfe build" in body["error"]["message"]
        assert client.get("/health").json()["status"] == "unavailable"
        with Store(uri) as s:
            s.put_centroids(small_centroids_doc)
        assert client.post("/predict", files=upload(lfw_female.read_bytes())).status_code == 200


def test_unreachable_mongodb_is_503_without_blocking_start_up(lfw_female):
    settings = Settings(db="mongodb://127.0.0.1:1", cpu_workers=1, refresh_seconds=60)
    with TestClient(create_app(settings)) as client:
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json()["database"]["kind"] == "mongodb"
        assert health.json()["database"]["ok"] is False
        resp = client.post("/predict", files=upload(lfw_female.read_bytes()))
        assert_error(resp, 503, "database_unavailable")


def test_api_keys_guard_every_route_but_health_and_page(tmp_path, small_centroids_doc, lfw_female):
    uri = str(tmp_path / "db")
    with Store(uri) as s:
        s.put_centroids(small_centroids_doc)
    settings = Settings(db=uri, cpu_workers=1, seed=False, api_keys="key-one, key-two")
    with TestClient(create_app(settings)) as client:
        photo = upload(lfw_female.read_bytes())
        for method, path in [
            ("post", "/predict"),
            ("post", "/predict/batch"),
            ("get", "/centroids"),
            ("get", "/centroids/g_60"),
        ]:
            assert_error(getattr(client, method)(path), 401, "unauthorized")
        wrong = client.post("/predict", files=photo, headers={"X-API-Key": "key-three"})
        assert_error(wrong, 401, "unauthorized")
        assert client.get("/health").status_code == 200
        assert client.get("/").status_code == 200
        for path in ("/docs", "/redoc", "/openapi.json", "/docs-assets/swagger-ui-bundle.js"):
            assert client.get(path).status_code == 200  # docs open; their calls need the key
        ok = client.post("/predict", files=photo, headers={"X-API-Key": "key-two"})
        assert ok.status_code == 200 and ok.json()["faces"][0]["gender"] == "female"
        listing = client.get("/centroids", headers={"X-API-Key": "key-one"})
        assert listing.status_code == 200


def test_without_api_keys_no_key_is_needed(client, lfw_female):
    assert client.get("/centroids").status_code == 200
    assert client.post("/predict", files=upload(lfw_female.read_bytes())).status_code == 200


def test_empty_database_is_seeded_with_the_shipped_sets(tmp_path):
    from centroids.shipped import shipped_documents

    shipped = [d["_id"] for d in shipped_documents()]
    settings = Settings(db=str(tmp_path / "db"), cpu_workers=1, seed=True)
    with TestClient(create_app(settings)) as client:
        health = client.get("/health")
        assert health.json()["centroids"] == shipped
        assert health.status_code == (200 if shipped else 503)


def test_a_set_of_another_mode_is_served_and_listed_without_its_matrices(
    served, training_embeddings, lfw_male
):
    from centroids.model import CentroidSet

    client, uri = served
    cs = CentroidSet.from_embeddings(
        "g_60-mahalanobis-prototypes",
        training_embeddings["female"],
        training_embeddings["male"],
        mode="mahalanobis-prototypes",
        params={"k": 2},
    )
    with Store(uri) as s:
        s.put_centroids(cs.to_doc())
    try:
        listing = client.get("/centroids").json()["centroids"]
        [item] = [c for c in listing if c["id"] == cs.id]
        assert item["mode"] == "mahalanobis-prototypes"
        assert not {"whitening", "prototypes", "vectors"} & set(item)
        detail = client.get(f"/centroids/{cs.id}").json()
        assert "whitening" not in detail and len(detail["vectors"]["female"]) == 128
        resp = client.post(f"/predict?centroids={cs.id}", files=upload(lfw_male.read_bytes()))
        assert resp.status_code == 200 and resp.json()["centroids"] == cs.id
        assert resp.json()["faces"][0]["gender"] == "male"
    finally:
        with Store(uri) as s:
            s.delete_centroids(cs.id)
