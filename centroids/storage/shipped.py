"""The centroid sets shipped with the package (``centroids/data/g_*.json``) and database seeding.

They were built by the project's own ``anfe build`` from real photos (see ``data/README.md``
for the command), so a fresh installation classifies faces with no training run.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from importlib import resources
from typing import Any

from anfe.centroids.errors import CentroidsNotFound, NoCentroids
from anfe.centroids.model.centroid_set import CentroidSet
from anfe.centroids.model.children import abstain_policy
from anfe.centroids.storage.store import Store

# The Mahalanobis mode of g_5000: best of the modes in docs/results.md; the paper's g_N stay
# shipped for reproduction.
DEFAULT_CENTROIDS = "g_5000-mahalanobis"


def shipped_documents() -> list[dict[str, Any]]:
    """Every shipped centroid document, smallest size first."""
    folder = resources.files("anfe.centroids") / "data"
    docs = [
        json.loads(entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.startswith("g_") and entry.name.endswith(".json")
    ]
    return sorted(docs, key=lambda d: (d.get("per_gender", 0), d["_id"]))


def shipped_set(cid: str | None = None) -> CentroidSet:
    """The shipped set ``cid`` (default: :data:`DEFAULT_CENTROIDS`), read from the package alone.

    :raises CentroidsNotFound: no shipped set has that id
    """
    docs = {d["_id"]: d for d in shipped_documents()}
    cid = cid or default_id(list(docs))
    if cid not in docs:
        raise CentroidsNotFound(
            f"no shipped centroid set with id {cid!r}; shipped: {', '.join(docs)}"
        )
    return CentroidSet.from_doc(docs[cid])


@cache
def _default_with_age() -> CentroidSet:
    return shipped_set(DEFAULT_CENTROIDS)


def with_age(cs: CentroidSet) -> CentroidSet:
    """``cs``, or, when it carries no age model, ``cs`` answering ages with the default's.

    The age model (and the children's router) read the embedding alone, not the centroids, so a
    set built by ``anfe build`` without ``anfe centroids fit-age`` borrows the shipped default's
    (loaded once, from the package). A child policy is not borrowed (it calibrates a set's own
    margins): such a set marks ``uncertain`` every face the default's router sends to a child
    band (:func:`anfe.centroids.model.children.abstain_policy`); faces routed adult keep its own answer.
    Sets embedded with other settings than the default (``embedding``) borrow all the same: the
    embedding is the same 128-d dlib vector.
    """
    if cs.age is not None:
        return cs
    default = _default_with_age()
    children = cs.children
    if children is None and default.children is not None and default.children.router is not None:
        children = abstain_policy(default.children.router)
    return replace(cs, age=default.age, children=children, age_from=default.id)


def seed(store: Store) -> list[str]:
    """Insert the shipped sets that the database lacks; return the ids inserted.

    A stored copy seeded from an older release (same id, same ``created_at``, no age model, a
    child policy without the router, a router without the young gate or without routing by
    p(under 13)) is replaced by the shipped document.
    """
    present = {d["_id"]: d for d in store.list_centroids()}
    added = []
    for doc in shipped_documents():
        old = present.get(doc["_id"])
        older_copy = (
            old is not None
            and old.get("created_at") == doc.get("created_at")
            and (
                _lacks(old, doc, "age")
                or _lacks(old.get("children"), doc.get("children"), "router")
                or _lacks(
                    (old.get("children") or {}).get("router"),
                    (doc.get("children") or {}).get("router"),
                    "young_below",
                )
                or _lacks(
                    (old.get("children") or {}).get("router"),
                    (doc.get("children") or {}).get("router"),
                    "mixed_from",
                )
            )
        )
        if old is None or older_copy:
            store.put_centroids(doc)
            added.append(doc["_id"])
    return added


def _lacks(old: dict[str, Any] | None, new: dict[str, Any] | None, key: str) -> bool:
    """``new`` has ``key`` and ``old`` (missing or without it) does not."""
    return bool(new) and key in new and not (old and key in old)


def default_id(ids: list[str]) -> str | None:
    """The set used when none is named: :data:`DEFAULT_CENTROIDS` if stored, else the largest.

    :param ids: the stored set ids, smallest first (as :meth:`Store.list_centroids` orders them)
    """
    if not ids:
        return None
    return DEFAULT_CENTROIDS if DEFAULT_CENTROIDS in ids else ids[-1]


def load_centroid_set(store: Store, cid: str | None) -> CentroidSet:
    """The set ``cid``, or the default one (g_5000-mahalanobis, else the largest stored).

    An empty database is first seeded with the shipped sets. A set without an age model borrows
    the default's (:func:`with_age`).

    :raises CentroidsNotFound: no set with that id
    :raises NoCentroids: the database holds none (and nothing is shipped)
    """
    docs = store.list_centroids()
    if not docs:
        seed(store)
        docs = store.list_centroids()
    if not docs:
        raise NoCentroids("the database holds no centroid set; run `anfe build` first")
    if cid is None:
        cid = default_id([d["_id"] for d in docs])
    return with_age(CentroidSet.from_doc(store.get_centroids(cid)))
