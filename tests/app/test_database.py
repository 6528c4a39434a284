"""The service as its database changes: sets stored, replaced or reseeded while it runs, the database
gone or unreachable, API keys, seeding; through FastAPI's TestClient on real photos.

One app (one detection worker) serves the whole module from a database holding the small
``g_60`` centroid set; photos are LFW images, combined or re-encoded at test time.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from anfe.app import Settings, create_app
from anfe.centroids.storage.store import Store
from tests.helpers import assert_error, swapped, upload


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
    from anfe.centroids.storage import shipped

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
    from anfe.app.cache import CentroidCache

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
    from anfe.centroids.storage.shipped import shipped_documents

    shipped = [d["_id"] for d in shipped_documents()]
    settings = Settings(db=str(tmp_path / "db"), cpu_workers=1, seed=True)
    with TestClient(create_app(settings)) as client:
        health = client.get("/health")
        assert health.json()["centroids"] == shipped
        assert health.status_code == (200 if shipped else 503)


def test_a_set_of_another_mode_is_served_and_listed_without_its_matrices(
    served, training_embeddings, lfw_male
):
    from anfe.centroids.model.centroid_set import CentroidSet

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
