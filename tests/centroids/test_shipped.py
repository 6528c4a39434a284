"""The shipped centroid sets: well-formed, built as documented, and right on real LFW photos."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from anfe.centroids.model.centroid_set import CentroidSet
from anfe.centroids.storage import shipped
from anfe.centroids.storage.store import Store


def test_shipped_sets_are_complete_documents():
    docs = shipped.shipped_documents()
    assert [d["_id"] for d in docs] == ["g_1000", "g_2000", "g_5000", "g_5000-mahalanobis"]
    for doc in docs:
        n = doc["per_gender"]
        assert doc["counts"] == {"female": n, "male": n}
        assert doc["source"]["min_age"] == 18 and doc["source"]["seed"] == 0
        assert doc["source"]["dataset"].endswith("utkface")
        cs = CentroidSet.from_doc(doc)
        assert np.linalg.norm(cs.female - cs.male) > 0.05
        assert cs.calibration.a > 0 and cs.calibration.held_out == 2 * n
        # anfe centroids fit-age: the default on all of UTKFace (issue 22), the others on its
        # train side
        default = doc["_id"] == shipped.DEFAULT_CENTROIDS
        assert cs.age is not None and cs.age.source["hold_out"] == (None if default else 0.2)
        assert cs.age.to_doc()["method"] == ("bins" if default else "ridge")
        assert (cs.children.router.mixed_from is not None) == default  # by p(under 13)
        assert cs.children is not None and cs.children.method == "child-set"
        assert cs.children.router is not None  # bands picked by the router, not the age estimate


def test_empty_database_is_seeded_once(db_uri):
    with Store(db_uri) as s:
        assert shipped.seed(s) == ["g_1000", "g_2000", "g_5000", "g_5000-mahalanobis"]
        assert shipped.seed(s) == []
        assert shipped.load_centroid_set(s, None).id == shipped.DEFAULT_CENTROIDS


def test_predict_with_no_training_run_uses_shipped_centroids(tmp_path, lfw_female, lfw_male):
    db = str(tmp_path / "fresh-db")
    for photo, gender in ((lfw_female, "female"), (lfw_male, "male")):
        done = subprocess.run(
            [sys.executable, "-m", "anfe.cli", "predict", str(photo), "--json", "--db", db],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["centroids"] == shipped.DEFAULT_CENTROIDS == "g_5000-mahalanobis"
        [face] = result["faces"]
        assert face["gender"] == gender
        assert face["age"]["low"] <= face["age"]["value"] <= face["age"]["high"]
        assert face["detection"] == "first_pass"


def test_default_set_is_the_mahalanobis_mode_of_the_shipped_g_5000_sample():
    docs = {d["_id"]: d for d in shipped.shipped_documents()}
    paper, default = docs["g_5000"], docs[shipped.DEFAULT_CENTROIDS]
    assert paper.get("mode", "centroid") == "centroid"
    assert default["mode"] == "mahalanobis"
    assert default["source"]["sample_sha256"] == paper["source"]["sample_sha256"]
    assert default["embedding"] == paper["embedding"]
    cs = CentroidSet.from_doc(default)
    assert cs.whitening is not None and cs.whitening.shape == (128, 128)
    np.testing.assert_allclose(cs.female, CentroidSet.from_doc(paper).female, atol=1e-9)
    assert cs.calibration.ece <= 0.02
