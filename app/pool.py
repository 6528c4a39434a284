"""Detection and encoding in worker processes, each owned by one request at a time.

dlib's encoder holds the GIL (``perf/gil.py`` measures it: two threads encode no faster
than one, and a thread running detect+encode stalls the others for over 100 ms), so threads
would stall ``/health`` and every other request. Workers are forked from a fork server that
loaded dlib's detector and 5-point landmark model once (:mod:`anfe.app.worker_models`), so a new
worker only opens its encoder (an onnxruntime session is not fork-safe, so each worker opens
its own, with cores / workers threads); :meth:`CpuPool.start` waits for all of them before the
service takes requests.

Each worker talks to the service over its own pipe, so a worker is a resource one request holds,
and the service can stop that work without touching the others:

- **budget**: decoding plus detection must end within ``budget_seconds`` (then each face gets
  ``FACE_SECONDS`` to be encoded); a worker still busy past that is killed and replaced, and the
  request answers ``422 image_over_budget``. Pillow and dlib cannot be interrupted from inside,
  so the only sure stop is killing the process.
- **abandoned**: a request whose client went away kills and replaces its worker at once.
- **deaths**: a worker that dies, idle or busy, is noticed at once (its pipe closes) and
  replaced; only the request it was working for is told, with ``503 worker_failed``.

A centroid set goes to a worker once, not with every image (``g_5000-mahalanobis`` pickles to
~275 kB with its 128 x 128 whitening and child policy): each request names its set by a
:data:`SetKey`, the set's id and the SHA-256 of its pickle, so a set replaced in the database
under the same id is a new key. Each worker keeps its last ``sets`` sets (:class:`SetLru`) and
the service keeps, per worker, the same LRU of keys alone: both see the same gets and puts in the
same order, so the service knows what the worker holds without asking, and sends the pickled
set only with a key the worker lacks. A replaced worker starts with both empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

from anfe.app.errors import ClientGone, WorkerFailed
from anfe.app.jsonbody import JsonImage, image_from_json
from anfe.centroids.errors import AnfeError, ImageOverBudget
from anfe.centroids.model.centroid_set import CentroidSet
from anfe.centroids.predict import predict_image
from anfe.centroids.vision import detectors, encoders, faces

log = logging.getLogger("anfe.app")
# time allowed per face for landmarks + encoding, after detection: a generous allowance
FACE_SECONDS = 2.0
# slack for the pipe and the process hand-over around the worker's own budget
GRACE_SECONDS = 1.0
# how often a waiting request looks whether its client is still there
POLL_SECONDS = 0.25
START_TIMEOUT = 600.0
PRELOAD = ["anfe.app.worker_models", "anfe.centroids.predict", "anfe.app.pool"]
# centroid sets each worker keeps between requests (ANFE_WORKER_SETS)
WORKER_SETS = 4

SetKey = tuple[str, str]  # (set id, SHA-256 of the pickled set): a new key when the set changes


class SetLru:
    """At most ``size`` values by key, the least recently used dropped first (``size`` 0 keeps
    none). Deterministic: two of them given the same gets and puts hold the same keys."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any | None:
        """The value of ``key`` (now the most recently used), or None."""
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: Any, value: Any) -> None:
        if self.size <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def _worker_main(conn: Connection, encoder: str, threads: int, sets: int, detector: str) -> None:
    """The loop of one worker process: load the models, then classify one image per message.

    A message is ``(data, key, pickled set or None, limits)``: None when the service knows this
    worker holds the set ``key`` (see :class:`SetLru`).
    """
    try:
        encoders.set_threads(threads)
        faces.warm_up(encoder, detector=detector)
    except AnfeError as exc:  # e.g. an unreadable encoder cache: the service says why it stops
        conn.send(("failed", exc.message))
        return
    held = SetLru(sets)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            data, key, pickled, limits = conn.recv()
        except (EOFError, OSError):
            return  # the service closed the pipe: shut down
        try:
            # the set first: a set received is held even when the image then fails
            if pickled is None:
                cs = held.get(key)
                if cs is None:  # a bug: the service's mirror of this worker's sets is wrong
                    raise LookupError(f"worker does not hold centroid set {key!r}")
            else:
                cs = pickle.loads(pickled)
                held.put(key, cs)
            if isinstance(data, JsonImage):
                data = image_from_json(data.body, limits["max_bytes"])
            result = predict_image(
                data, cs, **limits, on_detected=lambda n: conn.send(("detected", n))
            )
            conn.send(("ok", result))
        except AnfeError as exc:
            conn.send(("error", exc))
        except Exception as exc:  # a bug: let the service answer 500 and log it
            conn.send(("bug", f"{type(exc).__name__}: {exc}"))


class Worker:
    """One worker process and the parent end of its pipe; messages land in ``inbox``."""

    def __init__(
        self,
        ctx: Any,
        on_exit: Callable[[Worker], None],
        encoder: str,
        threads: int,
        sets: int,
        detector: str = detectors.DEFAULT_DETECTOR,
    ) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=_worker_main, args=(child, encoder, threads, sets, detector), daemon=True
        )
        self.proc.start()
        self.pid: int = self.proc.pid
        child.close()
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.alive = True
        self.ready = False  # models loaded
        self.busy = False
        self.killed = False
        self._reaped = False
        self._reap_lock = threading.Lock()
        self._on_exit = on_exit
        # the keys of the sets the process holds: its own SetLru, mirrored (see the module doc)
        self.sets = SetLru(sets)
        asyncio.get_running_loop().add_reader(self.conn.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            self._gone()
            return
        self.inbox.put_nowait(message)

    def _gone(self) -> None:
        if not self.alive:
            return
        self.alive = False
        asyncio.get_running_loop().remove_reader(self.conn.fileno())
        self.inbox.put_nowait(("died", None))
        self._on_exit(self)

    def kill(self) -> None:
        """Stop the process now (SIGKILL); the pipe closing reports it like any death."""
        self.killed = True
        with contextlib.suppress(ProcessLookupError, OSError):
            self.proc.kill()

    def reap(self) -> None:
        """Release the pipe and the process entry of a dead worker (blocking: a thread)."""
        with self._reap_lock:  # the death handler and close() may both get here
            if self._reaped:
                return
            self._reaped = True
        self.proc.join(timeout=10)
        self.conn.close()
        with contextlib.suppress(ValueError):
            self.proc.close()


class CpuPool:
    """``size`` worker processes with the models loaded, lent to one request at a time; each
    gives the ``encoder`` cores / ``size`` threads and keeps its last ``sets`` centroid sets
    (0: the set is pickled and sent with every image).

    ``on_send(set_sent, nbytes)`` is told of every image sent to a worker: whether its centroid
    set went with it, and the bytes written to the worker's pipe.
    """

    def __init__(
        self,
        size: int,
        budget_seconds: float | None = None,
        encoder: str = encoders.DEFAULT_ENCODER,
        sets: int = WORKER_SETS,
        on_send: Callable[[bool, int], None] | None = None,
        detector: str = detectors.DEFAULT_DETECTOR,
    ) -> None:
        self.size = size
        self.budget_seconds = budget_seconds
        self.encoder = encoder
        self.detector = detector  # the one each worker loads at start; others load on first use
        self.sets = sets
        self.on_send = on_send
        self.replaced = 0  # workers that died or were killed, and were replaced
        # (key, pickle) of the sets in use, by object: each set is pickled and hashed once
        self._pickled = SetLru(sets)
        # not fork: the service process has threads. A fork server, started clean, loads dlib's
        # detector and landmarks once; each worker is forked from it with them loaded, so a
        # killed worker is replaced in a fraction of a second
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(PRELOAD)
        self._idle: asyncio.Queue[Worker] | None = None
        self._workers: set[Worker] = set()
        self._closing = False
        self._reapers: set[asyncio.Task] = set()

    def status(self) -> dict[str, Any]:
        """What ``/health`` reports of the pool: ``ready`` (a worker can take an image),
        ``size``, ``ready_count`` (workers with their models loaded) and ``replaced``."""
        return {
            "ready": self.ready,
            "size": self.size,
            "ready_count": self.ready_count,
            "replaced": self.replaced,
        }

    @property
    def ready(self) -> bool:
        """Whether at least one worker has its models loaded and can take an image."""
        return self.ready_count > 0

    @property
    def ready_count(self) -> int:
        """Workers alive with their models loaded (idle or busy)."""
        return len(self.pids)

    @property
    def pids(self) -> set[int]:
        """Process ids of the workers ready to take images."""
        return {w.pid for w in self._workers if w.alive and w.ready and not w.killed}

    async def start(self) -> None:
        """Start every worker and wait until each has loaded the models."""
        self._idle = asyncio.Queue()
        starting = [self._spawn() for _ in range(self.size)]
        await asyncio.gather(*(self._wait_ready(w) for w in starting))
        log.info("%d detection worker(s) ready (models loaded)", self.size)

    async def close(self) -> None:
        self._closing = True
        for w in list(self._workers):
            if w.alive:
                asyncio.get_running_loop().remove_reader(w.conn.fileno())
                w.alive = False
                w.kill()
            await asyncio.to_thread(w.reap)
        self._workers.clear()

    def _spawn(self) -> Worker:
        # processes x encoder threads = the cores
        threads = encoders.threads_per_process(self.size)
        worker = Worker(self._ctx, self._on_exit, self.encoder, threads, self.sets, self.detector)
        self._workers.add(worker)
        return worker

    async def _wait_ready(self, worker: Worker) -> None:
        try:
            kind, payload = await asyncio.wait_for(worker.inbox.get(), START_TIMEOUT)
        except TimeoutError:
            kind, payload = "timeout", None
        if kind != "ready":
            worker.kill()
            why = f": {payload}" if kind == "failed" else ""
            raise WorkerFailed(f"a detection worker did not start{why}")
        worker.ready = True
        self._idle.put_nowait(worker)

    def _on_exit(self, worker: Worker) -> None:
        """A worker's pipe closed: it died or was killed. Replace it unless shutting down."""
        self._workers.discard(worker)
        loop = asyncio.get_running_loop()
        task = loop.create_task(asyncio.to_thread(worker.reap))
        self._reapers.add(task)
        task.add_done_callback(self._reapers.discard)
        if self._closing:
            return
        if not worker.ready:  # it died loading the models: _wait_ready reports it, no retry loop
            return
        if not worker.busy:
            log.warning("detection worker %s died while idle; replacing it", worker.pid)
        worker.busy = False
        self.replaced += 1
        task = loop.create_task(self._replace())
        self._reapers.add(task)
        task.add_done_callback(self._reapers.discard)

    async def _replace(self) -> None:
        try:
            await self._wait_ready(self._spawn())
        except WorkerFailed:
            log.error("a replacement detection worker did not start")

    async def _lend(self, disconnected: Callable[[], Awaitable[bool]] | None) -> Worker:
        """An idle worker; waiting for one ends when the client goes away."""
        if self._idle is None:
            raise WorkerFailed("the detection workers are not started")
        while True:
            get = asyncio.ensure_future(self._idle.get())
            while not get.done():
                await asyncio.wait({get}, timeout=POLL_SECONDS)
                if not get.done() and disconnected is not None and await disconnected():
                    if get.done():  # a worker arrived meanwhile: hand it to the next request
                        self._idle.put_nowait(get.result())
                    get.cancel()
                    raise ClientGone("the client went away while its image waited for a worker")
            worker = get.result()
            if worker.alive:  # skip workers that died while they waited in the queue
                return worker

    async def predict(
        self,
        data: bytes | JsonImage,
        cs: CentroidSet,
        disconnected: Callable[[], Awaitable[bool]] | None = None,
        **limits: int,
    ) -> dict[str, Any]:
        """Classify ``data`` in a worker (see :func:`anfe.centroids.predict.predict_image`); a
        :class:`JsonImage` is parsed there (see :func:`anfe.app.jsonbody.image_from_json`).

        :raises ImageOverBudget: the worker overran the time budget (it was replaced)
        :raises WorkerFailed: the worker died while working on this image (it was replaced)
        :raises ClientGone: ``disconnected()`` turned true (the worker was replaced)
        """
        worker = await self._lend(disconnected)
        worker.busy = True
        keep = False  # whether the worker finished the image and can take the next one
        try:
            loop = asyncio.get_running_loop()
            key, pickled = self._pickle(cs)
            if worker.sets.get(key) is None:
                worker.sets.put(key, True)
            else:
                pickled = None  # the worker holds it
            task = (data, key, pickled, {**limits, "budget_seconds": self.budget_seconds})
            nbytes = await loop.run_in_executor(None, _send, worker.conn, task)
            if self.on_send is not None:
                self.on_send(pickled is not None, nbytes)
            result = await self._await_result(worker, disconnected)
            keep = True
            return result
        except AnfeError as exc:
            keep = getattr(exc, "from_worker", False)
            raise
        finally:
            if keep and worker.alive:
                worker.busy = False
                self._idle.put_nowait(worker)
            elif worker.alive:
                worker.kill()  # abandoned, overrun or cancelled: the pipe closing replaces it

    def _pickle(self, cs: CentroidSet) -> tuple[SetKey, bytes]:
        """``cs`` pickled, and its key; computed once per set object while it is in use."""
        memo = self._pickled.get(id(cs))
        if memo is not None and memo[0] is cs:
            return memo[1], memo[2]
        pickled = pickle.dumps(cs, protocol=pickle.HIGHEST_PROTOCOL)
        # with sets=0 nothing is kept, so nothing is looked up by the hash: the set is only sent
        key = (cs.id, hashlib.sha256(pickled).hexdigest() if self.sets else "")
        self._pickled.put(id(cs), (cs, key, pickled))  # holding cs keeps its id() unique
        return key, pickled

    async def _await_result(
        self, worker: Worker, disconnected: Callable[[], Awaitable[bool]] | None
    ) -> dict[str, Any]:
        started = time.monotonic()
        budget = self.budget_seconds
        deadline = None if budget is None else started + budget + GRACE_SECONDS
        get = asyncio.ensure_future(worker.inbox.get())
        try:
            while True:
                wait = (
                    POLL_SECONDS
                    if deadline is None
                    else min(POLL_SECONDS, deadline - time.monotonic())
                )
                done, _ = await asyncio.wait({get}, timeout=max(0.0, wait))
                if done:
                    kind, payload = get.result()
                    if kind == "detected":
                        if deadline is not None:
                            deadline = time.monotonic() + FACE_SECONDS * payload + GRACE_SECONDS
                        get = asyncio.ensure_future(worker.inbox.get())
                        continue
                    return _outcome(kind, payload, worker)
                if deadline is not None and time.monotonic() >= deadline:
                    log.warning(
                        "detection worker %s overran the %g s budget; replacing it",
                        worker.pid, budget,
                    )  # fmt: skip
                    raise ImageOverBudget(
                        f"the image took more than its {budget:g} s processing budget"
                    )
                if disconnected is not None and await disconnected():
                    raise ClientGone("the client went away; its detection worker was stopped")
        finally:
            get.cancel()


def _send(conn: Connection, task: tuple) -> int:
    """Write ``task`` to the worker's pipe as ``conn.send`` would; return the bytes written."""
    buf = ForkingPickler.dumps(task)
    try:
        conn.send_bytes(buf)
    except (BrokenPipeError, OSError):
        pass  # the worker died: its reader reports it
    return len(buf)


def _outcome(kind: str, payload: Any, worker: Worker) -> dict[str, Any]:
    if kind == "ok":
        return payload
    if kind == "error":
        payload.from_worker = True  # the worker finished cleanly: it can take the next image
        raise payload
    if kind == "died":
        log.error("detection worker %s died while classifying an image; replacing it", worker.pid)
        raise WorkerFailed(
            "the image crashed a detection worker; the worker was replaced, try again"
        )
    raise ValueError(f"detection worker {worker.pid} failed: {payload}")
