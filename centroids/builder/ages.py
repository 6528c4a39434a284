"""Add an age model and a child policy to a stored centroid set (``anfe centroids fit-age``).

The faces of a labelled folder with an ``age`` column (all ages) are embedded as the set's own
faces were (cached, resumable: :func:`anfe.centroids.builder.extract.embed_paths`), optionally keeping out the
held-out side of the benchmark's split (:func:`anfe.centroids.builder.datasets.split`, same fraction and seed,
so ``anfe bench --ages`` scores faces the fit never saw). The set is stored again with its ``age``
and ``children`` fields; every other field is kept as it was.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from anfe.centroids.builder import datasets
from anfe.centroids.builder.extract import embed_paths
from anfe.centroids.errors import DatasetError
from anfe.centroids.model.centroid_set import CentroidSet
from anfe.centroids.model.children import DEFAULT_EDGES, DEFAULT_METHOD, DEFAULT_ROUTING
from anfe.centroids.model.fit_children import fit_age_and_children
from anfe.centroids.predict import embedding_settings
from anfe.centroids.storage.store import Store
from anfe.centroids.vision.settings import EmbeddingSettings

GROUP_COLUMN = "race"  # the labels.csv column whose groups the thresholds must hold in


def set_settings(cs: CentroidSet) -> EmbeddingSettings:
    """How the set's faces were embedded (detected, or whole crops)."""
    return replace(embedding_settings(cs), cropped=bool(cs.embedding.get("cropped", False)))


def aged_faces(
    items: list[datasets.Item],
    settings: EmbeddingSettings,
    store: Store | None,
    *,
    jobs: int | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings, ages, genders) of the items with an age that hold exactly one face."""
    x, ages, genders, _ = grouped_aged_faces(items, settings, store, jobs=jobs, progress=progress)
    return x, ages, genders


def grouped_aged_faces(
    items: list[datasets.Item],
    settings: EmbeddingSettings,
    store: Store | None,
    *,
    group_by: str = GROUP_COLUMN,
    jobs: int | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`aged_faces` and each face's ``group_by`` column of labels.csv (None when the
    column is missing or empty for any of them)."""
    aged = [it for it in items if it.extra.get("age", "").strip().isdigit()]
    if not aged:
        raise DatasetError("no image has an age (labels.csv needs an 'age' column)")
    embedded = embed_paths(
        [it.path for it in aged],
        settings,
        store,
        labels=[it.gender for it in aged],
        jobs=jobs,
        progress=progress,
        desc="embedding (ages)",
    )
    keep = [i for i, e in enumerate(embedded) if e.usable]
    groups = [aged[i].extra.get(group_by, "").strip() for i in keep]
    return (
        np.stack([embedded[i].vector for i in keep]),
        np.array([int(aged[i].extra["age"]) for i in keep]),
        np.array([aged[i].gender for i in keep]),
        np.array(groups) if groups and all(groups) else None,
    )


def fit_onto(
    store: Store,
    cid: str,
    dataset: Path,
    *,
    hold_out: float | None = 0.2,
    seed: int = 0,
    method: str = DEFAULT_METHOD,
    edges: tuple[float, ...] = DEFAULT_EDGES,
    routing: str = DEFAULT_ROUTING,
    jobs: int | None = None,
    progress: bool = True,
) -> CentroidSet:
    """Fit the age model and child policy of set ``cid`` on ``dataset`` and store the set again.

    :param routing: ``under13``, ``router`` or ``age`` (:func:`centroids.fit_children.fit_age_and_children`)
    :param hold_out: leave out this fraction (the benchmark's split with ``seed``); None: use all
    :raises CentroidsNotFound: no set ``cid``; :raises DatasetError: no aged faces
    """
    cs = CentroidSet.from_doc(store.get_centroids(cid))
    items = datasets.read_dataset(dataset)
    if hold_out:
        items, _, _ = datasets.split(items, hold_out, seed)
    x, ages, genders, groups = grouped_aged_faces(
        items, set_settings(cs), store, jobs=jobs, progress=progress
    )
    source = {
        "dataset": Path(dataset).name,  # the folder's name: a path would be this machine's
        "seed": seed,
        "hold_out": hold_out,
        "faces": len(x),
        "faces_under_18": int(np.sum(ages < 18)),
        "groups": None if groups is None else f"{GROUP_COLUMN}: {len(set(groups))}",
    }
    fitted = fit_age_and_children(
        cs, x, ages, genders, method=method, edges=edges, seed=seed, source=source,
        routing=routing, groups=groups,
    )  # fmt: skip
    doc = store.get_centroids(cid)  # every other field exactly as stored
    new = fitted.to_doc()
    doc["age"], doc["children"] = new["age"], new["children"]
    store.put_centroids(doc)
    return fitted
