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


@pytest.fixture(scope="session")
def small_centroids_doc(tmp_path_factory) -> dict:
    """A centroid document g_60 built with `build` from 60 UTKFace adults per gender."""
    from centroids.build import build
    from centroids.store import Store

    uri = str(tmp_path_factory.mktemp("centroids-db") / "db")
    with Store(uri) as s:
        build(UTKFACE, [60], s, seed=1, progress=False, min_age=18, jobs=2, log=lambda *_: None)
        return s.get_centroids("g_60")
