"""``anfe clean`` on a dirty folder made from real photos: every image lands where it should."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from anfe.centroids.builder.sets import BuildSpec, build
from anfe.centroids.errors import InvalidParameter
from anfe.scraper import review
from anfe.scraper.cleaner import CleanOptions, clean
from tests.helpers import LFW

ANFE = str(Path(sys.executable).with_name("anfe"))


def three_photo_people(lfw_rows, gender: str, n: int) -> list[list[Path]]:
    groups: dict[str, list[Path]] = {}
    for r in lfw_rows:
        if r["gender"] == gender:
            groups.setdefault(r["person"], []).append(LFW / r["path"])
    return [v for v in groups.values() if len(v) == 3][:n]


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def put(root: Path, rel: str, data: bytes) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return rel


@pytest.fixture
def dirty(tmp_path, lfw_rows, lfw_female, lfw_male) -> tuple[Path, dict[str, str]]:
    """RAW with one image of each kind of fault; returns RAW and {name: rel path under RAW}."""
    raw = tmp_path / "raw"
    (anna, bella), (dan, _) = (
        three_photo_people(lfw_rows, "female", 2),
        three_photo_people(lfw_rows, "male", 2),
    )
    f = {}
    for i, p in enumerate(anna):
        f[f"anna{i}"] = put(raw, f"female/anna/{i}.jpg", p.read_bytes())
    for i, p in enumerate(bella[:2]):
        f[f"bella{i}"] = put(raw, f"female/bella/{i}.jpg", p.read_bytes())
    for i, p in enumerate(dan):
        f[f"dan{i}"] = put(raw, f"male/dan/{i}.jpg", p.read_bytes())
    f["intruder"] = put(raw, "female/anna/9-costar.jpg", bella[2].read_bytes())
    f["duplicate"] = put(raw, "female/bella/copy.jpg", anna[0].read_bytes())
    smaller = Image.open(anna[1]).resize((200, 200))
    f["near_duplicate"] = put(raw, "female/anna/resized.jpg", jpeg(smaller, 70))
    f["truncated"] = put(raw, "male/dan/cut.jpg", dan[0].read_bytes()[:3000])
    pair = Image.new("RGB", (500, 250))
    pair.paste(Image.open(lfw_female), (0, 0))
    pair.paste(Image.open(lfw_male), (250, 0))
    f["several_faces"] = put(raw, "male/dan/two.jpg", jpeg(pair))
    f["no_face"] = put(
        raw, "female/bella/shirt.jpg", jpeg(Image.open(lfw_male).crop((0, 190, 250, 250)))
    )
    f["small_face"] = put(raw, "male/dan/tiny.jpg", jpeg(Image.open(lfw_male).resize((120, 120))))
    f["mislabelled"] = put(raw, "female/carla/0.jpg", lfw_male.read_bytes())
    return raw, f


@pytest.fixture
def with_centroids(store, small_centroids_doc):
    store.put_centroids(small_centroids_doc)
    return store


def run_clean(raw, out, db_uri, **kw):
    opts = CleanOptions(**{"min_face": 60, "centroids": "g_60", "jobs": 1, "progress": False, **kw})
    return clean(raw, out, opts, db=db_uri)


def where(out: Path, rel: str) -> list[str]:
    """Every place under CLEAN that holds a file named like RAW's ``rel``."""
    gender, rest = rel.split("/", 1)
    return sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob(Path(rest).name)
        if p.relative_to(out).as_posix().endswith(rest)
    )


def test_each_fault_lands_in_its_quarantine(dirty, tmp_path, db_uri, with_centroids):
    raw, f = dirty
    out = tmp_path / "clean"
    result = run_clean(raw, out, db_uri)
    for reason in (
        "duplicate", "near_duplicate", "truncated", "several_faces", "no_face", "small_face",
        "intruder",
    ):  # fmt: skip
        expected = {"truncated": "unreadable", "intruder": "other_person"}.get(reason, reason)
        gender = f[reason].split("/")[0]
        assert where(out, f[reason]) == [f"_quarantine/{expected}/{f[reason]}"], reason
        assert gender in ("female", "male")
    for key in ("anna0", "anna1", "anna2", "bella0", "bella1", "dan0", "dan1", "dan2"):
        assert where(out, f[key]) == [f[key]], key
    raw_files = [p for p in raw.rglob("*") if p.is_file()]
    assert len([p for p in out.rglob("*.jpg")]) == len(raw_files)  # nothing lost, copy mode
    assert all(p.exists() for p in raw_files)
    lines = [json.loads(x) for x in (out / "clean.jsonl").read_text().splitlines()]
    assert {x["reason"] for x in lines} >= {"ok", "unreadable", "other_person", "near_duplicate"}
    assert result.counts[("ok", "female")] == 6  # anna x3, bella x2, carla's mislabelled photo


def test_mislabelled_photo_is_listed_for_review_and_relabelled(
    dirty, tmp_path, db_uri, with_centroids
):
    raw, f = dirty
    out = tmp_path / "clean"
    run_clean(raw, out, db_uri)
    rows = review.read_review(out / "review.csv")
    assert b"\r" not in (out / "review.csv").read_bytes()  # LF: line tools such as sed work
    assert f["mislabelled"] in [r["path"] for r in rows]
    scores = [float(r["disagreement"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)
    for r in rows:
        r["action"] = "relabel" if r["path"] == f["mislabelled"] else "keep"
    with open(out / "review.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=review.COLUMNS)
        w.writeheader()
        w.writerows(rows)
    applied = review.apply_review(out / "review.csv")
    assert applied.moved == 1
    assert where(out, f["mislabelled"]) == ["male/carla/0.jpg"]
    again = review.apply_review(out / "review.csv")  # applying twice changes nothing
    assert again.moved == 0 and again.already == 1
    run_clean(raw, out, db_uri)  # a rerun keeps the relabel
    assert where(out, f["mislabelled"]) == ["male/carla/0.jpg"]


def test_rerun_recomputes_no_embedding_and_moves_no_file(dirty, tmp_path, db_uri, with_centroids):
    raw, _ = dirty
    out = tmp_path / "clean"
    run_clean(raw, out, db_uri)
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    cached = with_centroids.count_embeddings()
    manifest = (out / "clean.jsonl").read_text()
    run_clean(raw, out, db_uri)
    assert with_centroids.count_embeddings() == cached
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == before
    assert (out / "clean.jsonl").read_text() == manifest


def test_stricter_threshold_on_rerun_moves_the_earlier_copy(
    dirty, tmp_path, db_uri, with_centroids
):
    raw, f = dirty
    out = tmp_path / "clean"
    run_clean(raw, out, db_uri)
    run_clean(raw, out, db_uri, min_face=400)  # now every face is "small"
    assert where(out, f["anna0"]) == [f"_quarantine/small_face/{f['anna0']}"]
    assert len(list(out.rglob("*.jpg"))) == len([p for p in raw.rglob("*") if p.is_file()])


def test_move_mode_empties_raw_and_clean_builds(dirty, tmp_path, db_uri, with_centroids):
    raw, _ = dirty
    out = tmp_path / "clean"
    n = len([p for p in raw.rglob("*") if p.is_file()])
    run_clean(raw, out, db_uri, move=True, review=False)
    assert not [p for p in raw.rglob("*") if p.is_file()]
    assert len(list(out.rglob("*.jpg"))) == n
    report = build(BuildSpec(out, [2]), with_centroids, jobs=1, progress=False, log=lambda *_: None)
    assert report.built == ["g_2"]
    assert report.tally["female"].usable >= 2 and report.tally["male"].usable >= 2


def test_clean_refuses_output_equal_to_raw(dirty):
    raw, _ = dirty
    with pytest.raises(InvalidParameter):
        clean(raw, raw, CleanOptions(progress=False))


def test_review_with_a_hostile_path_is_refused(tmp_path):
    out = tmp_path / "clean"
    (out / "female").mkdir(parents=True)
    with open(out / "review.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=review.COLUMNS)
        w.writeheader()
        w.writerow({"path": "female/../../etc/passwd", "gender": "female", "action": "relabel"})
    with pytest.raises(InvalidParameter):
        review.apply_review(out / "review.csv")
    shutil.rmtree(out)


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))


@pytest.fixture
def man_copied_into_a_womans_folder(tmp_path, lfw_rows) -> Path:
    """Aaron Peirsol's three LFW photos, and his first one also in a woman's folder."""
    raw = tmp_path / "raw"
    for row in lfw_rows:
        if row["person"] == "Aaron_Peirsol":
            put(
                raw,
                f"male/Aaron_Peirsol/{Path(row['path']).name}",
                (LFW / row["path"]).read_bytes(),
            )
    (woman,) = three_photo_people(lfw_rows, "female", 1)
    for p in woman:
        put(raw, f"female/{p.parent.name}/{p.name}", p.read_bytes())
    original = LFW / "actors/Aaron_Peirsol/Aaron_Peirsol_0001.jpg"
    put(raw, f"female/{woman[0].parent.name}/{original.name}", original.read_bytes())
    return raw


def test_copy_in_the_wrong_gender_folder_is_quarantined_and_the_original_kept(
    man_copied_into_a_womans_folder, tmp_path, db_uri, with_centroids
):
    raw = man_copied_into_a_womans_folder
    out = tmp_path / "clean"
    run_clean(raw, out, db_uri)
    woman = next((raw / "female").iterdir()).name
    assert "male/Aaron_Peirsol/Aaron_Peirsol_0001.jpg" in tree(out)
    assert where(out, f"female/{woman}/Aaron_Peirsol_0001.jpg") == [
        f"_quarantine/duplicate/female/{woman}/Aaron_Peirsol_0001.jpg"
    ]
    kept = [x for x in tree(out) if not x.startswith("_")]
    assert len(kept) == 6  # his three and her three: no good photo lost
    before, manifest = tree(out), (out / "clean.jsonl").read_text()
    run_clean(raw, out, db_uri)  # a rerun on its own output changes nothing
    assert tree(out) == before and (out / "clean.jsonl").read_text() == manifest
    again = tmp_path / "clean-again"
    run_clean(out, again, db_uri)  # cleaning the clean set keeps all of it
    assert tree(again) == kept


def test_move_rerun_with_other_thresholds_finds_the_moved_images(
    dirty, tmp_path, db_uri, with_centroids
):
    raw, f = dirty
    out = tmp_path / "clean"
    n = len([p for p in raw.rglob("*") if p.is_file()])
    run_clean(raw, out, db_uri, move=True, review=False)
    assert not [p for p in raw.rglob("*") if p.is_file()]
    result = run_clean(raw, out, db_uri, move=True, review=False, min_face=400)
    assert where(out, f["anna0"]) == [f"_quarantine/small_face/{f['anna0']}"]
    assert len(list(out.rglob("*.jpg"))) == n
    assert sum(result.counts.values()) == n
    run_clean(raw, out, db_uri, move=True, review=False)  # and back
    assert where(out, f["anna0"]) == [f["anna0"]]
    assert len(list(out.rglob("*.jpg"))) == n


# -- anfe clean --apply-review checks the file it is given --------------------------------------


def review_folder(tmp_path: Path, photo: Path, newline: str) -> Path:
    """A clean folder with one photo under female/ and a review.csv listing it, unmarked."""
    out = tmp_path / "clean"
    put(out, "female/carla/0.jpg", photo.read_bytes())
    header = ",".join(review.COLUMNS)
    row = "female/carla/0.jpg,carla,female,male,0.6,0.5,0.1,"
    (out / "review.csv").write_bytes(newline.join([header, row, ""]).encode())
    return out


def apply_review_cli(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ANFE, "clean", "--apply-review", str(path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_apply_review_after_marking_with_sed_moves_one_image(tmp_path, lfw_female, newline):
    out = review_folder(tmp_path, lfw_female, newline)
    path = out / "review.csv"
    text = path.read_bytes().decode().replace(",\r\n", ",relabel\r\n").replace(",\n", ",relabel\n")
    path.write_bytes(text.encode())  # what `sed 's/,$/,relabel/'` (or an editor) leaves
    result = apply_review_cli(path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("relabelled 1 image;")
    assert (out / "male/carla/0.jpg").is_file() and not (out / "female/carla/0.jpg").exists()
    assert b"\r" not in path.read_bytes()  # written back with LF


@pytest.mark.parametrize(
    "text, message",
    [("hello\n", "lacks the columns path, gender, action"),
     ("", "lacks the columns"),
     ("path,gender\nfemale/a.jpg,female\n", "lacks the column action"),
     ("path,gender,action\nfemale/carla/0.jpg,female,relable\n", "line 2: action 'relable'"),
     ("path,gender,action\nfemale/carla/0.jpg,x,relabel\n", "line 2: gender 'x'")],
)  # fmt: skip
def test_apply_review_refuses_a_file_that_is_not_a_review(tmp_path, text, message):
    path = tmp_path / "hello.txt"
    path.write_text(text)
    result = apply_review_cli(path)
    assert result.returncode == 2
    assert result.stderr.startswith("anfe: error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr, result.stderr
    assert not (tmp_path / "relabels.jsonl").exists()
