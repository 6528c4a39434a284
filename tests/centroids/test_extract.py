"""Extraction on real photos: cache hits never decoded, duplicates embedded once, order kept."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from anfe.centroids.builder import extract, workers
from anfe.centroids.imaging import decoding, formats
from anfe.centroids.storage.store import Store
from anfe.centroids.vision.settings import EmbeddingSettings
from tests.helpers import UTKFACE


@pytest.fixture(scope="module")
def photos(tmp_path_factory, utk_rows):
    """Four real UTKFace crops and a byte-identical copy of the first, under another name."""
    root = tmp_path_factory.mktemp("photos")
    paths = []
    for row in utk_rows[:4]:
        dest = root / row["path"].split("/")[-1]
        shutil.copy(UTKFACE / row["path"], dest)
        paths.append(dest)
    copy = root / "copy_of_first.jpg"
    shutil.copy(paths[0], copy)
    return [*paths, copy]


SETTINGS = EmbeddingSettings(cropped=True)


class Counter:
    def __init__(self, monkeypatch, name: str) -> None:
        self.calls = 0
        self.real = getattr(decoding, name)
        monkeypatch.setattr(decoding, name, self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.real(*args, **kwargs)


def test_duplicate_bytes_are_embedded_once_and_results_keep_path_order(photos, monkeypatch):
    decodes = Counter(monkeypatch, "decode")
    embs = extract.embed_paths(photos, SETTINGS, None, jobs=1, progress=False)
    assert decodes.calls == len(photos) - 1
    assert [e.sha256 for e in embs] == [formats.content_hash(p.read_bytes()) for p in photos]
    assert embs[-1] is embs[0]
    assert all(e.usable for e in embs)


def test_cache_hits_are_never_decoded(photos, tmp_path, monkeypatch):
    with Store(str(tmp_path / "db")) as store:
        first = extract.embed_paths(photos[:2], SETTINGS, store, jobs=1, progress=False)
        decodes = Counter(monkeypatch, "decode")
        again = extract.embed_paths(photos, SETTINGS, store, jobs=1, progress=False)
        assert decodes.calls == 2  # only photos[2] and photos[3]; the copy is a cache hit
        assert store.count_embeddings() == 4
    for a, b in zip(first, again[:2], strict=True):
        assert np.array_equal(a.vector, b.vector)


def test_unreadable_path_is_reported_not_raised(photos, tmp_path):
    missing = tmp_path / "gone.jpg"
    embs = extract.embed_paths([missing, photos[1]], SETTINGS, None, jobs=1, progress=False)
    assert embs[0].error == "file_unreadable" and not embs[0].usable
    assert embs[1].usable


def test_process_pool_is_reused_and_gives_the_local_embeddings(photos):
    local = extract.embed_paths(photos, SETTINGS, None, jobs=1, progress=False)
    try:
        pooled = extract.embed_paths(photos[:3], SETTINGS, None, jobs=2, progress=False)
        pool = workers._POOLS[2]
        pooled += extract.embed_paths(photos[3:], SETTINGS, None, jobs=2, progress=False)
        assert workers._POOLS[2] is pool  # the second call reused the loaded workers
    finally:
        workers.shutdown_pools()
    assert not workers._POOLS
    for a, b in zip(local, pooled, strict=True):
        assert np.allclose(a.vector, b.vector, atol=1e-9)


def test_pool_started_for_crops_loads_no_detector_yet_detects_later(photos, lfw_female):
    local = extract.embed_paths([lfw_female], EmbeddingSettings(), None, jobs=1, progress=False)
    try:
        extract.embed_paths(photos[:2], SETTINGS, None, jobs=2, progress=False)
        pool = workers._POOLS[2]
        # evaluated in a worker: how many detectors it has loaded (CacheInfo itself won't pickle)
        loaded = (
            "(lambda d: d._hog.cache_info().currsize + d._cnn.cache_info().currsize)"
            "(__import__('anfe.centroids.vision.detectors').centroids.vision.detectors)"
        )
        sizes = [pool.submit(eval, loaded).result() for _ in range(4)]
        assert sizes == [0, 0, 0, 0]  # cropped faces are never detected: no detector loaded
        detected = extract.embed_paths(
            [lfw_female], EmbeddingSettings(), None, jobs=2, progress=False
        )
        assert workers._POOLS[2] is pool
    finally:
        workers.shutdown_pools()
    assert detected[0].faces_found == local[0].faces_found == 1
    assert detected[0].box == local[0].box
    assert np.allclose(detected[0].vector, local[0].vector, atol=1e-9)


def test_chunks_are_lazy_and_complete():
    seen = []

    def source():
        for i in range(7):
            seen.append(i)
            yield i

    it = workers.chunks(source(), 3)
    assert next(it) == [0, 1, 2] and seen == [0, 1, 2]
    assert list(it) == [[3, 4, 5], [6]]
