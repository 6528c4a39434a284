"""The routes beside /predict: centroid listings, health, the page, OpenAPI and the docs."""

from __future__ import annotations

import pytest

from anfe.centroids import vectors


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
    stored = vectors.unpack(small_centroids_doc["vectors"]["female"]).tolist()
    assert body["vectors"]["female"] == pytest.approx(stored)
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
