"""Detection and encoding in worker processes, so they never block the event loop.

dlib's encoder holds the GIL (``perf/gil.py`` measures it: two threads encode no faster
than one, and a thread running detect+encode stalls the others for over 100 ms), so threads
would stall ``/health`` and every other request. Each worker process loads the dlib
models once, when it starts; :meth:`CpuPool.start` starts all workers and waits for them, so
the models are loaded before the service accepts its first request.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from app.errors import WorkerFailed
from centroids import encoders, faces
from centroids.model import CentroidSet
from centroids.predict import predict_image

log = logging.getLogger("anfe.app")


def _init_worker(barrier: Any, encoder: str, threads: int) -> None:
    encoders.set_threads(threads)
    faces.warm_up(encoder)
    barrier.wait(timeout=600)  # take no task until every worker has its models


def _ready() -> int:
    return os.getpid()


def _predict(data: bytes, cs: CentroidSet, limits: dict[str, int]) -> dict[str, Any]:
    return predict_image(data, cs, **limits)


class CpuPool:
    """A pool of ``size`` processes, each with the models loaded, that classifies images; each
    process gives the ``encoder`` cores / ``size`` threads."""

    def __init__(self, size: int, encoder: str = encoders.DEFAULT_ENCODER) -> None:
        self.size = size
        self.encoder = encoder
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self.pids: set[int] = set()

    @property
    def ready(self) -> bool:
        """Whether every worker has started and loaded the models."""
        return self._executor is not None

    def start(self) -> None:
        """Start every worker and block until each has loaded the models."""
        # spawn, not fork: the service process has threads (event loop, database thread)
        ctx = multiprocessing.get_context("spawn")
        executor = ProcessPoolExecutor(
            max_workers=self.size,
            mp_context=ctx,
            initializer=_init_worker,
            # processes x encoder threads = the cores
            initargs=(
                ctx.Barrier(self.size),
                self.encoder,
                encoders.threads_per_process(self.size),
            ),
        )
        # each submit while no worker is idle starts one more process, up to ``size``; the
        # barrier holds them all until the last has loaded its models
        futures = [executor.submit(_ready) for _ in range(self.size)]
        self.pids = {f.result() for f in futures}
        self._executor = executor
        log.info("%d detection worker(s) ready (models loaded)", self.size)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    async def predict(self, data: bytes, cs: CentroidSet, **limits: int) -> dict[str, Any]:
        """Run :func:`centroids.predict.predict_image` in a worker; its errors pass through."""
        loop = asyncio.get_running_loop()
        executor = self._executor
        if executor is None:
            raise WorkerFailed("the detection workers are restarting; try again")
        try:
            return await loop.run_in_executor(executor, _predict, data, cs, limits)
        except BrokenProcessPool:
            log.error("a detection worker died; restarting the pool")
            await loop.run_in_executor(None, self._restart, executor)
            raise WorkerFailed(
                "the image crashed a detection worker; the workers were restarted, try again"
            ) from None

    def _restart(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is not broken:  # another request restarted it already
                return
            self._executor = None
            broken.shutdown(wait=False, cancel_futures=True)
            self.start()
