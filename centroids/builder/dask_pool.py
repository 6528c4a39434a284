"""Run extraction batches on a ``dask.distributed`` cluster instead of the local process pool.

:func:`run` takes the same work list and worker task as the local pool
(:func:`anfe.centroids.builder.workers.run_batches`) and yields the same results as workers finish them, so
:func:`anfe.centroids.builder.extract.embed_paths` keeps its cache, resume and progress behaviour whichever
runs the work. Each task is one batch of image *bytes* handed to
:func:`anfe.centroids.builder.workers.embed_batch`: workers need the ``anfe`` package installed, but no disk
shared with us. Only a bounded number of batches is in flight at once, so memory stays flat on
large datasets, and an interrupted run cancels what has not started.

``address`` is ``"local"`` (a :class:`distributed.LocalCluster` on 127.0.0.1, one single-threaded
worker process per core: dlib holds the GIL) or the address of an existing scheduler,
``tcp://host:8786`` or ``host:8786``. Needs the optional extra ``dask``
(``pip install 'anfe[dask]'``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from anfe.centroids.builder.workers import Task, chunks, default_jobs
from anfe.centroids.errors import AnfeError, InvalidParameter
from anfe.centroids.vision.settings import EmbeddingSettings

LOCAL = "local"
CONNECT_TIMEOUT_S = 20
IN_FLIGHT_PER_THREAD = 3  # batches queued per worker thread: enough to keep workers busy
_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc)://[^\s/]+$|^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$")


class DaskUnavailable(AnfeError):
    """The Dask extra is not installed, or the cluster cannot be reached."""

    code = "dask_unavailable"
    kind = "database"


def check_address(address: str) -> str:
    """Return ``address`` if it is ``local`` or a scheduler address; raise otherwise."""
    address = (address or "").strip()
    if address == LOCAL or _ADDRESS.match(address):
        return address
    raise InvalidParameter(
        f"--dask must be 'local' or a scheduler address such as tcp://host:8786, not {address!r}"
    )


def _distributed():
    try:
        import distributed
    except ImportError:
        raise DaskUnavailable(
            "Dask is not installed: pip install 'anfe[dask]' (dask[distributed])"
        ) from None
    return distributed


@contextmanager
def client(address: str, workers: int | None = None) -> Iterator[Any]:
    """A connected :class:`distributed.Client`; for ``local``, on a new cluster closed after."""
    address = check_address(address)
    distributed = _distributed()
    cluster = None
    try:
        if address == LOCAL:
            cluster = distributed.LocalCluster(
                n_workers=workers or default_jobs(),
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=40,  # logging.ERROR
            )
            c = distributed.Client(cluster, timeout=CONNECT_TIMEOUT_S)
        else:
            c = distributed.Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        raise DaskUnavailable(
            f"cannot reach the Dask scheduler at {address}: {type(exc).__name__}: {exc}"
        ) from None
    try:
        yield c
    finally:
        c.close()
        if cluster is not None:
            cluster.close()


def _threads(c: Any) -> int:
    n = sum(c.nthreads().values())
    if n < 1:
        raise DaskUnavailable("the Dask cluster has no workers")
    return n


def run(
    todo: Iterable[Any],
    task: Task,
    settings: EmbeddingSettings,
    address: str,
    batch_size: int,
) -> Iterator[Any]:
    """Yield ``task``'s results for batches of ``todo`` (such as ``(sha256, bytes)`` pairs given
    to :func:`anfe.centroids.builder.workers.embed_batch`), as the cluster finishes them.

    No cluster is contacted when ``todo`` is empty. At most ``IN_FLIGHT_PER_THREAD`` batches per
    worker thread are submitted ahead; a failed task raises its error here; closing the
    generator (an interrupt) cancels the batches not done.
    """
    distributed = _distributed()
    batches = chunks(todo, batch_size)
    first = next(batches, None)
    if first is None:  # everything was cached: no cluster is started or contacted
        return
    batches = itertools.chain([first], batches)
    with client(address) as c:
        limit = _threads(c) * IN_FLIGHT_PER_THREAD
        queue = distributed.as_completed()
        live: set = set()

        def submit_next() -> bool:
            batch = next(batches, None)
            if batch is None:
                return False
            fut = c.submit(task, batch, settings, pure=False)
            live.add(fut)
            queue.add(fut)
            return True

        try:
            while len(live) < limit and submit_next():
                pass
            for fut in queue:
                result = fut.result()
                live.discard(fut)
                fut.release()
                submit_next()
                yield from result
        finally:
            if live:
                c.cancel(list(live))
