"""Extraction on a real Dask cluster (scheduler and worker processes on 127.0.0.1) equals local."""

from __future__ import annotations

import numpy as np
import pytest

from anfe.centroids.builder import dask_pool
from anfe.centroids.builder.extract import embed_paths
from anfe.centroids.builder.workers import shutdown_pools
from anfe.centroids.errors import InvalidParameter
from anfe.centroids.storage.store import Store
from anfe.centroids.vision.settings import EmbeddingSettings
from anfe.cli import main
from tests.helpers import LFW

distributed = pytest.importorskip("distributed", reason="the 'dask' extra is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("real_data")]

PER_GENDER = 10


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, lfw_rows):
    """actresses/ and actors/ with 10 real LFW photos each, linked (not copied) from shared data."""
    root = tmp_path_factory.mktemp("lfw-subset")
    for gender, folder in (("female", "actresses"), ("male", "actors")):
        rows = [r for r in lfw_rows if r["gender"] == gender][:PER_GENDER]
        for row in rows:
            link = root / folder / row["person"] / row["path"].split("/")[-1]
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(LFW / row["path"])
    return root


@pytest.fixture(scope="module")
def local_embeddings(dataset):
    """The embeddings of the local path (one process), by image path."""
    paths = sorted(p for p in dataset.rglob("*.jpg"))
    embs = embed_paths(paths, EmbeddingSettings(), None, jobs=1, progress=False)
    return {p.name: e for p, e in zip(paths, embs, strict=True)}


@pytest.fixture(scope="module")
def cluster():
    """A real LocalCluster: 2 worker processes x 1 thread on 127.0.0.1, no dashboard."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=40,
    ) as c:
        yield c


def _assert_same(embs, local_embeddings, names):
    assert len(embs) == len(names) == 2 * PER_GENDER
    usable = 0
    for name, emb in zip(names, embs, strict=True):
        ref = local_embeddings[name]
        assert emb.faces_found == ref.faces_found and emb.box == ref.box, name
        if ref.usable:
            usable += 1
            assert np.allclose(emb.vector, ref.vector, atol=1e-9), name
        else:
            assert emb.vector is None
    assert usable >= PER_GENDER  # the comparison covered real embeddings


def test_existing_cluster_gives_the_local_embeddings(dataset, local_embeddings, cluster, tmp_path):
    paths = sorted(dataset.rglob("*.jpg"))
    with Store(str(tmp_path / "db")) as store:
        embs = embed_paths(
            paths, EmbeddingSettings(), store, dask=cluster.scheduler_address, progress=False
        )
        assert store.count_embeddings() == len(paths)
    _assert_same(embs, local_embeddings, [p.name for p in paths])


def test_build_with_dask_local_then_rerun_contacts_no_cluster(
    dataset, local_embeddings, tmp_path, capsys
):
    db = str(tmp_path / "db")
    args = ["build", str(dataset), "--sizes", "5", "--no-progress", "--db", db]
    assert main([*args, "--dask", "local"]) == 0
    out = capsys.readouterr().out
    assert f"embedded {2 * PER_GENDER} new images" in out and "g_5" in out
    with Store(db) as store:
        cached = store.cached_embeddings(EmbeddingSettings().key())
        paths = sorted(dataset.rglob("*.jpg"))
        embs = embed_paths(paths, EmbeddingSettings(), store, dask="tcp://127.0.0.1:9")
    assert len(cached) == 2 * PER_GENDER
    _assert_same(embs, local_embeddings, [p.name for p in paths])
    # everything is cached: a rerun at an address where no scheduler listens computes nothing
    assert main([*args, "--dask", "tcp://127.0.0.1:9"]) == 0
    assert "embedded 0 new images" in capsys.readouterr().out


def test_bad_dask_address_is_one_clear_error(dataset, tmp_path, capsys):
    code = main(
        ["build", str(dataset), "--sizes", "5", "--db", str(tmp_path / "db"), "--dask", "a b"]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("anfe: error:") and "--dask" in err and len(err.splitlines()) == 1
    with pytest.raises(InvalidParameter):
        dask_pool.check_address("http://host:8786/path")
    assert dask_pool.check_address("scheduler.example:8786") == "scheduler.example:8786"


def test_unreachable_scheduler_is_reported_and_nothing_is_stored(
    dataset, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(dask_pool, "CONNECT_TIMEOUT_S", 2)
    db = str(tmp_path / "db")
    code = main(
        ["build", str(dataset), "--sizes", "5", "--no-progress", "--db", db]
        + ["--dask", "tcp://127.0.0.1:9"]
    )
    assert code == 5  # dask_unavailable exits as an unusable database does
    err = capsys.readouterr().err.strip()
    assert "cannot reach the Dask scheduler" in err and len(err.splitlines()) == 1
    with Store(db) as store:
        assert store.count_embeddings() == 0 and store.list_centroids() == []


def teardown_module() -> None:
    shutdown_pools()


def test_interrupted_dask_run_keeps_finished_work_and_resumes(
    dataset, local_embeddings, cluster, tmp_path, monkeypatch
):
    from anfe.centroids.builder import workers

    paths = sorted(dataset.rglob("*.jpg"))
    seen = {"n": 0}
    real_update = workers.Progress.update

    def interrupt_after_six(self, n=1):
        seen["n"] += n
        if seen["n"] > 6:
            raise KeyboardInterrupt
        real_update(self, n)

    monkeypatch.setattr(workers.Progress, "update", interrupt_after_six)
    with Store(str(tmp_path / "db")) as store:
        with pytest.raises(KeyboardInterrupt):
            embed_paths(paths, EmbeddingSettings(), store, dask=cluster.scheduler_address)
        kept = store.count_embeddings()
        assert 6 <= kept < len(paths)  # finished work was written before the interrupt ended
        monkeypatch.setattr(workers.Progress, "update", real_update)
        resumed = embed_paths(
            paths, EmbeddingSettings(), store, dask=cluster.scheduler_address, progress=False
        )
        assert store.count_embeddings() == len(paths)
    _assert_same(resumed, local_embeddings, [p.name for p in paths])
