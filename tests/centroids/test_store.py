"""The database: montydb round trips, atomic centroid writes, clear errors when unusable."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from anfe.centroids import vectors
from anfe.centroids.errors import CentroidsNotFound, DatabaseUnavailable, InvalidParameter
from anfe.centroids.storage.store import Store, centroid_revision


def _doc(cid: str, value: float, n: int = 10) -> dict:
    return {
        "_id": cid,
        "per_gender": n,
        "vectors": {"female": [value] * 128, "male": [-value] * 128},
        "counts": {"female": n, "male": n},
        "created_at": f"t{value}",
    }


def test_centroid_round_trip_survives_reopening(db_uri):
    with Store(db_uri) as s:
        s.put_centroids(_doc("g_10", 0.25))
    with Store(db_uri) as s:
        doc = s.get_centroids("g_10")
        assert vectors.is_packed(doc["vectors"]["female"])  # stored as float32
        assert vectors.unpack(doc["vectors"]["female"]).tolist() == [0.25] * 128
        assert [d["_id"] for d in s.list_centroids()] == ["g_10"]
        assert "vectors" not in s.list_centroids()[0]
        assert "vectors" in s.list_centroids(with_vectors=True)[0]


def test_replacing_a_set_keeps_one_document(store):
    store.put_centroids(_doc("g_10", 0.1))
    store.put_centroids(_doc("g_10", 0.2))
    assert store.centroids.count_documents({}) == 1
    assert vectors.unpack(store.get_centroids("g_10")["vectors"]["male"])[0] == np.float32(-0.2)


def test_unknown_id_raises_not_found(store):
    with pytest.raises(CentroidsNotFound) as err:
        store.get_centroids("g_404")
    assert err.value.code == "centroids_not_found"


def test_malformed_id_is_refused(store):
    with pytest.raises(InvalidParameter):
        store.put_centroids(_doc("../../etc", 0.1))


def test_delete_reports_whether_it_existed(store):
    store.put_centroids(_doc("g_10", 0.1))
    assert store.delete_centroids("g_10") is True
    assert store.delete_centroids("g_10") is False


def test_version_changes_when_a_set_is_written(store):
    before = store.centroids_version()
    store.put_centroids(_doc("g_20", 0.3))
    assert store.centroids_version() != before


def test_version_changes_when_a_set_is_stored_again_with_its_created_at(store):
    """As `anfe centroids fit-age` does: the stored document, new fields, the rest as it was."""
    store.put_centroids(_doc("g_20", 0.3))
    before, stamp = store.centroids_version(), store.get_centroids("g_20")["revision"]
    doc = store.get_centroids("g_20")
    doc["age"] = {"method": "ridge"}
    store.put_centroids(doc)
    after = store.get_centroids("g_20")
    assert after["created_at"] == "t0.3" and after["revision"] != stamp
    assert store.centroids_version() != before


def test_writing_a_set_again_unchanged_keeps_its_version_and_the_callers_document(store):
    doc = _doc("g_20", 0.3)
    store.put_centroids(doc)
    before = store.centroids_version()
    assert "revision" not in doc
    store.put_centroids(doc)
    store.put_centroids(store.get_centroids("g_20"))  # read back, stamp and all
    assert store.centroids_version() == before
    assert store.get_centroids("g_20")["revision"] == centroid_revision(doc)


def test_embedding_cache_round_trip_keeps_each_face_once(store):
    docs = [
        {"_id": f"{i:064x}:k", "settings": "k", "vector": [float(i)] * 128, "faces_found": 1}
        for i in range(5)
    ]
    assert store.put_embeddings(docs) == 5
    assert store.put_embeddings(docs) == 0  # the same chunk again: stored once
    assert store.put_embeddings(docs[:2] + [{**docs[0], "_id": f"{9:064x}:k"}]) == 3
    assert store.count_embeddings() == 6  # faces 0 and 1 are in two chunks, counted once
    cached = store.cached_embeddings("k")
    assert set(cached) == {f"{i:064x}" for i in (0, 1, 2, 3, 4, 9)}
    assert cached[f"{3:064x}"]["vector"].tolist() == [3.0] * 128
    loaded = store.load_embeddings("k")
    assert len(loaded) == 6 and loaded.vectors.dtype == np.float32
    assert loaded.face(f"{9:064x}")["vector"].tolist() == [0.0] * 128
    assert store.find_embedding(f"{4:064x}", "k")["vector"].tolist() == [4.0] * 128
    assert store.find_embedding(f"{4:064x}", "other") is None
    assert store.cached_embeddings("other") == {}


def test_path_under_a_file_is_a_clear_database_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DatabaseUnavailable) as err:
        Store(str(blocker / "db"))
    assert str(tmp_path) not in err.value.message  # no server paths in messages


def test_unreachable_mongodb_is_a_clear_database_error():
    store = Store("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300", timeout_ms=300)
    with pytest.raises(DatabaseUnavailable) as err:
        store.ping()
    assert "127.0.0.1:1" in err.value.message


def _writer(uri: str, rounds: int) -> None:
    with Store(uri) as s:
        for i in range(rounds):
            s.put_centroids(_doc("g_50", float(i % 2 + 1), n=50 + i % 2))


def test_reader_never_sees_a_partial_centroid_document(db_uri):
    with Store(db_uri) as s:
        s.put_centroids(_doc("g_50", 1.0, n=50))
    proc = mp.get_context("spawn").Process(target=_writer, args=(db_uri, 150))
    proc.start()
    seen = set()
    with Store(db_uri) as s:
        while proc.is_alive() or not seen:
            doc = s.centroids.find_one({"_id": "g_50"})
            female = vectors.unpack(doc["vectors"]["female"]).tolist()
            male = vectors.unpack(doc["vectors"]["male"]).tolist()
            value = female[0]
            assert len(female) == 128 and len(male) == 128
            assert female == [value] * 128
            assert male == [-value] * 128
            assert doc["per_gender"] == 49 + int(
                value
            )  # counts match the vectors written with them
            seen.add(value)
    proc.join()
    assert proc.exitcode == 0
    assert Path(db_uri).is_dir()


def test_ping_notices_an_embedded_database_folder_that_has_gone(db_uri):
    import shutil

    with Store(db_uri) as s:
        s.ping()
        shutil.rmtree(db_uri)
        with pytest.raises(DatabaseUnavailable, match="has gone"):
            s.ping()


def test_listing_leaves_out_every_large_array(store):
    doc = _doc("g_10-mahalanobis-prototypes", 0.1)
    doc["prototypes"] = {"female": [[0.0] * 128], "male": [[0.0] * 128]}
    doc["whitening"] = [[0.0] * 128] * 128
    store.put_centroids(doc)
    (listed,) = store.list_centroids()
    assert not {"vectors", "prototypes", "whitening"} & set(listed)


OPEN_AND_WRITE = """
import sys
from anfe.centroids.storage.store import Store
with Store(sys.argv[1]) as s:
    s.put_centroids({"_id": "g_" + sys.argv[2], "per_gender": 1, "vectors": {}, "counts": {}})
    assert s.get_centroids("g_" + sys.argv[2])
"""


def test_processes_opening_a_fresh_database_at_once_all_succeed(tmp_path):
    import subprocess
    import sys

    for attempt in range(3):  # several fresh databases: the race is in their creation
        db = str(tmp_path / f"db{attempt}")
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN_AND_WRITE, db, str(i)], stderr=subprocess.PIPE
            )
            for i in range(4)
        ]
        errors = [p.communicate()[1].decode() for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, errors
        with Store(db) as s:
            assert [d["_id"] for d in s.list_centroids()] == sorted(f"g_{i}" for i in range(4))
