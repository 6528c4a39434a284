"""``GET /metrics``: Prometheus text format, counted by route template, status and error code."""

from __future__ import annotations

import time

import pytest
import requests
from fastapi.testclient import TestClient

from anfe.app import Settings, create_app
from anfe.centroids.storage.store import Store
from tests.helpers import running_server, samples


def requests_of(found: dict, method: str, route: str, status: int) -> float:
    key = (
        "anfe_http_requests_total",
        ("method", method),
        ("route", route),
        ("status", str(status)),
    )
    return found.get(key, 0.0)


def test_requests_latency_faces_errors_and_workers_are_counted(
    tmp_path, small_centroids_doc, lfw_female, lfw_male
):
    uri = str(tmp_path / "db")
    with Store(uri) as s:
        s.put_centroids(small_centroids_doc)
    settings = Settings(db=uri, cpu_workers=1, seed=False, refresh_seconds=0)
    photo = lfw_female.read_bytes()
    with TestClient(create_app(settings)) as client:
        assert client.post("/predict", files={"file": ("a.jpg", photo)}).status_code == 200
        assert client.post("/predict", files={"file": ("b.jpg", b"text")}).status_code == 415
        assert client.get("/centroids/g_60").status_code == 200
        assert client.get("/centroids/g_7").status_code == 404
        assert client.get("/no/such/page").status_code == 404
        files = [("files", ("m.jpg", lfw_male.read_bytes())), ("files", ("x.jpg", b"text"))]
        assert client.post("/predict/batch", files=files).status_code == 200
        resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=")
    found = samples(resp.text)
    assert requests_of(found, "POST", "/predict", 200) == 1
    assert requests_of(found, "POST", "/predict", 415) == 1
    assert requests_of(found, "GET", "/centroids/{cid}", 200) == 1
    assert requests_of(found, "GET", "/centroids/{cid}", 404) == 1
    assert requests_of(found, "GET", "unmatched", 404) == 1
    assert requests_of(found, "POST", "/predict/batch", 200) == 1
    latency = ("anfe_http_request_duration_seconds_count", ("method", "POST"))
    assert found[(*latency, ("route", "/predict"), ("status", "200"))] == 1
    assert found[("anfe_faces_classified_total",)] == 2  # one face each: /predict and the batch
    assert found[("anfe_errors_total", ("code", "unsupported_media_type"))] == 2
    assert found[("anfe_errors_total", ("code", "centroids_not_found"))] == 1
    assert found[("anfe_errors_total", ("code", "not_found"))] == 1
    assert found[("anfe_detection_workers",)] == 1


@pytest.mark.slow
def test_several_server_processes_report_together(tmp_path, small_centroids_doc):
    uri = str(tmp_path / "db")
    with Store(uri) as s:
        s.put_centroids(small_centroids_doc)
    with running_server(uri, tmp_path / "serve.log", "--workers", "2", "--no-seed") as base:
        for _ in range(600):  # both processes' detection workers load their models
            if requests.get(base + "/health", timeout=30).status_code == 200:
                break
            time.sleep(0.5)
        for _ in range(6):
            requests.get(base + "/health", headers={"Connection": "close"}, timeout=30)
        found = samples(requests.get(base + "/metrics", timeout=30).text)
    # each server process has one detection worker: both processes' gauges are summed
    assert found[("anfe_detection_workers",)] == 2
    assert requests_of(found, "GET", "/health", 200) >= 6
