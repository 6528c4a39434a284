"""The stored centroid sets, cached in the process and refreshed when the database changes.

montydb scans a whole collection per query and is not safe under concurrent use, so the service
reads the database only here, from one thread (see ``main.py``), and at most every
``refresh_seconds``: it asks for the ``centroids_version()`` fingerprint (each set's id,
``created_at`` and ``revision``, the content stamp every write gets) and reloads the sets only
when it changed. A new ``g_N`` built while the service runs therefore appears without a restart,
and so does a set stored again with its ``created_at`` kept (``anfe centroids fit-age``, a
re-seeded shipped set); an unreachable database answers 503 until it is back, then the service
recovers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from anfe.centroids.errors import AnfeError, CentroidsNotFound, NoCentroids
from anfe.centroids.model.centroid_set import CentroidSet
from anfe.centroids.storage import shipped
from anfe.centroids.storage.store import Store, db_kind, describe_uri, without_arrays

log = logging.getLogger("anfe.app")


class CentroidCache:
    """Centroid sets by id, with their metadata documents, read from the database at ``uri``."""

    def __init__(
        self,
        uri: str,
        *,
        default: str | None = None,
        refresh_seconds: float = 2.0,
        seed: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.uri = uri
        self.default_id = default
        self.refresh_seconds = refresh_seconds
        self.seed = seed
        self._clock = clock
        self._store: Store | None = None
        self._version: tuple | None = None
        self._sets: dict[str, CentroidSet] = {}
        self._docs: list[dict[str, Any]] = []
        self._error: AnfeError | None = None
        self._checked = float("-inf")
        self._seeded = False

    @property
    def kind(self) -> str:
        return db_kind(self.uri)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- refresh (blocking: call from the database thread) -----------------------------------

    def refresh(self, force: bool = False) -> None:
        """Re-read the sets if ``refresh_seconds`` passed and the stored fingerprint changed.

        :raises DatabaseUnavailable: the database cannot be opened or read (until it recovers)
        """
        if force or self._clock() - self._checked >= self.refresh_seconds:
            try:
                self._reload_if_changed()
                if self._error is not None:
                    log.warning("database %s is back", describe_uri(self.uri))
                self._error = None
            except AnfeError as exc:
                if self._error is None:
                    log.warning("database %s: %s", describe_uri(self.uri), exc.message)
                self._error = exc
                self._version, self._sets, self._docs = None, {}, []
            finally:
                # counted from the end of the look: a failure that took seconds to come is
                # remembered for refresh_seconds, not retried by the next request in line
                self._checked = self._clock()
        if self._error is not None:
            raise self._error

    def _reload_if_changed(self) -> None:
        if self._store is None:
            self._store = Store(self.uri)
        store = self._store
        store.ping()
        if self.seed and not self._seeded and not store.read_only:
            # once per process, at the first contact: never re-create a database that vanished
            if not store.list_centroids():
                added = shipped.seed(store)
                log.warning("seeded the empty database with %s", ", ".join(added) or "nothing")
            self._seeded = True
        version = store.centroids_version()
        if version == self._version:
            return
        docs = store.list_centroids(with_vectors=True)
        sets, metas = {}, []
        for doc in docs:
            try:
                sets[doc["_id"]] = shipped.with_age(CentroidSet.from_doc(doc))
            except (AnfeError, KeyError, TypeError, ValueError) as exc:
                log.warning("skipping centroid set %r that cannot be served: %s", doc["_id"], exc)
                continue
            metas.append(without_arrays(doc))
        self._sets, self._docs, self._version = sets, metas, version
        log.info("centroid sets loaded: %s", ", ".join(sets) or "none")

    # -- reads (after refresh) ------------------------------------------------------------------

    def ids(self) -> list[str]:
        """Ids of the servable sets, smallest first."""
        return [d["_id"] for d in self._docs]

    def default(self) -> str | None:
        """The set used when a request names none: the configured one, else :func:`shipped.default_id`."""
        return self.default_id or shipped.default_id(self.ids())

    def get(self, cid: str | None) -> CentroidSet:
        """The set ``cid`` (or the default).

        :raises NoCentroids: nothing is stored, or the configured default is missing
        :raises CentroidsNotFound: no set ``cid``
        """
        if not self._sets:
            raise NoCentroids(
                f"the database ({describe_uri(self.uri)}) holds no centroid set; "
                "build one with `anfe build` or seed the shipped ones with `anfe centroids seed`"
            )
        if cid is None:
            cid = self.default()
            if cid not in self._sets:
                raise NoCentroids(
                    f"the default centroid set {cid!r} (anfe serve --centroids, or "
                    f"ANFE_CENTROIDS) is not stored; "
                    f"stored: {', '.join(self._sets)}"
                )
        try:
            return self._sets[cid]
        except KeyError:
            raise CentroidsNotFound(
                f"no centroid set with id {cid!r}; stored: {', '.join(self._sets)}"
            ) from None

    def summaries(self) -> list[tuple[str, dict[str, Any]]]:
        """``(id, fields)`` of every servable set, smallest first: its stored fields without the
        id and the arrays (vectors, prototypes, whitening, the age model's weights)."""
        return [(d["_id"], {k: v for k, v in d.items() if k != "_id"}) for d in self._docs]

    def summary(self, cid: str) -> dict[str, Any]:
        """The fields of set ``cid`` as :meth:`summaries` gives them.

        :raises CentroidsNotFound: no set ``cid``
        """
        self.get(cid)
        return next(fields for sid, fields in self.summaries() if sid == cid)

    def vectors(self, cid: str) -> dict[str, list[float]]:
        """The two centroids of set ``cid``, as lists of floats."""
        cs = self.get(cid)
        return {"female": cs.female.tolist(), "male": cs.male.tolist()}

    def status(self) -> tuple[bool, str | None]:
        """Whether the last look at the database succeeded, and why not."""
        return self._error is None, (self._error.message if self._error else None)
