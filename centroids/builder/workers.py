"""The embedding worker: what a worker process runs, and the pool that runs it.

A worker task embeds a batch of ``(sha256, bytes)`` into one :class:`Embedded` per image
(:func:`embed_batch`, the batch's faces encoded in one call), so the same task runs in a local
process or on a Dask worker that shares no disk with us. :func:`run_batches` hands batches of
any such task to a pool of spawned processes sized to the cores, models loaded once per process
(:func:`worker_init`), the pool kept for the next call (the next wave of a build, the masked
faces of the benchmark). :class:`BatchWriter` sends results to the database in batches and
:class:`Progress` shows them.

Processes, not threads: dlib's encoder, most of the work per face, holds the GIL
(``perf/gil.py`` measures it). With the ONNX encoder, each worker gives onnxruntime
cores / jobs threads, so processes x threads = cores.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from itertools import islice
from multiprocessing import get_context
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from anfe.centroids import vectors
from anfe.centroids.cpus import usable_cpus
from anfe.centroids.errors import AnfeError
from anfe.centroids.imaging import decoding
from anfe.centroids.storage.store import Store, embedding_id
from anfe.centroids.vision import encoders, faces
from anfe.centroids.vision.settings import EmbeddingSettings

BATCH_IMAGES = 8  # images per task sent to a worker
WRITE_EVERY = 64  # results per database write (one chunk document)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
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
        """A cached face, as :meth:`Store.cached_embeddings` gives it (or a one-face document
        of an earlier version)."""
        vec = doc.get("vector")
        box = doc.get("box")
        return cls(
            sha256=doc["_id"].split(":", 1)[0],
            faces_found=int(doc.get("faces_found", 0)),
            vector=None if vec is None else vectors.unpack(vec, np.float32),
            box=None if box is None else tuple(box),
            error=doc.get("error"),
        )

    def to_doc(self, settings_key: str, label: str | None, path: str) -> dict[str, Any]:
        """This face as a one-face entry for :meth:`Store.put_embeddings` (which stores entries
        in chunks); the vector as float32, as the encoder computed it."""
        return {
            "_id": embedding_id(self.sha256, settings_key),
            "settings": settings_key,
            "label": label,
            "path": path,
            "vector": None if self.vector is None else np.asarray(self.vector, dtype=np.float32),
            "box": None if self.box is None else [int(v) for v in self.box],
            "faces_found": self.faces_found,
            "error": self.error,
        }


def embed_batch(batch: list[tuple[str, bytes]], settings: EmbeddingSettings) -> list[Embedded]:
    """Worker task: embed each ``(sha256, bytes)`` of a batch (an embedding only when exactly one
    face is found). The faces of the whole batch go to the encoder in one call; each image is
    dropped once its face chip is cut, so only the small chips wait for that call.
    """
    out: list[Embedded] = []
    chips: list[np.ndarray] = []
    for sha, data in batch:
        try:
            image = decoding.decode(data)
        except AnfeError as exc:
            out.append(Embedded(sha256=sha, faces_found=0, error=exc.code))
            continue
        boxes = faces.face_boxes(image, settings)
        out.append(Embedded(sha256=sha, faces_found=len(boxes)))
        if len(boxes) == 1:
            out[-1].box = boxes[0]
            chips.append(faces.chips(image, boxes, settings.model))
    if chips:
        # float32, as the encoder computes them (its float64 output holds float32 values)
        found = faces.encode_chips(
            np.concatenate(chips), settings.jitters, settings.encoder
        ).astype(np.float32)
        for emb, vector in zip((e for e in out if e.box is not None), found, strict=True):
            emb.vector = vector
    return out


def worker_init(encoder: str, threads: int, detector: bool | str = True) -> None:
    """Run once in every worker process: ``threads`` for the encoder, one for BLAS, the models
    loaded (the face detector only with ``detector``, its name or ``True`` for the default:
    cropped faces are not detected)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    encoders.set_threads(threads)
    faces.warm_up(encoder, detector=detector)


def default_jobs() -> int:
    """The CPUs this process may use (affinity and cgroup quota, see :mod:`anfe.centroids.cpus`)."""
    return usable_cpus()


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter), taken lazily."""
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


class Progress:
    """A tqdm bar, or nothing when ``enabled`` is false."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.bar = tqdm(total=total, desc=desc, unit="img", disable=not enabled, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


class BatchWriter:
    """Buffers embedding documents and writes them to the database every ``WRITE_EVERY``.

    With no store it keeps nothing. Call :meth:`flush` in a ``finally`` so an interrupted run
    keeps all finished work.
    """

    def __init__(self, store: Store | None) -> None:
        self.store = store
        self.buffer: list[dict[str, Any]] = []

    def add(self, doc: dict[str, Any]) -> None:
        if self.store is None:
            return
        self.buffer.append(doc)
        if len(self.buffer) >= WRITE_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.store is not None and self.buffer:
            self.store.put_embeddings(self.buffer)
            self.buffer = []


Task = Callable[[list[T], EmbeddingSettings], list[R]]

_POOLS: dict[int, ProcessPoolExecutor] = {}


def _pool(jobs: int, settings: EmbeddingSettings) -> ProcessPoolExecutor:
    """A pool of ``jobs`` spawned workers with the models loaded, kept for the next call.

    A pool started for cropped faces has no detector loaded; should a later call detect, each
    worker loads it on its first image.
    """
    pool = _POOLS.get(jobs)
    if pool is None or getattr(pool, "_broken", False):
        pool = ProcessPoolExecutor(
            jobs,
            mp_context=get_context("spawn"),
            initializer=worker_init,
            initargs=(
                settings.encoder,
                encoders.threads_per_process(jobs),
                False if settings.cropped else settings.detector,
            ),
        )
        _POOLS[jobs] = pool
    return pool


def shutdown_pools() -> None:
    """Stop the worker processes kept between calls (also done at interpreter exit)."""
    while _POOLS:
        _, pool = _POOLS.popitem()
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown_pools)


def run_batches(
    todo: Iterable[T], task: Task, settings: EmbeddingSettings, jobs: int
) -> Iterator[R]:
    """Run ``task`` on batches of ``BATCH_IMAGES`` items of ``todo``; yield its results.

    ``jobs`` 1 runs here, in order, the encoder on all the cores. Otherwise the batches go to the kept pool of ``jobs``
    processes, at most ``3 * jobs`` in flight, and results come as workers finish them; an
    error or an interrupt shuts the pool down, dropping the batches not started.
    """
    encoders.prepare(settings.encoder)  # a failed conversion: one clear error, here
    if jobs <= 1:
        encoders.set_threads(encoders.threads_per_process(1))
        for batch in chunks(todo, BATCH_IMAGES):
            yield from task(batch, settings)
        return
    pool = _pool(jobs, settings)
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


def run_in_order(todo: list[T], task: Task, settings: EmbeddingSettings, jobs: int) -> list[R]:
    """:func:`run_batches`, with the results in the order of ``todo`` (``task`` returns one
    result per item of its batch, in order), whichever worker finishes first."""
    numbered = list(enumerate(todo))
    done = dict(run_batches(numbered, partial(_numbered, task), settings, jobs))
    return [done[i] for i in range(len(todo))]


def _numbered(task: Task, batch: list[tuple[int, T]], settings: EmbeddingSettings) -> list:
    """Worker task: ``task`` on the items of ``batch``, each result with its item's number."""
    results = task([item for _, item in batch], settings)
    return [(i, r) for (i, _), r in zip(batch, results, strict=True)]
