"""Building centroid sets from a small real labelled folder: sizes, subsets, cache and resume."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from anfe.centroids import vectors
from anfe.centroids.builder import sets as build_mod
from anfe.centroids.builder.datasets import read_dataset
from anfe.centroids.builder.sets import BuildSpec, build, parse_sizes, sample
from anfe.centroids.errors import InvalidParameter
from anfe.centroids.imaging import formats
from anfe.centroids.storage.store import Store
from anfe.centroids.vision import encoders
from anfe.centroids.vision.settings import EmbeddingSettings
from tests.helpers import LFW, UTKFACE

PER_GENDER = 12


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, utk_rows, lfw_rows):
    """female/ and male/ with 12 UTKFace adults each, a face-less image and a two-face image."""
    root = tmp_path_factory.mktemp("dataset")
    for gender in ("female", "male"):
        (root / gender).mkdir()
        rows = [r for r in utk_rows if r["gender"] == gender and int(r["age"]) >= 25]
        for row in rows[:PER_GENDER]:
            shutil.copy(UTKFACE / row["path"], root / gender / row["path"].split("/")[-1])
    a = Image.open(LFW / lfw_rows[0]["path"]).convert("RGB")
    b = Image.open(LFW / lfw_rows[1]["path"]).convert("RGB")
    pair = Image.new("RGB", (500, 250))
    pair.paste(a, (0, 0))
    pair.paste(b, (250, 0))
    pair.save(root / "male" / "two_faces.jpg", quality=95)
    a.crop((0, 0, 60, 60)).resize((200, 200)).save(root / "female" / "no_face.jpg", quality=95)
    return root


class EncodeCounter:
    """Counts the faces given to the encoder; interrupts the call after ``fail_after`` faces."""

    def __init__(self, monkeypatch, fail_after: int | None = None) -> None:
        self.calls = 0
        self.fail_after = fail_after
        self.real = encoders.encode_chips
        monkeypatch.setattr(encoders, "encode_chips", self)

    def __call__(self, chips, *args, **kwargs):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += len(chips)
        return self.real(chips, *args, **kwargs)


def _run(dataset, uri, sizes, **kw):
    with Store(uri) as s:
        spec = BuildSpec(dataset, sizes, seed=3, **kw)
        report = build(spec, s, jobs=1, progress=False, log=lambda *_: None)
        docs = {d["_id"]: d for d in s.list_centroids(with_vectors=True)}
    return report, docs


def test_rerun_recomputes_no_embedding(dataset, tmp_path, monkeypatch):
    uri = str(tmp_path / "db")
    counter = EncodeCounter(monkeypatch)
    first, docs = _run(dataset, uri, [5, 10])
    assert counter.calls >= 20 and first.built == ["g_5", "g_10"]
    counter.calls = 0
    second, again = _run(dataset, uri, [5, 10])
    assert counter.calls == 0 and second.computed == 0
    assert second.unchanged == ["g_5", "g_10"]
    assert again == docs  # not even rewritten


def test_interrupted_build_resumes_without_recomputing(dataset, tmp_path, monkeypatch):
    uri = str(tmp_path / "db")
    counter = EncodeCounter(monkeypatch, fail_after=7)
    with pytest.raises(KeyboardInterrupt):
        _run(dataset, uri, [10])
    done = counter.calls  # the faces of the batches encoded before the interrupt
    assert 7 <= done < 20
    with Store(uri) as s:
        saved = s.cached_embeddings(EmbeddingSettings().key()).values()
        assert sum(d["vector"] is not None for d in saved) == done  # finished work was saved
        assert s.list_centroids() == []  # and no centroid set was half-written
    counter.fail_after = None
    counter.calls = 0
    _, resumed = _run(dataset, uri, [10])
    resumed_calls = counter.calls
    counter.calls = 0
    _, clean = _run(dataset, str(tmp_path / "clean"), [10])
    assert resumed_calls == counter.calls - done
    assert resumed["g_10"]["vectors"] == clean["g_10"]["vectors"]
    with Store(uri) as s:
        ids = [d["_id"] for d in s.embeddings.find({}, {"_id": 1})]
    assert len(ids) == len(set(ids))


def test_smaller_size_draws_a_subset_of_the_larger(dataset):
    items = read_dataset(dataset)
    small = sample(items, 5, EmbeddingSettings(), None, seed=3, jobs=1, progress=False)
    large = sample(items, 10, EmbeddingSettings(), None, seed=3, jobs=1, progress=False)
    for g in ("female", "male"):
        assert small[g].hashes == large[g].hashes[:5]
        assert len(set(large[g].hashes)) == 10
    other_seed = sample(items, 10, EmbeddingSettings(), None, seed=4, jobs=1, progress=False)
    assert other_seed["female"].hashes != large["female"].hashes


def test_size_that_cannot_be_filled_is_reported_and_skipped(dataset, tmp_path):
    report, docs = _run(dataset, str(tmp_path / "db"), [10, 1000])
    assert report.built == ["g_10"]
    assert 1000 in report.skipped and "needs 1000" in report.skipped[1000]
    assert set(docs) == {"g_10"}


def test_faceless_and_two_face_images_are_counted_and_left_out(dataset, tmp_path):
    report, docs = _run(dataset, str(tmp_path / "db"), [PER_GENDER - 1, PER_GENDER + 1])
    tally = report.tally  # the larger size cannot be filled, so every image was examined
    assert tally["female"].examined == tally["male"].examined == PER_GENDER + 1
    assert tally["female"].no_face >= 1
    assert tally["male"].several_faces == 1
    for t in tally.values():
        assert t.usable + t.no_face + t.several_faces + t.unreadable == t.examined
    assert PER_GENDER + 1 in report.skipped
    n = PER_GENDER - 1
    assert docs[f"g_{n}"]["counts"] == {"female": n, "male": n}
    crafted = {
        formats.content_hash((dataset / p).read_bytes())
        for p in ("male/two_faces.jpg", "female/no_face.jpg")
    }
    drawn = sample(
        read_dataset(dataset), n, EmbeddingSettings(), None, seed=3, jobs=1, progress=False
    )
    assert not crafted & set(drawn["female"].hashes + drawn["male"].hashes)


def test_cropped_mode_keeps_every_readable_image(dataset, tmp_path):
    report, docs = _run(
        dataset, str(tmp_path / "db"), [PER_GENDER + 1], settings=EmbeddingSettings(cropped=True)
    )
    assert report.tally["female"].no_face == 0
    assert report.tally["male"].several_faces == 0
    assert docs[f"g_{PER_GENDER + 1}"]["embedding"]["cropped"] is True


def test_parallel_workers_give_the_same_centroids(dataset, tmp_path):
    with Store(str(tmp_path / "a")) as s:
        build(BuildSpec(dataset, [10], seed=3), s, jobs=2, progress=False, log=lambda *_: None)
        parallel = s.get_centroids("g_10")["vectors"]
    _, docs = _run(dataset, str(tmp_path / "b"), [10])
    for g in ("female", "male"):
        got, want = vectors.unpack(parallel[g]), vectors.unpack(docs["g_10"]["vectors"][g])
        assert np.allclose(got, want, atol=1e-9)


def test_parse_sizes():
    assert parse_sizes("2000,1000, 5k,1000") == [1000, 2000, 5000]
    for bad in ("", "ten", "1"):
        with pytest.raises(InvalidParameter):
            parse_sizes(bad)
    assert build_mod.centroid_id(1000) == "g_1000"


def test_modes_are_stored_beside_the_paper_set(dataset, tmp_path):
    report, docs = _run(
        dataset, str(tmp_path / "db"), [8], modes=["centroid", "prototypes"], params={"k": 2}
    )
    assert report.built == ["g_8", "g_8-prototypes"]
    assert docs["g_8"]["mode"] == "centroid" and "prototypes" not in docs["g_8"]
    assert docs["g_8-prototypes"]["mode"] == "prototypes"
    assert docs["g_8-prototypes"]["params"]["k"] == 2
    assert docs["g_8-prototypes"]["vectors"] == docs["g_8"]["vectors"]  # same images, same means
    again, _ = _run(
        dataset, str(tmp_path / "db"), [8], modes=["centroid", "prototypes"], params={"k": 2}
    )
    assert again.unchanged == ["g_8", "g_8-prototypes"]
    other_k, _ = _run(dataset, str(tmp_path / "db"), [8], modes=["prototypes"], params={"k": 3})
    assert other_k.built == ["g_8-prototypes"]


def test_balance_by_takes_groups_in_turns(utk_rows):
    from anfe.centroids.builder.sets import draw_order

    items = [it for it in read_dataset(UTKFACE) if int(it.extra["age"]) >= 18]
    order = draw_order(items, 0, "male", balance_by="race")
    groups = sorted({it.extra["race"] for it in items if it.gender == "male"})
    first = [it.extra["race"] for it in order[: 10 * len(groups)]]
    assert all(first.count(g) == 10 for g in groups)
    plain = [it.extra["race"] for it in draw_order(items, 0, "male")[: 10 * len(groups)]]
    assert plain.count("white") > 10  # without balancing the largest group dominates
    with pytest.raises(InvalidParameter, match="no image has"):
        draw_order(items, 0, "male", balance_by="shoe_size")
