"""The shipped centroid sets: well-formed, built as documented, and right on real LFW photos."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from centroids import shipped
from centroids.model import CentroidSet
from centroids.store import Store


def test_shipped_sets_are_complete_documents():
    docs = shipped.shipped_documents()
    assert [d["_id"] for d in docs] == ["g_1000", "g_2000", "g_5000"]
    for doc in docs:
        n = doc["per_gender"]
        assert doc["counts"] == {"female": n, "male": n}
        assert doc["source"]["min_age"] == 18 and doc["source"]["seed"] == 0
        assert doc["source"]["dataset"].endswith("utkface")
        cs = CentroidSet.from_doc(doc)
        assert np.linalg.norm(cs.female - cs.male) > 0.05
        assert cs.calibration.a > 0 and cs.calibration.held_out == 2 * n


def test_empty_database_is_seeded_once(db_uri):
    with Store(db_uri) as s:
        assert shipped.seed(s) == ["g_1000", "g_2000", "g_5000"]
        assert shipped.seed(s) == []
        assert shipped.load_centroid_set(s, None).id == shipped.DEFAULT_CENTROIDS


def test_predict_with_no_training_run_uses_shipped_centroids(tmp_path, lfw_female, lfw_male):
    db = str(tmp_path / "fresh-db")
    for photo, gender in ((lfw_female, "female"), (lfw_male, "male")):
        done = subprocess.run(
            [sys.executable, "-m", "centroids.cli", "predict", str(photo), "--json", "--db", db],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["centroids"] == "g_5000"
        [face] = result["faces"]
        assert face["gender"] == gender
