"""Embed many images: in parallel processes, cached in the database, resumable, with progress.

:func:`embed_paths` is the one entry point. It reads and hashes each image as the workers need
more, takes what the ``embeddings`` collection already holds for that hash and those settings
(before any decoding), and sends only the rest, as batches of image bytes, to a pool of spawned
worker processes sized to the cores (models loaded once per worker; the pool is kept for the next
call, such as the next wave of a build). Results go back to the database in batches as they
arrive, so an interrupted run keeps all finished work and a rerun recomputes nothing. Failures
(unreadable image, no face, several faces) are cached too.

The worker, its pool and the batched writes are in :mod:`anfe.centroids.builder.workers`. The worker
function :func:`~anfe.centroids.builder.workers.embed_batch` takes bytes, not paths, so the same batches can
run on a Dask cluster whose workers share no disk with us (``dask="local"`` or a scheduler
address; :mod:`anfe.centroids.builder.dask_pool`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from anfe.centroids.builder import dask_pool
from anfe.centroids.builder.workers import (
    BATCH_IMAGES,
    BatchWriter,
    Embedded,
    Progress,
    default_jobs,
    embed_batch,
    run_batches,
)
from anfe.centroids.imaging import formats
from anfe.centroids.storage.embedding_chunks import CachedFaces
from anfe.centroids.storage.store import Store
from anfe.centroids.vision.settings import EmbeddingSettings


def embed_paths(
    paths: Sequence[str | Path],
    settings: EmbeddingSettings,
    store: Store | None = None,
    *,
    labels: Sequence[str | None] | None = None,
    jobs: int | None = None,
    progress: bool = True,
    desc: str = "embedding",
    cache: Cache | None = None,
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
        (see :mod:`anfe.centroids.builder.dask_pool`); None uses the local process pool
    """
    key = settings.key()
    if cache is None:
        cache = load_cache(store, settings) if store is not None else Cache()
    jobs = jobs or default_jobs()
    results: list[Embedded | None] = [None] * len(paths)
    pending: dict[str, list[int]] = {}
    bar = Progress(len(paths), desc, progress)

    def work() -> Iterator[tuple[str, bytes]]:
        """The images still to embed, read lazily; cache hits are filled in on the way."""
        for i, path in enumerate(paths):
            try:
                with open(path, "rb") as fh:  # not Path(path): parsing it again cost more
                    data = fh.read()
            except OSError:
                results[i] = Embedded(sha256="", faces_found=0, error="file_unreadable")
                bar.update()
                continue
            sha = formats.content_hash(data)
            if sha in cache:
                results[i] = cache[sha]
                bar.update()
            elif sha in pending:
                pending[sha].append(i)
            else:
                pending[sha] = [i]
                yield sha, data

    writer = BatchWriter(store)
    try:
        for emb in _run(work(), settings, jobs, dask):
            cache[emb.sha256] = emb
            for i in pending[emb.sha256]:
                results[i] = emb
                bar.update()
            first = pending[emb.sha256][0]
            label = labels[first] if labels is not None else None
            writer.add(emb.to_doc(key, label, str(paths[first])))
    finally:  # keep finished work even when interrupted
        writer.flush()
        bar.close()
    return results  # type: ignore[return-value]


class Cache:
    """The embedding cache of one setting, in memory: what the database held when read, as one
    float32 matrix (:class:`~centroids.embedding_chunks.CachedFaces`), and what this run added.

    ``cache[sha]`` is an :class:`Embedded` whose vector is a view of its row, made when asked
    for: the cache holds no per-face Python objects for the faces it read.
    """

    def __init__(self, stored: CachedFaces | None = None) -> None:
        self.stored = stored if stored is not None else CachedFaces()
        self.added: dict[str, Embedded] = {}

    def __contains__(self, sha: object) -> bool:
        return sha in self.added or sha in self.stored

    def __getitem__(self, sha: str) -> Embedded:
        if sha in self.added:
            return self.added[sha]
        if sha not in self.stored:
            raise KeyError(sha)
        face = self.stored.face(sha)
        return Embedded(sha, face["faces_found"], face["vector"], face["box"], face["error"])

    def __setitem__(self, sha: str, emb: Embedded) -> None:
        self.added[sha] = emb

    def __len__(self) -> int:
        return len(self.stored) + sum(sha not in self.stored for sha in self.added)


def load_cache(store: Store, settings: EmbeddingSettings) -> Cache:
    """Every cached embedding for these settings, read in one query (:meth:`Store.load_embeddings`)."""
    return Cache(store.load_embeddings(settings.key()))


def _run(
    todo: Iterable[tuple[str, bytes]], settings: EmbeddingSettings, jobs: int, dask: str | None
) -> Iterator[Embedded]:
    """Yield the embedding of every ``(sha, bytes)`` in ``todo``, as workers finish them."""
    if dask is not None:
        yield from dask_pool.run(todo, embed_batch, settings, dask, BATCH_IMAGES)
    else:
        yield from run_batches(todo, embed_batch, settings, jobs)
