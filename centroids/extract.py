"""Embed many images: in parallel processes, cached in the database, resumable, with progress.

:func:`embed_paths` is the one entry point. It hashes each image, takes what the ``embeddings``
collection already holds for that hash and those settings, and sends only the rest, as batches of
image bytes, to a pool of worker processes (models loaded once per worker). Results go back to the
database in batches as they arrive, so an interrupted run keeps all finished work and a rerun
recomputes nothing. Failures (unreadable image, no face, several faces) are cached too.

The worker function :func:`embed_batch` takes bytes, not paths, so the same batches can run on a
Dask cluster whose workers share no disk with us.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from centroids import faces
from centroids.errors import AnfeError
from centroids.faces import EmbeddingSettings
from centroids.store import Store, embedding_id

BATCH_IMAGES = 8  # images per task sent to a worker
WRITE_EVERY = 64  # results per database write


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
    boxes = (
        [faces.whole_image_box(image)]
        if settings.cropped
        else faces.detect(image, settings.max_side, settings.upsample)
    )
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
) -> list[Embedded]:
    """Embed every image in ``paths``; return one :class:`Embedded` per path, in order.

    :param store: database for the embedding cache (None: no cache)
    :param labels: the gender of each path, kept in the cache documents for inspection
    :param jobs: worker processes (default: the cores; 1 runs in this process)
    :param cache: already-loaded cache (from :func:`load_cache`), to avoid reading it again
    """
    key = settings.key()
    if cache is None:
        cache = load_cache(store, settings) if store is not None else {}
    jobs = jobs or default_jobs()
    results: list[Embedded | None] = [None] * len(paths)
    pending: dict[str, list[int]] = {}
    bar = Progress(len(paths), desc, progress)
    todo: list[tuple[str, bytes]] = []
    unreadable: list[tuple[int, Embedded]] = []
    try:
        for i, path in enumerate(paths):
            try:
                data = Path(path).read_bytes()
            except OSError:
                unreadable.append((i, Embedded(sha256="", faces_found=0, error="file_unreadable")))
                continue
            sha = faces.content_hash(data)
            if sha in cache:
                results[i] = cache[sha]
                bar.update()
            elif sha in pending:
                pending[sha].append(i)
            else:
                pending[sha] = [i]
                todo.append((sha, data))
        for i, emb in unreadable:
            results[i] = emb
            bar.update()
        writer = _Writer(store, key, paths, labels)
        try:
            for emb in _run(todo, settings, jobs):
                cache[emb.sha256] = emb
                for i in pending[emb.sha256]:
                    results[i] = emb
                    bar.update()
                writer.add(emb, pending[emb.sha256][0])
        finally:  # keep finished work even when interrupted
            writer.flush()
    finally:
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


def _batches(todo: list[tuple[str, bytes]], size: int) -> Iterator[list[tuple[str, bytes]]]:
    for i in range(0, len(todo), size):
        yield todo[i : i + size]


def _run(
    todo: list[tuple[str, bytes]], settings: EmbeddingSettings, jobs: int
) -> Iterator[Embedded]:
    """Yield the embedding of every ``(sha, bytes)`` in ``todo``, as workers finish them."""
    if not todo:
        return
    if jobs <= 1:
        for batch in _batches(todo, BATCH_IMAGES):
            yield from embed_batch(batch, settings)
        return
    yield from _run_pool(todo, settings, jobs, embed_batch)


def _run_pool(
    todo: list[tuple[str, bytes]],
    settings: EmbeddingSettings,
    jobs: int,
    task: Callable[[list[tuple[str, bytes]], EmbeddingSettings], list[Embedded]],
) -> Iterator[Embedded]:
    batches = _batches(todo, BATCH_IMAGES)
    in_flight: set[Future] = set()
    pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_worker_init)
    try:
        for batch in batches:
            in_flight.add(pool.submit(task, batch, settings))
            if len(in_flight) >= jobs * 3:
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield from fut.result()
        while in_flight:
            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for fut in done:
                yield from fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
