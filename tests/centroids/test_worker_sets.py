"""Centroid sets reach a detection worker once, by content: the worker keeps them between requests.

One app with one detection worker that keeps two sets (``ANFE_WORKER_SETS=2``), on a database
holding ``g_60``; what went to the worker is read from ``GET /metrics``
(``anfe_worker_set_transfers_total``), never from a mock.
"""

from __future__ import annotations

import os
import signal

import pytest
from fastapi.testclient import TestClient

from anfe.app import Settings, create_app
from anfe.app.pool import SetLru
from anfe.centroids.storage.store import Store
from tests.helpers import samples, swapped, wait_until


@pytest.fixture(scope="module")
def served(tmp_path_factory, small_centroids_doc):
    """(client, db path) of an app with one detection worker that keeps two centroid sets."""
    uri = str(tmp_path_factory.mktemp("worker-sets") / "db")
    with Store(uri) as s:
        s.put_centroids(small_centroids_doc)
    settings = Settings(db=uri, cpu_workers=1, seed=False, refresh_seconds=0, worker_sets=2)
    with TestClient(create_app(settings)) as client:
        yield client, uri


def metric(client: TestClient, name: str) -> float:
    return samples(client.get("/metrics").text).get((name,), 0.0)


def transfers(client: TestClient) -> float:
    return metric(client, "anfe_worker_set_transfers_total")


def predict(client: TestClient, photo, centroids: str = "g_60") -> dict:
    resp = client.post(f"/predict?centroids={centroids}", files={"file": ("a.jpg", photo)})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_second_request_to_the_worker_does_not_resend_the_set(served, lfw_female):
    client, _ = served
    photo = lfw_female.read_bytes()
    predict(client, photo)  # the worker holds g_60 from here on
    sets, images = transfers(client), metric(client, "anfe_worker_images_total")
    sent = metric(client, "anfe_worker_sent_bytes_total")
    assert predict(client, photo)["faces"][0]["gender"] == "female"
    assert transfers(client) == sets
    assert metric(client, "anfe_worker_images_total") == images + 1
    # the image and the limits only: no 128 x 128 whitening, no pickled set
    assert metric(client, "anfe_worker_sent_bytes_total") - sent < len(photo) + 2_000


def test_set_replaced_in_the_database_is_used_by_the_next_request(
    served, small_centroids_doc, lfw_female
):
    client, uri = served
    photo = lfw_female.read_bytes()
    before = predict(client, photo)["faces"][0]
    assert before["gender"] == "female"
    sets = transfers(client)
    # the same id, other content; a rebuilt set has a new creation time, as `anfe build` writes
    with Store(uri) as s:
        s.put_centroids(swapped(small_centroids_doc, "2031-01-01T00:00:00+00:00"))
    try:
        after = predict(client, photo)["faces"][0]
        assert after["gender"] == "male"
        assert after["distances"]["female"] == pytest.approx(before["distances"]["male"])
        assert transfers(client) == sets + 1
    finally:
        with Store(uri) as s:
            s.put_centroids(small_centroids_doc)
    assert predict(client, photo)["faces"][0]["gender"] == "female"


def test_replaced_worker_gets_the_set_again(served, lfw_male):
    client, _ = served
    pool = client.app.state.service.pool
    photo = lfw_male.read_bytes()
    predict(client, photo)
    sets, replaced = transfers(client), pool.replaced
    [pid] = pool.pids
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: pool.replaced == replaced + 1 and pool.ready_count == 1, "a new worker")
    assert pool.pids != {pid}
    assert predict(client, photo)["faces"][0]["gender"] == "male"
    assert transfers(client) == sets + 1
    predict(client, photo)
    assert transfers(client) == sets + 1


def test_worker_keeps_its_last_two_sets_and_is_sent_a_dropped_one_again(
    served, small_centroids_doc, lfw_female
):
    client, uri = served
    photo = lfw_female.read_bytes()
    others = [
        {**small_centroids_doc, "_id": f"g_6{i}", "created_at": f"2032-01-0{i}T00:00:00+00:00"}
        for i in (1, 2)
    ]
    with Store(uri) as s:
        for doc in others:
            s.put_centroids(doc)
    try:
        predict(client, photo, "g_60")
        predict(client, photo, "g_61")
        sets = transfers(client)
        predict(client, photo, "g_60")  # held: g_61, g_60
        assert transfers(client) == sets
        predict(client, photo, "g_62")  # sent; g_61, the least recently used, is dropped
        assert transfers(client) == sets + 1
        predict(client, photo, "g_60")  # still held
        assert transfers(client) == sets + 1
        answer = predict(client, photo, "g_61")  # dropped: sent again, and answered
        assert answer["centroids"] == "g_61" and answer["faces"][0]["gender"] == "female"
        assert transfers(client) == sets + 2
    finally:
        with Store(uri) as s:
            for doc in others:
                s.delete_centroids(doc["_id"])


def test_lru_of_size_zero_holds_nothing_and_drops_the_least_recently_used():
    none = SetLru(0)
    none.put("a", 1)
    assert none.get("a") is None and len(none) == 0
    two = SetLru(2)
    two.put("a", 1)
    two.put("b", 2)
    assert two.get("a") == 1  # a is now the most recently used
    two.put("c", 3)
    assert (two.get("a"), two.get("b"), two.get("c")) == (1, None, 3)
