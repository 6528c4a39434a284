"""Splitting a folder that is both train and test set, and the train/test person-overlap check."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from anfe.bench.config import limit_per_gender, person_overlap
from anfe.centroids.builder.datasets import read_dataset, split
from tests.helpers import LFW, UTKFACE, link

pytestmark = pytest.mark.usefixtures("real_data")


@pytest.fixture
def by_person(tmp_path, lfw_rows) -> Path:
    """A labelled folder female/<person>/, male/<person>/ of 40 LFW persons with 2-3 photos."""
    photos = defaultdict(list)
    for r in lfw_rows:
        photos[(r["gender"], r["person"])].append(r["path"])
    chosen = [(k, v) for k, v in sorted(photos.items()) if len(v) >= 2]
    chosen = [kv for kv in chosen if kv[0][0] == "female"][:20] + [
        kv for kv in chosen if kv[0][0] == "male"
    ][:20]
    root = tmp_path / "people"
    for (gender, person), paths in chosen:
        for p in paths:
            link(LFW / p, root / gender / person / Path(p).name)
    return root


def test_split_by_person_keeps_each_person_on_one_side(by_person):
    items = read_dataset(by_person)
    train, test, how = split(items, 0.3, seed=0)
    assert how == "by person"
    assert len(train) + len(test) == len(items)
    assert test and train
    assert not {it.person for it in train} & {it.person for it in test}
    assert person_overlap(train, test)["persons"] == 0


def test_split_is_the_same_for_the_same_seed_and_differs_for_another(by_person):
    items = read_dataset(by_person)
    first = [it.path for it in split(items, 0.3, seed=0)[1]]
    assert first == [it.path for it in split(items, 0.3, seed=0)[1]]
    assert first != [it.path for it in split(items, 0.3, seed=1)[1]]


def test_split_without_persons_keeps_identical_images_together(tmp_path, utk_rows):
    root = tmp_path / "crops"
    rows = [r for r in utk_rows if r["gender"] == "female"][:30] + [
        r for r in utk_rows if r["gender"] == "male"
    ][:30]
    for r in rows:
        link(UTKFACE / r["path"], root / r["path"])
    # the same photo filed twice under other names, as scraped collections do
    for i, r in enumerate(rows[:10]):
        link(UTKFACE / r["path"], root / r["gender"] / f"copy_{i}.jpg")
    items = read_dataset(root)
    train, test, how = split(items, 0.4, seed=0)
    assert how.startswith("by image content")
    test_paths = {it.path.name for it in test}
    for i, r in enumerate(rows[:10]):
        assert (Path(r["path"]).name in test_paths) == (f"copy_{i}.jpg" in test_paths)


def test_overlap_check_matches_names_across_layouts(tmp_path, by_person):
    items = read_dataset(by_person)
    woman = next(it for it in items if it.gender == "female")
    facescrub = tmp_path / "facescrub"
    other = next(it for it in items if it.person == woman.person and it.path != woman.path)
    # the same person, spelt with spaces instead of underscores, in the FaceScrub layout
    link(other.path.resolve(), facescrub / "actresses" / woman.person.replace("_", " ") / "a.jpg")
    man = next(it for it in items if it.gender == "male" and it.person != woman.person)
    link(man.path.resolve(), facescrub / "actors" / "Someone Else" / "b.jpg")
    train = [it for it in items if it.path != other.path]
    o = person_overlap(train, read_dataset(facescrub))
    assert o["known"] is True
    assert o["persons"] == 1
    assert o["examples"] == [woman.person.replace("_", " ").lower()]
    assert o["test_images_of_them"] == 1


def test_overlap_is_unknown_when_a_set_names_no_person(tmp_path, by_person, utk_rows):
    root = tmp_path / "crops"
    for r in utk_rows[:4] + utk_rows[-4:]:
        link(UTKFACE / r["path"], root / r["path"])
    o = person_overlap(read_dataset(root), read_dataset(by_person))
    assert o["known"] is False and o["persons"] == 0


def test_limit_per_gender_draws_at_most_n_of_each(by_person):
    items = read_dataset(by_person)
    limited = limit_per_gender(items, 5, seed=0)
    assert sorted(it.gender for it in limited) == ["female"] * 5 + ["male"] * 5
    assert limit_per_gender(items, None, seed=0) == items
