"""Embed many images: in parallel processes, cached in the database, resumable, with progress.

:func:`embed_paths` is the one entry point. It reads and hashes each image as the workers need
more, takes what the ``embeddings`` collection already holds for that hash and those settings
(before any decoding), and sends only the rest, as batches of image bytes, to a pool of spawned
worker processes sized to the cores (models loaded once per worker; the pool is kept for the next
call, such as the next wave of a build). Results go back to the database in batches as they
arrive, so an interrupted run keeps all finished work and a rerun recomputes nothing. Failures
(unreadable image, no face, several faces) are cached too.

Processes, not threads: dlib's encoder, most of the work per face, holds the GIL
(``benchmarks/gil.py`` measures it). The worker function :func:`embed_batch` takes bytes, not
paths, so the same batches can run on a Dask cluster whose workers share no disk with us
(``dask="local"`` or a scheduler address; :mod:`centroids.dask_pool`).
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from itertools import islice
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from centroids import faces
from centroids.errors import AnfeError
from centroids.faces import EmbeddingSettings
from centroids.store import Store, embedding_id

BATCH_IMAGES = 8  # images per task sent to a worker
WRITE_EVERY = 64  # results per database write
T = TypeVar("T")


@dataclass
class Embedded:
    """What one image gave: its hash, how many faces, the embedding if exactly one."""

    sha256: str
    faces_found: int
    vector: np.ndarray | None = None
    box: tuple[int, int, int, int] | None = None
    error: str | None = None  # error code when the image could not be read

    @property
    def usable(self) -> bool:
        return self.vector is not None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Embedded:
        vec = doc.get("vector")
        box = doc.get("box")
        return cls(
            sha256=doc["_id"].split(":", 1)[0],
            faces_found=int(doc.get("faces_found", 0)),
            vector=None if vec is None else np.asarray(vec, dtype=np.float64),
            box=None if box is None else tuple(box),
            error=doc.get("error"),
        )

    def to_doc(self, settings_key: str, label: str | None, path: str) -> dict[str, Any]:
        return {
            "_id": embedding_id(self.sha256, settings_key),
            "settings": settings_key,
            "label": label,
            "path": path,
            "vector": None if self.vector is None else [float(v) for v in self.vector],
            "box": None if self.box is None else [int(v) for v in self.box],
            "faces_found": self.faces_found,
            "error": self.error,
        }


def embed_one(data: bytes, settings: EmbeddingSettings, sha256: str | None = None) -> Embedded:
    """Embed the face in one image's bytes (an embedding only when exactly one face is found)."""
    sha256 = sha256 or faces.content_hash(data)
    try:
        image = faces.decode(data)
    except AnfeError as exc:
        return Embedded(sha256=sha256, faces_found=0, error=exc.code)
    boxes = faces.face_boxes(image, settings)
    if len(boxes) != 1:
        return Embedded(sha256=sha256, faces_found=len(boxes))
    vector = faces.encode(image, boxes, settings.jitters, settings.model)[0]
    return Embedded(sha256=sha256, faces_found=1, vector=vector, box=boxes[0])


def embed_batch(batch: list[tuple[str, bytes]], settings: EmbeddingSettings) -> list[Embedded]:
    """Worker task: embed each ``(sha256, bytes)`` of a batch."""
    return [embed_one(data, settings, sha) for sha, data in batch]


def _worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    faces.warm_up()


def default_jobs() -> int:
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


class Progress:
    """A tqdm bar, or nothing when ``enabled`` is false."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.bar = tqdm(total=total, desc=desc, unit="img", disable=not enabled, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def embed_paths(
    paths: Sequence[str | Path],
    settings: EmbeddingSettings,
    store: Store | None = None,
    *,
    labels: Sequence[str | None] | None = None,
    jobs: int | None = None,
    progress: bool = True,
    desc: str = "embedding",
    cache: dict[str, Embedded] | None = None,
    dask: str | None = None,
) -> list[Embedded]:
    """Embed every image in ``paths``; return one :class:`Embedded` per path, in order.

    Files are read and hashed as the workers need them (cache hits never reach a worker and are
    never decoded), so only the batches in flight are held in memory.

    :param store: database for the embedding cache (None: no cache)
    :param labels: the gender of each path, kept in the cache documents for inspection
    :param jobs: worker processes (default: the cores; 1 runs in this process)
    :param cache: already-loaded cache (from :func:`load_cache`), to avoid reading it again
    :param dask: run the batches on a Dask cluster: ``"local"`` or a scheduler address
        (see :mod:`centroids.dask_pool`); None uses the local process pool
    """
    key = settings.key()
    if cache is None:
        cache = load_cache(store, settings) if store is not None else {}
    jobs = jobs or default_jobs()
    results: list[Embedded | None] = [None] * len(paths)
    pending: dict[str, list[int]] = {}
    bar = Progress(len(paths), desc, progress)

    def work() -> Iterator[tuple[str, bytes]]:
        """The images still to embed, read lazily; cache hits are filled in on the way."""
        for i, path in enumerate(paths):
            try:
                data = Path(path).read_bytes()
            except OSError:
                results[i] = Embedded(sha256="", faces_found=0, error="file_unreadable")
                bar.update()
                continue
            sha = faces.content_hash(data)
            if sha in cache:
                results[i] = cache[sha]
                bar.update()
            elif sha in pending:
                pending[sha].append(i)
            else:
                pending[sha] = [i]
                yield sha, data

    writer = _Writer(store, key, paths, labels)
    try:
        for emb in _run(work(), settings, jobs, dask):
            cache[emb.sha256] = emb
            for i in pending[emb.sha256]:
                results[i] = emb
                bar.update()
            writer.add(emb, pending[emb.sha256][0])
    finally:  # keep finished work even when interrupted
        writer.flush()
        bar.close()
    return results  # type: ignore[return-value]


class _Writer:
    """Buffers new embeddings and writes them to the database every ``WRITE_EVERY``."""

    def __init__(self, store: Store | None, key: str, paths: Sequence, labels) -> None:
        self.store, self.key, self.paths, self.labels = store, key, paths, labels
        self.buffer: list[dict[str, Any]] = []

    def add(self, emb: Embedded, index: int) -> None:
        if self.store is None:
            return
        label = self.labels[index] if self.labels is not None else None
        self.buffer.append(emb.to_doc(self.key, label, str(self.paths[index])))
        if len(self.buffer) >= WRITE_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.store is not None and self.buffer:
            self.store.put_embeddings(self.buffer)
            self.buffer = []


def load_cache(store: Store, settings: EmbeddingSettings) -> dict[str, Embedded]:
    """Every cached embedding for these settings, by image hash."""
    return {
        sha: Embedded.from_doc(doc) for sha, doc in store.cached_embeddings(settings.key()).items()
    }


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter), taken lazily."""
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def _run(
    todo: Iterable[tuple[str, bytes]], settings: EmbeddingSettings, jobs: int, dask: str | None
) -> Iterator[Embedded]:
    """Yield the embedding of every ``(sha, bytes)`` in ``todo``, as workers finish them."""
    if dask is not None:
        from centroids import dask_pool

        yield from dask_pool.run(todo, settings, dask, BATCH_IMAGES)
    elif jobs <= 1:
        for batch in chunks(todo, BATCH_IMAGES):
            yield from embed_batch(batch, settings)
    else:
        yield from _run_pool(todo, settings, jobs, embed_batch)


_POOLS: dict[int, ProcessPoolExecutor] = {}


def _pool(jobs: int) -> ProcessPoolExecutor:
    """A pool of ``jobs`` spawned workers with the models loaded, kept for the next call."""
    pool = _POOLS.get(jobs)
    if pool is None or getattr(pool, "_broken", False):
        pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_worker_init)
        _POOLS[jobs] = pool
    return pool


def shutdown_pools() -> None:
    """Stop the worker processes kept between calls (also done at interpreter exit)."""
    while _POOLS:
        _, pool = _POOLS.popitem()
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown_pools)


def _run_pool(
    todo: Iterable[tuple[str, bytes]],
    settings: EmbeddingSettings,
    jobs: int,
    task: Callable[[list[tuple[str, bytes]], EmbeddingSettings], list[Embedded]],
) -> Iterator[Embedded]:
    """Run ``task`` on batches of ``todo`` in the pool, at most ``3 * jobs`` batches in flight.

    The pool (and its loaded models) is reused by the next call, as between the waves of a
    build; an error or an interrupt shuts it down, dropping the batches not started.
    """
    pool = _pool(jobs)
    in_flight: set[Future] = set()
    ok = False
    try:
        for batch in chunks(todo, BATCH_IMAGES):
            in_flight.add(pool.submit(task, batch, settings))
            if len(in_flight) >= jobs * 3:
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield from fut.result()
        while in_flight:
            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for fut in done:
                yield from fut.result()
        ok = True
    finally:
        if not ok:
            _POOLS.pop(jobs, None)
            pool.shutdown(wait=True, cancel_futures=True)
