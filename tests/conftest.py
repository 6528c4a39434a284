"""Shared fixtures: real photos from ../shared/data, a fresh embedded database, small centroids.

Tests that need the real photos say so by asking for ``real_data`` (directly, through a module's
``pytestmark``, or through a fixture built on it such as ``lfw_rows`` or ``training_db``). Without
the data folder those tests fail with one clear message (never a silent skip); the others run.
Plain helpers and constants are in ``tests/helpers.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import LFW, TRAIN_PER_GENDER, UTKFACE, read_labels, require_data


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real photos (``lfw/``, ``utkface/``); fails the test when it is missing."""
    require_data()
    return LFW.parent


@pytest.fixture(scope="session")
def lfw_rows(real_data) -> list[dict[str, str]]:
    """LFW labels: path (relative to lfw/), gender, person."""
    return read_labels(LFW)


@pytest.fixture(scope="session")
def utk_rows(real_data) -> list[dict[str, str]]:
    """UTKFace labels: path (relative to utkface/), gender, age, race."""
    return read_labels(UTKFACE)


@pytest.fixture(scope="session")
def lfw_female(real_data) -> Path:
    """A single-face LFW photo of a woman."""
    return LFW / "actresses/AJ_Cook/AJ_Cook_0001.jpg"


@pytest.fixture(scope="session")
def lfw_male(real_data) -> Path:
    """A single-face LFW photo of a man."""
    return LFW / "actors/AJ_Lamas/AJ_Lamas_0001.jpg"


@pytest.fixture
def db_uri(tmp_path: Path) -> str:
    """A fresh, empty embedded (montydb sqlite) database."""
    return str(tmp_path / "db")


@pytest.fixture
def store(db_uri):
    from anfe.centroids.storage.store import Store

    with Store(db_uri) as s:
        yield s


@pytest.fixture(scope="session")
def training_db(tmp_path_factory, real_data) -> str:
    """A database holding g_60, built with `build` from 60 UTKFace adults per gender (seed 1)."""
    from anfe.centroids.builder.sets import BuildSpec, build
    from anfe.centroids.storage.store import Store

    uri = str(tmp_path_factory.mktemp("centroids-db") / "db")
    with Store(uri) as s:
        spec = BuildSpec(UTKFACE, [TRAIN_PER_GENDER], seed=1, min_age=18)
        build(spec, s, progress=False, jobs=2, log=lambda *_: None)
    return uri


@pytest.fixture(scope="session")
def small_centroids_doc(training_db) -> dict:
    """The centroid document g_60 (60 UTKFace adults per gender)."""
    from anfe.centroids.storage.store import Store

    with Store(training_db) as s:
        return s.get_centroids(f"g_{TRAIN_PER_GENDER}")


@pytest.fixture(scope="session")
def training_embeddings(training_db) -> dict:
    """The embeddings g_60 was built from, by gender: {"female": (60, 128), "male": (60, 128)}."""
    import numpy as np

    from anfe.centroids.builder.datasets import adults, read_dataset
    from anfe.centroids.builder.sets import sample
    from anfe.centroids.storage.store import Store
    from anfe.centroids.vision.settings import EmbeddingSettings

    with Store(training_db) as s:
        drawn = sample(
            adults(read_dataset(UTKFACE)), TRAIN_PER_GENDER, EmbeddingSettings(), s, seed=1,
            progress=False,
        )  # fmt: skip
    return {g: np.stack(drawn[g].vectors) for g in ("female", "male")}


@pytest.fixture(scope="session")
def default_set():
    """The shipped default centroid set (``g_5000-mahalanobis``), with its age model and child
    policy, as ``anfe bench --ages`` scores it."""
    from anfe.centroids.model.centroid_set import CentroidSet
    from anfe.centroids.storage import shipped

    docs = {d["_id"]: d for d in shipped.shipped_documents()}
    return CentroidSet.from_doc(docs[shipped.DEFAULT_CENTROIDS])
