"""The app of the HTTP tests: one app (one detection worker) per test module, through FastAPI's
TestClient, on a database holding the small ``g_60`` centroid set."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from anfe.app import Settings, create_app
from anfe.centroids.storage.store import Store

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
