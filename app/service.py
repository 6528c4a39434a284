"""The service layer the routes call: cached centroids, the database thread, the worker pool."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from anfe.app.cache import CentroidCache
from anfe.app.jsonbody import JsonImage
from anfe.app.pool import CpuPool
from anfe.app.settings import Settings
from anfe.centroids.errors import AnfeError
from anfe.centroids.imaging import formats
from anfe.centroids.model.centroid_set import CentroidSet
from anfe.centroids.predict import check_max_side
from anfe.centroids.vision import detectors

# /health waits this long for a due database look, then answers with what it last saw
HEALTH_WAIT_SECONDS = 0.05


class Service:
    """What one worker process of the service holds: built by ``create_app``, started by lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache = CentroidCache(
            settings.db,
            default=settings.centroids,
            refresh_seconds=settings.refresh_seconds,
            seed=settings.seed,
        )
        self.pool = CpuPool(
            settings.cpu_workers,
            settings.image_budget_seconds,
            settings.encoder,
            settings.worker_sets,
            detector=settings.detector,
        )
        # every database call runs on this one thread: montydb is not thread-safe, and a slow
        # or unreachable MongoDB must not hold up the event loop
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anfe-db")
        # the one refresh in flight: concurrent requests share it instead of queueing behind it
        self._refreshing: asyncio.Future | None = None

    async def start(self) -> None:
        await self.pool.start()
        try:
            await self._on_db(self.cache.refresh, True)
        except AnfeError:
            pass  # logged by the cache; requests answer 503 until the database is back

    async def stop(self) -> None:
        await self.pool.close()
        await self._on_db(self.cache.close)
        self._db.shutdown(wait=True)

    async def _on_db(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    def _refresh(self) -> asyncio.Future:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._on_db(self.cache.refresh))
            # a refresh nobody awaits any more (health gave up on it) must not log its error
            self._refreshing.add_done_callback(lambda f: f.cancelled() or f.exception())
        return self._refreshing

    async def centroids(self) -> CentroidCache:
        """The cache, refreshed if due; every request waiting meanwhile shares one refresh.

        :raises DatabaseUnavailable: the database is unreachable (remembered for
            ``refresh_seconds`` after a failed look, so requests then fail at once)
        """
        await asyncio.shield(self._refresh())
        return self.cache

    async def health_view(self, wait_seconds: float = HEALTH_WAIT_SECONDS) -> CentroidCache:
        """The cache for ``/health``: refreshed if that is quick, else as last seen."""
        with contextlib.suppress(AnfeError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._refresh()), wait_seconds)
        return self.cache

    async def centroid_set(self, cid: str | None) -> CentroidSet:
        """:raises CentroidsNotFound, NoCentroids, DatabaseUnavailable:"""
        return (await self.centroids()).get(cid)

    async def predict(
        self,
        data: bytes | JsonImage,
        cs: CentroidSet,
        max_faces: int | None,
        disconnected: Callable[[], Awaitable[bool]] | None = None,
        detector: str | None = None,
        max_side: int | None = None,
    ) -> dict[str, Any]:
        """Classify every face in ``data`` (image bytes, or a JSON body the worker decodes)
        with ``cs`` in a worker process.

        ``disconnected()`` is polled while the worker works; when it turns true the work stops.
        ``detector`` (default: the service's) and ``max_side`` (default: the set's; 0: full
        resolution) choose how faces are found.

        :raises InvalidParameter: an unknown detector, a ``max_side`` neither 0 nor >= 64
        """
        detector = detectors.check(detector or self.settings.detector)
        check_max_side(max_side)
        if isinstance(data, bytes):
            formats.image_format(data)  # cheap: refuse without a trip to a worker
        s = self.settings
        return await self.pool.predict(
            data,
            cs,
            disconnected,
            max_faces=max_faces or s.max_faces,
            max_bytes=s.max_bytes,
            max_pixels=s.max_pixels,
            max_image_side=s.max_image_side,
            max_decoded_bytes=s.max_decoded_bytes,
            encoder=s.encoder,
            detector=detector,
            max_side=max_side,
        )
