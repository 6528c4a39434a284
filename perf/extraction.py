"""Extraction throughput and peak memory of ``anfe build`` versus the naive face_recognition loop.

Both run in the same process tree of this script, on the same real images, one after the other:

- ``anfe build`` (a subprocess; its own worker pool, an empty embedded database each time);
- ``perf/naive_extract.py`` (a subprocess): ``load_image_file`` → ``face_locations`` →
  ``face_encodings`` per image, full resolution, one process.

Sets: LFW photos (250x250), UTKFace crops (``anfe build --cropped``; the naive loop still
detects, as a user of face_recognition would), and LFW photos upscaled with Pillow to 1080p and
4000x3000. Also measured here: the floor, the face encoder alone per face on the cropped
faces (models loaded, image decoded and landmarks found beforehand), and how close the cropped
pipeline gets to ``cores / encoder time``; and the balanced accuracy on LFW of centroids built
from UTKFace by each pipeline (each pipeline's own LFW embeddings), to show nothing was lost.

Example (the figures of docs/performance.md)::

    .venv/bin/python perf/extraction.py --lfw 1000 --utk 1000 --large 6
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from anfe.centroids.imaging import decoding

ANFE = str(Path(sys.executable).with_name("anfe"))


def run_ours(folder: Path, per_gender: int, db: Path, cropped: bool, jobs: int | None):
    cmd = [ANFE, "build", str(folder), "--sizes", str(per_gender), "--no-progress"]
    cmd += ["--db", str(db), "--seed", "0"]
    cmd += ["--cropped"] if cropped else []
    cmd += ["--jobs", str(jobs)] if jobs else []
    # exit code 4: every image was embedded but too few had one face to fill the size
    return common.run_measured(cmd, ok_codes=(0, 4))


def run_naive(paths: list[Path], work: Path, name: str):
    listing = work / f"{name}.txt"
    listing.write_text("\n".join(str(p) for p in paths))
    out = work / f"{name}.json"
    script = str(Path(__file__).with_name("naive_extract.py"))
    measured = common.run_measured([sys.executable, script, str(listing), str(out)])
    return measured, json.loads(out.read_text())


def ours_vectors(db: Path, cropped: bool) -> dict[str, np.ndarray]:
    """Embeddings from the build's cache, by the (linked) path they were made from."""
    from anfe.centroids.storage.store import Store
    from anfe.centroids.vision.settings import EmbeddingSettings

    with Store(str(db)) as store:
        docs = store.cached_embeddings(EmbeddingSettings(cropped=cropped).key())
    return {d["path"]: np.asarray(d["vector"]) for d in docs.values() if d["vector"] is not None}


def balanced_accuracy(train: dict, train_labels: dict, test: dict, test_labels: dict) -> float:
    """The paper's rule: nearer of the two gender means of ``train``; mean recall on ``test``."""
    means = {
        g: np.mean([v for p, v in train.items() if train_labels[p] == g], axis=0)
        for g in ("female", "male")
    }
    recalls = []
    for g in ("female", "male"):
        vecs = np.array([v for p, v in test.items() if test_labels[p] == g])
        d_f = np.linalg.norm(vecs - means["female"], axis=1)
        d_m = np.linalg.norm(vecs - means["male"], axis=1)
        pred_female = d_f < d_m
        recalls.append(pred_female.mean() if g == "female" else (~pred_female).mean())
    return float(np.mean(recalls))


def encoder_floor(paths: list[Path], faces_n: int) -> tuple[float, float, float]:
    """Per face on cropped faces, with the encoder ``anfe build`` uses ($ANFE_ENCODER or onnx) on
    one thread: the encoder's wall and CPU seconds; landmarks + chip + encoder wall."""
    from anfe.centroids.vision import encoders, faces

    encoder = encoders.default_encoder()
    encoders.set_threads(1)
    prepared = []
    for p in paths[:faces_n]:
        image = decoding.decode(p.read_bytes())
        box = faces.whole_image_box(image)
        prepared.append((image, faces.chips(image, [box]), box))
    encoders.encode_chips(prepared[0][1], 1, encoder)  # warm up
    t0, c0 = time.perf_counter(), time.process_time()
    for _, chip, _ in prepared:
        encoders.encode_chips(chip, 1, encoder)
    t_enc = (time.perf_counter() - t0) / len(prepared)
    c_enc = (time.process_time() - c0) / len(prepared)
    t0 = time.perf_counter()
    for image, _, box in prepared:
        faces.encode(image, [box], encoder=encoder)
    t_both = (time.perf_counter() - t0) / len(prepared)
    return t_enc, c_enc, t_both


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--lfw", type=int, default=1000, help="LFW photos (default: %(default)s)")
    ap.add_argument("--utk", type=int, default=1000, help="UTKFace crops (default: %(default)s)")
    ap.add_argument(
        "--large", type=int, default=8, help="upscaled photos per large size (default: 8)"
    )
    ap.add_argument("--large-sizes", default="1080p,4000x3000", help="comma-separated")
    ap.add_argument("--floor-faces", type=int, default=60, help="faces timed for the floor")
    ap.add_argument("--jobs", type=int, default=None, help="anfe build --jobs (default: cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="keep generated files here")
    args = ap.parse_args()
    cores = args.jobs or len(os.sched_getaffinity(0))
    work = args.workdir or Path(tempfile.mkdtemp(prefix="anfe-bench-extract-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {common.machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"work folder: {work}\n")

    lfw_rows = common.balanced_sample(common.LFW, args.lfw, args.seed)
    utk_rows = common.balanced_sample(common.UTKFACE, args.utk, args.seed)
    sets = [
        ("LFW photos 250x250", common.LFW, lfw_rows, None, False),
        ("UTKFace crops 200x200 (--cropped)", common.UTKFACE, utk_rows, None, True),
    ]
    large_rows = common.balanced_sample(common.LFW, args.large, args.seed + 1)
    for name in filter(None, args.large_sizes.split(",")):
        sets.append((f"LFW upscaled to {name}", common.LFW, large_rows, common.SIZES[name], False))

    rows, results = [], {}
    for label, root, sample, size, cropped in sets:
        slug = label.split()[0].lower() + ("-" + label.split()[-1] if size else "")
        folder = work / slug
        if size is None:
            paths = common.link_dataset(root, sample, folder)
        else:
            paths = common.upscaled_dataset(sample, size, folder)
        per_gender = max(2, len(sample) // 2)
        db = work / f"db-{slug}"
        if db.exists():
            import shutil

            shutil.rmtree(db)
        print(f"{label}: {len(paths)} images; naive loop ...", flush=True)
        nm, naive = run_naive(paths, work, slug)
        print(f"{label}: anfe build ...", flush=True)
        om = run_ours(folder, per_gender, db, cropped, args.jobs)
        print("  " + om.out.strip().replace("\n", "\n  "), flush=True)
        n = len(paths)
        results[slug] = (paths, sample, naive, db, cropped, om)
        rows.append(
            [
                label,
                n,
                n / nm.wall,
                n / om.wall,
                nm.wall / om.wall,
                nm.cpu / n,
                om.cpu / n,
                nm.cpu / nm.wall,
                om.cpu / om.wall,
                (nm.cpu / n) / (om.cpu / n / cores),
                common.mib(nm.peak),
                common.mib(om.peak),
            ]
        )

    print()
    print(
        common.table(
            [
                "images",
                "n",
                "naive img/s",
                "anfe build img/s",
                "speed-up",
                "naive CPU s/img",
                "anfe CPU s/img",
                "naive cores got",
                "anfe cores got",
                f"speed-up on {cores} free cores (from CPU s/img)",
                "naive peak MiB",
                "anfe build peak MiB (all processes)",
            ],
            rows,
        )
    )

    utk_paths = results["utkface"][0]
    t_enc, c_enc, t_both = encoder_floor(utk_paths, args.floor_faces)
    floor = cores / c_enc
    utk_row = next(r for r in rows if r[0].startswith("UTKFace"))
    utk_cpu = results["utkface"][5].cpu / len(utk_paths)
    print()
    print(
        common.table(
            ["floor (cropped faces)", "value"],
            [
                ["encoder alone ($ANFE_ENCODER or onnx), CPU ms per face", c_enc * 1000],
                ["encoder alone, wall ms per face (1 thread)", t_enc * 1000],
                ["5-point landmarks + chip + encoder, wall ms per face", t_both * 1000],
                [f"floor = {cores} cores / encoder CPU time, faces/s", floor],
                ["anfe build --cropped, faces/s (wall)", utk_row[3]],
                ["anfe build --cropped / floor (wall; hit by other load)", utk_row[3] / floor],
                ["anfe build --cropped, CPU ms per face (all processes)", utk_cpu * 1000],
                ["encoder CPU / pipeline CPU per face (load-independent)", c_enc / utk_cpu],
            ],
        )
    )

    # accuracy on LFW of centroids built from the UTKFace crops, each pipeline end to end
    labels = {}
    for slug in ("lfw", "utkface"):
        paths, sample, *_ = results[slug]
        labels.update({str(p): r["gender"] for p, r in zip(paths, sample, strict=True)})
    naive_vecs = {
        slug: {p: np.asarray(v) for p, (k, v) in results[slug][2].items() if v is not None}
        for slug in ("lfw", "utkface")
    }
    ours = {slug: ours_vectors(results[slug][3], results[slug][4]) for slug in ("lfw", "utkface")}
    acc_naive = balanced_accuracy(naive_vecs["utkface"], labels, naive_vecs["lfw"], labels)
    acc_ours = balanced_accuracy(ours["utkface"], labels, ours["lfw"], labels)
    common_lfw = set(naive_vecs["lfw"]) & set(ours["lfw"])
    max_diff = max(
        (float(np.abs(naive_vecs["lfw"][p] - ours["lfw"][p]).max()) for p in common_lfw),
        default=float("nan"),
    )
    print()
    print(
        common.table(
            ["centroids from UTKFace, tested on LFW", "naive", "anfe build", "difference"],
            [
                [
                    "training faces used (one face found)",
                    len(naive_vecs["utkface"]),
                    len(ours["utkface"]),
                    "",
                ],
                ["LFW test faces (one face found)", len(naive_vecs["lfw"]), len(ours["lfw"]), ""],
                [
                    "balanced accuracy on LFW, %",
                    100 * acc_naive,
                    100 * acc_ours,
                    f"{100 * (acc_ours - acc_naive):+.2f} points",
                ],
                ["largest |difference| of an LFW embedding", "", "", f"{max_diff:.2g}"],
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
