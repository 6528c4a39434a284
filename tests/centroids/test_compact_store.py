"""Vectors stored as float32 BSON vectors: round trips, old documents, migration, same answers."""

from __future__ import annotations

import subprocess

import bson
import numpy as np
import pytest
from bson.binary import Binary, BinaryVectorDtype

from anfe.centroids import vectors
from anfe.centroids.model.centroid_set import MODES, CentroidSet
from anfe.centroids.model.children import abstain_policy
from anfe.centroids.storage import shipped
from anfe.centroids.storage.store import CENTROID_ARRAYS, Store, _get, expand_centroids, is_compact
from tests.helpers import ANFE


def _old_face(i: int, key: str = "k") -> dict:
    """A one-face cache document as earlier versions wrote it (128 doubles in a list)."""
    vector = None if i % 7 == 3 else [float(np.float32(i / 1000 + j / 128)) for j in range(128)]
    return {
        "_id": f"{i:064x}:{key}",
        "settings": key,
        "label": "female" if i % 2 else "male",
        "path": f"/data/{i}.jpg",
        "vector": vector,
        "box": None if vector is None else [1, 2, 3, 4],
        "faces_found": 0 if vector is None else 1,
        "error": None,
    }


def _full_set(training_embeddings) -> CentroidSet:
    """A set with every kind of vector: means, whitening, the shipped age model and router."""
    x = training_embeddings
    cs = CentroidSet.from_embeddings("g_60-mahalanobis", x["female"], x["male"], mode="mahalanobis")
    default = shipped.shipped_set()
    cs.age, cs.children = default.age, abstain_policy(default.children.router)
    return cs


def test_pack_is_pymongos_float32_vector_and_unpack_reads_every_stored_form():
    x = np.linspace(-1, 1, 256).reshape(2, 128)
    packed = vectors.pack(x)
    assert packed.subtype == 9 and packed == Binary.from_vector(
        x.astype(np.float32).ravel(), BinaryVectorDtype.FLOAT32
    )
    for stored in (packed, bytes(packed), x.tolist()):  # MongoDB, montydb, earlier versions
        back = vectors.unpack(stored, columns=128)
        assert back.shape == (2, 128) and np.allclose(back, x, atol=1e-7)
    assert vectors.unpack(x.tolist()).tolist() == x.tolist()  # lists read exactly as before
    with pytest.raises(ValueError):
        vectors.unpack(Binary.from_vector([1, 2], BinaryVectorDtype.INT8))


def test_centroid_documents_round_trip_through_bson_itself(training_embeddings):
    """What a MongoDB server would store: bson's own encoding keeps the vector subtype."""
    cs = _full_set(training_embeddings)
    doc = cs.to_doc()
    back = bson.decode(bson.encode(doc))
    for path in CENTROID_ARRAYS:
        if _get(doc, path) is not None:
            assert isinstance(_get(back, path), Binary) and _get(back, path).subtype == 9
    again = CentroidSet.from_doc(back)
    assert np.array_equal(again.whitening, cs.whitening.astype(np.float32))
    assert np.array_equal(
        again.children.router.weights, cs.children.router.weights.astype(np.float32)
    )
    assert len(bson.encode(doc)) < len(bson.encode(expand_centroids(doc))) / 2


def test_embedding_chunks_round_trip_through_bson_itself(store):
    store.put_embeddings([_old_face(i) for i in range(20)])
    (chunk,) = store.embeddings.find({})
    chunk = {**chunk, "vectors": Binary(chunk["vectors"], 9)}  # montydb forgets the subtype
    back = bson.decode(bson.encode(chunk))
    assert back["vectors"].subtype == 9 and back["hashes"] == chunk["hashes"]
    assert len(bson.encode(chunk)) < 20 * 128 * 4 + 20 * 200


def test_documents_of_earlier_versions_are_read_as_before(store, training_embeddings):
    """Lists of floats, as earlier versions wrote them, straight into the collections."""
    cs = _full_set(training_embeddings)
    old = expand_centroids({**cs.to_doc(), "whitening": cs.whitening.tolist()})
    old["vectors"] = {"female": cs.female.tolist(), "male": cs.male.tolist()}
    store.centroids.insert_one(old)
    store.embeddings.insert_many([_old_face(i) for i in range(10)])
    back = CentroidSet.from_doc(store.get_centroids(cs.id))
    assert np.array_equal(back.female, cs.female) and np.array_equal(back.whitening, cs.whitening)
    faces = store.load_embeddings("k")
    for i in range(10):
        face = faces.face(f"{i:064x}")
        want = _old_face(i)["vector"]
        assert (face["vector"] is None) == (want is None)
        if want is not None:
            assert face["vector"].tolist() == want  # float32 values, kept exactly
    assert store.count_embeddings() == 10


def test_float32_storage_changes_no_answer(store, training_embeddings):
    """Sets built from the float32 cache and stored as float32, against today's float64 lists:
    centroids within 1e-6 per component, and the same answer for every training face."""
    x = training_embeddings
    faces = np.vstack([x["female"], x["male"]]).astype(np.float64)
    for mode in MODES:
        today = CentroidSet.from_embeddings("g_60", x["female"].astype(np.float64),
                                            x["male"].astype(np.float64), mode=mode)  # fmt: skip
        built = CentroidSet.from_embeddings("g_60", x["female"], x["male"], mode=mode)
        store.put_centroids({**built.to_doc(), "created_at": today.created_at})
        stored = CentroidSet.from_doc(store.get_centroids("g_60"))
        for a, b in ((today.female, stored.female), (today.male, stored.male)):
            assert np.abs(a - b).max() <= 1e-6
        _same_answers(today.classify(faces), stored.classify(faces))
    # the shipped default with its age model and router: JSON lists against the seeded copy
    shipped.seed(store)
    seeded = store.get_centroids(shipped.DEFAULT_CENTROIDS)
    assert is_compact(seeded)
    _same_answers(
        shipped.shipped_set().classify(faces), CentroidSet.from_doc(seeded).classify(faces)
    )


def _same_answers(a, b) -> None:
    assert a.gender.tolist() == b.gender.tolist()
    assert a.uncertain.tolist() == b.uncertain.tolist()
    assert a.in_range.tolist() == b.in_range.tolist()
    assert np.abs(a.d_female - b.d_female).max() < 1e-5
    assert np.abs(a.margin - b.margin).max() < 1e-5
    if a.age is not None:
        assert np.abs(a.age.value - b.age.value).max() < 1e-3


def test_embeddings_are_float32_values_already(lfw_female):
    """So storing them as float32 loses nothing."""
    from anfe.centroids.imaging.decoding import load_image
    from anfe.centroids.vision import faces

    image = load_image(lfw_female)
    vector = faces.encode(image, faces.detect(image))
    assert np.array_equal(vector, vector.astype(np.float32))


def test_an_interrupted_migration_loses_nothing_and_a_rerun_finishes_it(
    db_uri, training_embeddings
):
    old_faces = [_old_face(i) for i in range(3000)]
    with Store(db_uri) as s:
        s.embeddings.insert_many(old_faces)
        cs = _full_set(training_embeddings)
        s.centroids.insert_one(expand_centroids(cs.to_doc()))
        before = s.cached_embeddings("k")
        before_set = CentroidSet.from_doc(s.get_centroids(cs.id))
    proc = subprocess.Popen(
        [*ANFE, "centroids", "migrate", "--db", db_uri], stdout=subprocess.PIPE, text=True
    )
    for line in proc.stdout:  # killed once some chunks are written, none of the old deleted
        if line.startswith("cached faces rewritten as chunks"):
            proc.kill()
            break
    proc.wait()
    assert proc.returncode != 0
    with Store(db_uri) as s:
        assert s.embeddings.count_documents({"hashes": {"$exists": True}}) > 0
        assert s.embeddings.count_documents({"hashes": {"$exists": False}}) == len(old_faces)
        _same_cache(s.cached_embeddings("k"), before)
        rest = s.migrate()
        assert rest["centroid_sets"] == 0 and 0 < rest["faces"] < len(old_faces)
        assert s.migrate() == {"centroid_sets": 0, "faces": 0}  # nothing left
        assert s.embeddings.count_documents({"hashes": {"$exists": False}}) == 0
        _same_cache(s.cached_embeddings("k"), before)
        assert s.count_embeddings() == len(old_faces)
        after_set = CentroidSet.from_doc(s.get_centroids(cs.id))
        assert is_compact(s.get_centroids(cs.id))
    assert (
        np.abs(after_set.whitening - before_set.whitening).max()
        < 1e-6 * np.abs(before_set.whitening).max()
    )


def _same_cache(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for sha, w in want.items():
        g = got[sha]
        assert (g["vector"] is None) == (w["vector"] is None)
        if w["vector"] is not None:
            assert np.array_equal(g["vector"], w["vector"])
        assert (g["box"], g["faces_found"], g["error"], g["path"]) == (
            w["box"], w["faces_found"], w["error"], w["path"]
        )  # fmt: skip
