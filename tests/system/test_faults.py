"""Faults that lose nothing: ``anfe build`` killed at many points, and builders racing each other.

Builds run as real ``anfe build`` subprocesses (two worker processes) on a small UTKFace subset,
linked (not copied) into a temporary folder. A build is killed with SIGKILL of its whole process
group, the way the OOM killer or a power cut ends it, at several points: during start-up, right
after the first and later embedding batches reach the database, and while centroids are written.
The rerun must end with exactly the documents of an uninterrupted run. (The service's 503 and
recovery when its database goes away are tested in test_app.py and test_app_server.py.)
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from anfe.centroids import vectors
from anfe.centroids.errors import DatabaseUnavailable
from anfe.centroids.storage import embedding_chunks
from anfe.centroids.storage.store import Store
from tests.helpers import UTKFACE

PER_GENDER = 60  # images linked per gender

pytestmark = pytest.mark.slow
SIZES = "20,50"
TIMEOUT = 240


@pytest.fixture(scope="module")
def dataset(real_data, tmp_path_factory) -> Path:
    """``female/`` and ``male/`` with the first PER_GENDER UTKFace photos of each, as symlinks."""
    root = tmp_path_factory.mktemp("utk-subset")
    for gender in ("female", "male"):
        (root / gender).mkdir()
        for src in sorted((UTKFACE / gender).iterdir())[:PER_GENDER]:
            (root / gender / src.name).symlink_to(src)
    return root


def build_cmd(dataset: Path, db: str, sizes: str = SIZES, jobs: int = 2) -> list[str]:
    return [
        sys.executable, "-m", "anfe.cli", "build", str(dataset), "--sizes", sizes,
        "--jobs", str(jobs), "--seed", "0", "--db", db, "--no-progress",
    ]  # fmt: skip


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def run_to_end(cmd: list[str], log: Path) -> int:
    proc = start(cmd, log)
    try:
        return proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def snapshot(store: Store) -> tuple[int, list[dict]]:
    """(embedding count, centroid documents), retried while a writer holds the database."""
    for attempt in range(50):
        try:
            return store.count_embeddings(), store.list_centroids(with_vectors=True)
        except DatabaseUnavailable:
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("the database stayed unreadable")


def assert_complete(doc: dict) -> None:
    """A centroid document a reader may see: every field, both whole vectors, finite numbers."""
    assert {"_id", "per_gender", "vectors", "counts", "embedding", "source", "created_at"} <= set(
        doc
    ), doc.get("_id")
    n = doc["per_gender"]
    assert doc["_id"].startswith(f"g_{n}")
    assert doc["counts"] == {"female": n, "male": n}
    for g in ("female", "male"):
        vec = vectors.unpack(doc["vectors"][g]).tolist()
        assert len(vec) == 128 and all(math.isfinite(v) for v in vec)


class Watcher:
    """Reads the database every few ms while a build runs: checks every centroid document read,
    and tells when a condition on (embedding count, centroid ids) becomes true."""

    def __init__(self, db: str) -> None:
        self.store = Store(db)
        self.reads = 0

    def wait_for(
        self, proc: subprocess.Popen, cond: Callable[[int, set[str]], bool]
    ) -> tuple[int, set[str]]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            count, docs = snapshot(self.store)
            self.reads += 1
            for doc in docs:
                assert_complete(doc)
            ids = {d["_id"] for d in docs}
            if cond(count, ids) or proc.poll() is not None:
                return count, ids
            assert time.monotonic() < deadline, "the build neither met the condition nor ended"
            time.sleep(0.02)

    def close(self) -> None:
        self.store.close()


def kill_group(proc: subprocess.Popen) -> bool:
    """SIGKILL the build and every process it started; whether it was still running."""
    running = proc.poll() is None
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)
    return running


def documents(db: str) -> tuple[dict[str, dict], list[dict]]:
    """(centroid documents by id without created_at and the revision over it, embeddings)."""
    with Store(db) as s:
        cents = {
            d["_id"]: {k: v for k, v in d.items() if k not in ("created_at", "revision")}
            for d in s.list_centroids(with_vectors=True)
        }
        raw = list(s.embeddings.find({}))
        assert sum(d.get("count", 1) for d in raw) == s.count_embeddings(), "a face stored twice"
        embs = [
            {**r, "vector": None if r["vector"] is None else r["vector"].tolist()}
            for r in embedding_chunks.records(raw)
        ]
    return cents, embs


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory) -> str:
    """The database of one uninterrupted build."""
    folder = tmp_path_factory.mktemp("reference")
    db = str(folder / "db")
    assert run_to_end(build_cmd(dataset, db), folder / "build.log") == 0, (
        folder / "build.log"
    ).read_text()
    return db


def test_build_killed_at_many_points_ends_with_the_uninterrupted_documents(
    dataset, reference, tmp_path
):
    db = str(tmp_path / "db")
    log = tmp_path / "build.log"
    cmd = build_cmd(dataset, db)
    Store(db).close()  # the empty database, so that it can be watched from the start
    watcher = Watcher(db)
    # each kill point: a condition on (embedding count at the start of this run, count, ids)
    points: list[tuple[str, Callable[[int, int, set[str]], bool]]] = [
        ("during start-up", None),
        ("after the first embedding batch is stored", lambda c0, c, ids: c > c0),
        ("after the next embedding batch is stored", lambda c0, c, ids: c > c0),
        ("as soon as a centroid set is readable", lambda c0, c, ids: bool(ids)),
        ("a rerun, 0.2 s after start", None),
        ("a rerun, 1.2 s after start", None),
    ]
    # a rerun with everything cached ends in ~0.3 s: 0.2 s is still during its start-up
    delays = {"during start-up": 0.8, "a rerun, 0.2 s after start": 0.2}
    delays["a rerun, 1.2 s after start"] = 1.2
    killed = []
    seen: list[tuple[str, int, set[str]]] = []
    try:
        for name, cond in points:
            c0, _ = snapshot(watcher.store)
            proc = start(cmd, log)
            if cond is None:
                time.sleep(delays[name])
                count, docs = snapshot(watcher.store)
                ids = {d["_id"] for d in docs}
            else:
                count, ids = watcher.wait_for(
                    proc, lambda c, ids, c0=c0, cond=cond: cond(c0, c, ids)
                )
            if kill_group(proc):
                killed.append(name)
                assert proc.returncode == -signal.SIGKILL
            seen.append((name, count, ids))
            _, docs = snapshot(watcher.store)
            for doc in docs:
                assert_complete(doc)  # never half a document, even right after the kill
        assert len(killed) >= 5, f"only {killed} were killed while running: {seen}"
        assert run_to_end(cmd, log) == 0, log.read_text()
    finally:
        watcher.close()
    got_cents, got_embs = documents(db)
    ref_cents, ref_embs = documents(reference)
    assert set(got_cents) == set(ref_cents) == {"g_20", "g_50"}
    for cid, doc in ref_cents.items():
        assert got_cents[cid] == doc, f"{cid} differs from the uninterrupted build"
    ids = [d["_id"] for d in got_embs]
    assert len(ids) == len(set(ids)), "duplicate embedding documents"
    assert {d["_id"]: d["vector"] for d in got_embs} == {d["_id"]: d["vector"] for d in ref_embs}
    print(f"killed {len(killed)} times: " + "; ".join(f"{n} ({c} embeddings, {sorted(i)})"
                                                        for n, c, i in seen))  # fmt: skip


def test_two_builders_at_once_leave_one_complete_document(dataset, reference, tmp_path):
    db = str(tmp_path / "db")
    Store(db).close()
    cmd = build_cmd(dataset, db, sizes="20", jobs=1)
    procs = [start(cmd, tmp_path / f"build{i}.log") for i in range(2)]
    watcher = Watcher(db)
    try:
        for proc in procs:
            watcher.wait_for(proc, lambda c, ids: False)  # check every read until it ends
            assert proc.wait(timeout=TIMEOUT) == 0, (tmp_path / "build0.log").read_text() + (
                tmp_path / "build1.log"
            ).read_text()
    finally:
        watcher.close()
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    got_cents, got_embs = documents(db)
    ref_cents, _ = documents(reference)
    assert list(got_cents) == ["g_20"]
    assert_complete({**got_cents["g_20"], "created_at": "x"})
    assert got_cents["g_20"] == ref_cents["g_20"]
    ids = [d["_id"] for d in got_embs]
    assert len(ids) == len(set(ids))


WRITER = """
import sys, time
from anfe.centroids.storage.store import Store
db, tag, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
with Store(db) as s:
    for i in range(rounds):
        doc = {"_id": "g_7", "per_gender": 7, "counts": {"female": 7, "male": 7},
               "vectors": {"female": [tag] * 128, "male": [tag + i] * 128},
               "embedding": {"writer": tag}, "source": {"round": i}, "created_at": str(i)}
        for attempt in range(100):
            try:
                s.put_centroids(doc)
                break
            except Exception:
                time.sleep(0.01)
        else:
            sys.exit("could not write")
"""


def test_two_processes_replacing_one_set_never_show_a_mixed_document(tmp_path):
    """Each read of g_7 is one whole write: its vectors, counts and round belong together."""
    db = str(tmp_path / "db")
    Store(db).close()
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, db, str(tag), "150"]) for tag in (1.0, 2.0)
    ]
    reads = 0
    with Store(db) as s:
        while any(w.poll() is None for w in writers):
            try:
                doc = s.centroids.find_one({"_id": "g_7"})
            except Exception:
                continue  # the database is busy; a read must wait, never see half
            if doc is None:
                continue
            reads += 1
            tag = doc["embedding"]["writer"]
            i = doc["source"]["round"]
            assert vectors.unpack(doc["vectors"]["female"]).tolist() == [tag] * 128
            assert vectors.unpack(doc["vectors"]["male"]).tolist() == [tag + i] * 128
            assert doc["created_at"] == str(i)
        final = s.centroids.find_one({"_id": "g_7"})
        assert s.centroids.count_documents({}) == 1
    assert [w.wait() for w in writers] == [0, 0]
    assert reads > 10
    assert final["source"]["round"] == 149
