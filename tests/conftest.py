"""Shared fixtures: real photos from ../shared/data, a fresh embedded database, small centroids.

The data folder is required: without it every test fails with one clear message (no silent skip).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ANFE_TEST_DATA", ROOT.parent / "shared" / "data")).resolve()
LFW = DATA / "lfw"
UTKFACE = DATA / "utkface"


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [p for p in (LFW / "labels.csv", UTKFACE / "labels.csv") if not p.is_file()]
    if missing:
        raise pytest.UsageError(
            f"test data not found: {', '.join(map(str, missing))}. The tests need the real photos "
            "of ../shared/data (lfw/ and utkface/) beside the repository, or ANFE_TEST_DATA "
            "pointing at such a folder."
        )


def read_labels(root: Path) -> list[dict[str, str]]:
    with open(root / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="session")
def lfw_rows() -> list[dict[str, str]]:
    """LFW labels: path (relative to lfw/), gender, person."""
    return read_labels(LFW)


@pytest.fixture(scope="session")
def utk_rows() -> list[dict[str, str]]:
    """UTKFace labels: path (relative to utkface/), gender, age, race."""
    return read_labels(UTKFACE)


@pytest.fixture(scope="session")
def lfw_female(lfw_rows) -> Path:
    """A single-face LFW photo of a woman."""
    return LFW / "actresses/AJ_Cook/AJ_Cook_0001.jpg"


@pytest.fixture(scope="session")
def lfw_male(lfw_rows) -> Path:
    """A single-face LFW photo of a man."""
    return LFW / "actors/AJ_Lamas/AJ_Lamas_0001.jpg"


@pytest.fixture
def db_uri(tmp_path: Path) -> str:
    """A fresh, empty embedded (montydb sqlite) database."""
    return str(tmp_path / "db")


@pytest.fixture
def store(db_uri):
    from centroids.store import Store

    with Store(db_uri) as s:
        yield s


TRAIN_PER_GENDER = 60


@pytest.fixture(scope="session")
def training_db(tmp_path_factory) -> str:
    """A database holding g_60, built with `build` from 60 UTKFace adults per gender (seed 1)."""
    from centroids.build import BuildSpec, build
    from centroids.store import Store

    uri = str(tmp_path_factory.mktemp("centroids-db") / "db")
    with Store(uri) as s:
        spec = BuildSpec(UTKFACE, [TRAIN_PER_GENDER], seed=1, min_age=18)
        build(spec, s, progress=False, jobs=2, log=lambda *_: None)
    return uri


@pytest.fixture(scope="session")
def small_centroids_doc(training_db) -> dict:
    """The centroid document g_60 (60 UTKFace adults per gender)."""
    from centroids.store import Store

    with Store(training_db) as s:
        return s.get_centroids(f"g_{TRAIN_PER_GENDER}")


@pytest.fixture(scope="session")
def training_embeddings(training_db) -> dict:
    """The embeddings g_60 was built from, by gender: {"female": (60, 128), "male": (60, 128)}."""
    import numpy as np

    from centroids.build import sample
    from centroids.datasets import adults, read_dataset
    from centroids.faces import EmbeddingSettings
    from centroids.store import Store

    with Store(training_db) as s:
        drawn = sample(
            adults(read_dataset(UTKFACE)), TRAIN_PER_GENDER, EmbeddingSettings(), s, seed=1,
            progress=False,
        )  # fmt: skip
    return {g: np.stack(drawn[g].vectors) for g in ("female", "male")}
