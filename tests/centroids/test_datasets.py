"""Reading labelled folders in the layouts users have."""

from __future__ import annotations

import shutil

import pytest

from anfe.centroids.builder import datasets
from anfe.centroids.errors import DatasetError
from tests.helpers import LFW, UTKFACE


def test_facescrub_layout_reads_gender_and_person(real_data):
    items = datasets.read_dataset(LFW)
    assert len(items) > 8000
    cook = [it for it in items if it.person == "AJ_Cook"]
    assert cook and all(it.gender == "female" for it in cook)
    lamas = [it for it in items if it.person == "AJ_Lamas"]
    assert lamas and all(it.gender == "male" for it in lamas)


def test_labels_csv_adds_age_and_race(real_data):
    items = datasets.read_dataset(UTKFACE)
    assert {it.gender for it in items} == {"female", "male"}
    assert all("race" in it.extra and "age" in it.extra for it in items[:50])
    adults = datasets.adults(items)
    assert 0 < len(adults) < len(items)
    assert all(int(it.extra["age"]) >= 18 for it in adults)


def test_woman_man_folders_with_person_subfolders_and_quarantine_skipped(
    tmp_path, lfw_female, lfw_male
):
    (tmp_path / "woman" / "aj-cook").mkdir(parents=True)
    (tmp_path / "man").mkdir()
    (tmp_path / "woman" / "_quarantine" / "no_face").mkdir(parents=True)
    shutil.copy(lfw_female, tmp_path / "woman" / "aj-cook" / "a.jpg")
    shutil.copy(lfw_male, tmp_path / "man" / "b.JPG")
    shutil.copy(lfw_male, tmp_path / "woman" / "_quarantine" / "no_face" / "c.jpg")
    (tmp_path / "man" / "notes.txt").write_text("not an image")
    items = datasets.read_dataset(tmp_path)
    assert [(it.gender, it.person, it.path.name) for it in items] == [
        ("male", None, "b.JPG"),
        ("female", "aj-cook", "a.jpg"),
    ]


def test_missing_folder_and_unknown_layout_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        datasets.read_dataset(tmp_path / "nope")
    (tmp_path / "cats").mkdir()
    with pytest.raises(DatasetError, match="female/ and male/"):
        datasets.read_dataset(tmp_path)
