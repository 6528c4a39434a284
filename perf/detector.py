"""dlib's CNN face detector on onnxruntime against dlib's own and against HOG, side by side.

Sections (``--sections``, comma-separated; default: ``speed,tight,groups,answers``):

- ``speed``: per photo, on one thread, each detector on the photo as given: LFW photos at
  250x250 and the same photos enlarged to 1000x1000; the CNN on onnxruntime (no upsampling,
  its default), dlib's CNN (``dlib.cnn_face_detection_model_v1``, at 250 px only: ~1 s a
  photo) and HOG with one upsampling (today's default) and without. Wall and CPU time; the
  ratios of the medians.
- ``tight``: LFW photos in which HOG finds exactly one face, cut 10 % and 15 % of the box inside
  HOG's box (as ``anfe bench --tight-crops`` does): the share in which the service's first
  detection pass (``faces.detect``, no second pass) finds a face, per detector.
- ``groups``: generated group photos (``perf/group_photos.py``: 10-40 LFW faces of 24-200 px
  on 4000x3000 canvases): recall by face size of each detector on the photo shrunk to 800 px
  (the default) and at full resolution (``max_side`` 0: tiles), and the time per photo.
- ``answers``: LFW photos in which both detectors find exactly one face: the distance between
  the embeddings of the face from either detector's box, and how many answers of each shipped
  centroid set change side (and the accuracy with either detector).
- ``equality``: dlib's CNN and the port on ``--lfw`` LFW photos, ``--utk`` UTKFace crops and
  ``--composites`` multi-face photos (2-4 LFW photos side by side or in a 2x2 grid), upsampling
  0 and 1: same number of faces, every box side within 1 px, every confidence within 1e-3.
  Results go to ``--out`` (JSON lines; a rerun resumes). Slow: dlib takes ~1 s per 250 px photo
  without upsampling and ~4 s with.
- ``bench``: ``anfe bench`` (UTKFace crops to train, LFW and held-out UTKFace to test) once with
  each detector, in a temporary database; the accuracies side by side.

Example (the figures of docs/performance.md, "Face detectors")::

    .venv/bin/python perf/detector.py
    .venv/bin/python perf/detector.py --sections equality --out equality.jsonl
    .venv/bin/python perf/detector.py --sections bench --test-per-gender 300 --size 1000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import group_photos  # noqa: E402

SECTIONS = ("speed", "tight", "groups", "answers", "equality", "bench")
DEFAULT_SECTIONS = "speed,tight,groups,answers"


def load(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB")))


def timed(fn, repeats: int) -> tuple[float, float]:
    """The least wall and CPU seconds of ``repeats`` calls of ``fn``."""
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def dlib_cnn():
    import dlib

    from anfe.centroids.vision.encoders.dlib_dat import detector_model_path

    return dlib.cnn_face_detection_model_v1(str(detector_model_path()))


def section_speed(args) -> None:
    from anfe.centroids.vision import detectors

    rows = common.balanced_sample(common.LFW, args.photos, seed=0)
    photos = [load(common.LFW / r["path"]) for r in rows]
    detectors.load("hog")
    detectors.load("cnn")
    reference = dlib_cnn()
    runs = {
        "cnn (onnx), upsample 0": lambda im: detectors.locate(im, "cnn", 0),
        "hog, upsample 1 (today)": lambda im: detectors.locate(im, "hog", 1),
        "hog, upsample 0": lambda im: detectors.locate(im, "hog", 0),
        "dlib cnn, upsample 0": lambda im: reference(im, 0),
    }
    print(f"\n## speed: {len(photos)} LFW photos, one thread; {common.machine()}")
    for size in (250, 1000):
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
        for i, photo in enumerate(photos):
            if size != 250:
                photo = np.asarray(Image.fromarray(photo).resize((size, size), Image.BICUBIC))
            for name, fn in runs.items():
                if name.startswith("dlib") and (size != 250 or i >= args.dlib_photos):
                    continue
                repeats = 1 if name.startswith("dlib") else args.repeats
                times[name].append(timed(lambda fn=fn, photo=photo: fn(photo), repeats))
        print(f"\n{size}x{size}: median per photo (least of {args.repeats} runs each)")
        print("| detector | photos | wall ms | CPU ms |")
        print("|---|---|---|---|")
        med = {}
        for name, values in times.items():
            if values:
                med[name] = (
                    statistics.median(v[0] for v in values),
                    statistics.median(v[1] for v in values),
                )
                print(f"| {name} | {len(values)} | {ms(med[name][0])} | {ms(med[name][1])} |")
        cnn = med["cnn (onnx), upsample 0"]
        hog = med["hog, upsample 1 (today)"]
        print(
            f"cnn (onnx) / hog upsample 1: wall {cnn[0] / hog[0]:.2f}x, CPU {cnn[1] / hog[1]:.2f}x"
        )
        if "dlib cnn, upsample 0" in med:
            ref = med["dlib cnn, upsample 0"]
            # dlib's median is over its first photos only: compare on the same photos too
            same = times["cnn (onnx), upsample 0"][: len(times["dlib cnn, upsample 0"])]
            on_same = (
                statistics.median(v[0] for v in same),
                statistics.median(v[1] for v in same),
            )
            print(
                f"dlib cnn / cnn (onnx), same {len(same)} photos: wall "
                f"{ref[0] / on_same[0]:.1f}x, CPU {ref[1] / on_same[1]:.1f}x faster"
            )


def crop_inside(image: np.ndarray, box, fraction: float) -> np.ndarray:
    top, right, bottom, left = box
    dy, dx = round(fraction * (bottom - top)), round(fraction * (right - left))
    return np.ascontiguousarray(image[top + dy : bottom - dy, left + dx : right - dx])


def section_tight(args) -> None:
    from anfe.centroids.vision import faces

    rows = common.balanced_sample(common.LFW, args.tight, seed=1)
    runs = (("hog", None), ("cnn", None), ("cnn", 1))
    counts = {(d, u, f): 0 for d, u in runs for f in (0.0, 0.1, 0.15)}
    n = 0
    for r in rows:
        image = load(common.LFW / r["path"])
        boxes = faces.detect(image, detector="hog")
        if len(boxes) != 1:
            continue
        n += 1
        for fraction in (0.0, 0.1, 0.15):
            crop = crop_inside(image, boxes[0], fraction) if fraction else image
            for detector, upsample in runs:
                if faces.detect(crop, upsample=upsample, detector=detector):
                    counts[(detector, upsample, fraction)] += 1
    print(f"\n## tight crops: {n} LFW photos in which HOG finds one face (of {len(rows)})")
    print("first detection pass only (faces.detect at the default 800 px), share with a face:")
    print("| detector | photo as it is | 10 % inside | 15 % inside |")
    print("|---|---|---|---|")
    for detector, upsample in runs:
        up = upsample if upsample is not None else f"{detectors_default(detector)} (default)"
        cells = [f"{counts[(detector, upsample, f)] / n:.3f}" for f in (0.0, 0.1, 0.15)]
        print(f"| {detector}, upsample {up} | " + " | ".join(cells) + " |")


def detectors_default(detector: str) -> int:
    from anfe.centroids.vision import detectors

    return detectors.default_upsample(detector)


def section_groups(args) -> None:
    from anfe.centroids.vision import faces

    rows = common.balanced_sample(common.LFW, 600, seed=2)
    pool = group_photos.face_pool(rows, common.LFW, 300)
    rng = np.random.default_rng(args.seed)
    runs = (("hog", 800), ("hog", 0), ("cnn", 800), ("cnn", 0))
    hits: dict[tuple, list[tuple[float, bool]]] = {r: [] for r in runs}
    times: dict[tuple, list[tuple[float, float]]] = {r: [] for r in runs}
    total = 0
    for _ in range(args.canvases):
        image, truth = group_photos.canvas(pool, rng)
        total += len(truth)
        for detector, max_side in runs:
            found: list = []

            def run(d=detector, m=max_side, im=image, out=found):
                out.append(faces.detect(im, m, None, d))

            times[(detector, max_side)].append(timed(run, 1))
            flags = group_photos.found(found[0], truth)
            hits[(detector, max_side)] += [
                (group_photos.side(t), f) for t, f in zip(truth, flags, strict=False)
            ]
    bins = group_photos.SIZE_BINS
    print(
        f"\n## group photos: {args.canvases} canvases of 4000x3000, {total} faces; recall by size"
    )
    head = " | ".join(f"{lo}-{hi - 1} px" for lo, hi in zip(bins, bins[1:], strict=False))
    print(f"| detector, max_side | {head} | wall s/photo | CPU s/photo |")
    print("|---" * (len(bins) + 2) + "|")
    for run in runs:
        cells = []
        for lo, hi in zip(bins, bins[1:], strict=False):
            sel = [f for s, f in hits[run] if lo <= s < hi]
            cells.append(f"{sum(sel) / len(sel):.2f} ({len(sel)})" if sel else "-")
        wall = statistics.median(t[0] for t in times[run])
        cpu = statistics.median(t[1] for t in times[run])
        name = f"{run[0]}, {run[1] or 'full resolution (0)'}"
        print(f"| {name} | " + " | ".join(cells) + f" | {wall:.1f} | {cpu:.1f} |")
    for run in runs:
        big = [f for s, f in hits[run] if s >= 40]
        print(
            f"{run[0]} max_side {run[1]}: faces >= 40 px found {sum(big)}/{len(big)} = "
            f"{sum(big) / len(big):.3f}"
        )


def section_answers(args) -> None:
    from anfe.centroids.storage import shipped
    from anfe.centroids.vision import faces

    rows = common.balanced_sample(common.LFW, args.answers, seed=3)
    vectors = {"hog": [], "cnn": []}
    labels = []
    for r in rows:
        image = load(common.LFW / r["path"])
        boxes = {d: faces.detect(image, detector=d) for d in ("hog", "cnn")}
        if any(len(b) != 1 for b in boxes.values()):
            continue
        for d in ("hog", "cnn"):
            vectors[d].append(faces.encode(image, boxes[d])[0])
        labels.append(r["gender"])
    hog, cnn = np.array(vectors["hog"]), np.array(vectors["cnn"])
    dist = np.linalg.norm(hog - cnn, axis=1)
    print(f"\n## answers: {len(labels)} LFW faces both detectors find alone (of {len(rows)})")
    print(
        f"embedding distance, HOG box vs CNN box: median {np.median(dist):.3f}, "
        f"95th percentile {np.percentile(dist, 95):.3f}, max {dist.max():.3f} "
        "(two photos of one person: ~0.3-0.5)"
    )
    print("| centroid set | changed side | accuracy, hog boxes | accuracy, cnn boxes |")
    print("|---|---|---|---|")
    truth = np.array(labels)
    for set_id in sorted(doc["_id"] for doc in shipped.shipped_documents()):
        cs = shipped.shipped_set(set_id)
        a = np.asarray(cs.classify(hog).gender)
        b = np.asarray(cs.classify(cnn).gender)
        print(
            f"| {set_id} | {int((a != b).sum())} / {len(a)} | {np.mean(a == truth):.3f} | "
            f"{np.mean(b == truth):.3f} |"
        )


def equality_photos(n_lfw: int, n_utk: int, n_comp: int) -> list[tuple[str, list[Path]]]:
    lfw = sorted(r["path"] for r in common.read_rows(common.LFW))
    utk = sorted(r["path"] for r in common.read_rows(common.UTKFACE))
    picks = lfw[:: max(1, len(lfw) // (n_lfw + 4 * n_comp + 1))]
    items = [("lfw:" + p, [common.LFW / p]) for p in picks[:n_lfw]]
    items += [("utk:" + p, [common.UTKFACE / p]) for p in utk[:: max(1, len(utk) // n_utk)][:n_utk]]
    rest = picks[n_lfw:]
    rng = np.random.default_rng(23)
    for i in range(n_comp):
        chosen = [rest[(4 * i + j) % len(rest)] for j in range(int(rng.integers(2, 5)))]
        items.append((f"composite{i}:" + "+".join(chosen), [common.LFW / p for p in chosen]))
    return items


def composite(paths: list[Path]) -> np.ndarray:
    """LFW photos side by side (2 or 3) or in a 2x2 grid (4)."""
    photos = [load(p) for p in paths]
    h = min(p.shape[0] for p in photos)
    w = min(p.shape[1] for p in photos)
    photos = [p[:h, :w] for p in photos]
    if len(photos) == 4:
        rows = [np.concatenate(photos[:2], 1), np.concatenate(photos[2:], 1)]
        return np.ascontiguousarray(np.concatenate(rows, 0))
    return np.ascontiguousarray(np.concatenate(photos, 1))


def compare(ours: list, ref: list) -> tuple[bool, float | None, float | None]:
    """(equal within 1 px and 1e-3, largest side difference, largest confidence difference)."""
    if len(ours) != len(ref):
        return False, None, None
    remaining = list(ref)
    side = conf = 0.0
    for o in ours:  # the nearest reference box: the order differs only for equal scores
        j = min(
            range(len(remaining)),
            key=lambda k: sum(abs(a - b) for a, b in zip(o[:4], remaining[k][:4], strict=False)),
        )
        r = remaining.pop(j)
        side = max(side, max(abs(a - b) for a, b in zip(o[:4], r[:4], strict=False)))
        conf = max(conf, abs(o[4] - r[4]))
    return side <= 1 and conf <= 1e-3, side, conf


def section_equality(args) -> None:
    from tqdm import tqdm

    from anfe.centroids.vision.encoders.onnx_detector import CnnFaceDetector

    ours, reference = CnnFaceDetector(threads=1), dlib_cnn()
    out = Path(args.out)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            rec = json.loads(line)
            done.add((rec["photo"], rec["upsample"]))
    items = equality_photos(args.lfw, args.utk, args.composites)
    jobs = [(n, p, u) for u in (0, 1) for n, p in items if (n, u) not in done]
    with out.open("a") as fh:
        for name, paths, up in tqdm(jobs, desc="cnn vs dlib", mininterval=5):
            image = composite(paths) if len(paths) > 1 else load(paths[0])
            t0 = time.perf_counter()
            a = [(d.left, d.top, d.right, d.bottom, d.confidence) for d in ours(image, up)]
            t1 = time.perf_counter()
            b = [
                (d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), d.confidence)
                for d in reference(image, up)
            ]
            t2 = time.perf_counter()
            ok, side, conf = compare(a, b)
            rec = dict(photo=name, upsample=up, shape=list(image.shape[:2]), ok=ok, faces=len(b),
                       side=side, conf=conf, ours=a, dlib=b, onnx_s=t1 - t0, dlib_s=t2 - t1)  # fmt: skip
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    print(f"\n## equality: {out}")
    for up in (0, 1):
        recs = [r for r in records if r["upsample"] == up]
        if not recs:
            continue
        kinds = {k: sum(r["photo"].startswith(k) for r in recs) for k in ("lfw", "utk", "comp")}
        faces = sum(r["faces"] for r in recs)
        sides = [r["side"] for r in recs if r["side"] is not None]
        confs = [r["conf"] for r in recs if r["conf"] is not None]
        bad = [r["photo"] for r in recs if not r["ok"]]
        print(
            f"upsample {up}: {len(recs)} photos ({kinds['lfw']} LFW, {kinds['utk']} UTKFace, "
            f"{kinds['comp']} composites), {faces} faces; equal: {len(recs) - len(bad)}; "
            f"largest box side difference {max(sides, default=0):g} px, largest confidence "
            f"difference {max(confs, default=0):.2g}; dlib/onnx time median "
            f"{statistics.median(r['dlib_s'] / r['onnx_s'] for r in recs):.1f}x"
        )
        for name in bad[:10]:
            print("  differs:", name)


def section_bench(args) -> None:
    anfe = str(Path(sys.executable).with_name("anfe"))
    data = common.DATA
    with tempfile.TemporaryDirectory(prefix="anfe-detector-bench-") as tmp:
        results = {}
        for detector in ("hog", "cnn"):
            out = Path(tmp) / f"out-{detector}"
            cmd = [
                anfe, "bench", "--train", str(data / "utkface"), "--cropped", "--min-age", "18",
                "--test", str(data / "lfw"), "--test", str(data / "utkface"),
                "--test-per-gender", str(args.test_per_gender), "--sizes", str(args.size),
                "--seed", "0", "--jobs", "1", "--baselines", "none", "--no-progress",
                "--detector", detector, "--db", str(Path(tmp) / "db"), "--out", str(out),
            ]  # fmt: skip
            print("$", " ".join(cmd), flush=True)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env={**os.environ, "ANFE_DETECTOR": detector})
            print(f"  {time.perf_counter() - t0:.0f} s")
            results[detector] = json.loads((out / "results.json").read_text())
        print(
            f"\n## anfe bench, {args.size} per gender, {args.test_per_gender} test photos per gender"
        )
        bench_summary(results)


def bench_summary(results: dict) -> None:
    """Print each test set's figures of either run's ``results.json`` side by side."""
    print(
        "| test set | size | detector | images | scored | no face | several | accuracy | "
        "balanced accuracy |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    names = [t["name"] for t in next(iter(results.values()))["tests"]]
    for name in names:
        for detector, data in results.items():
            test = next(t for t in data["tests"] if t["name"] == name)
            counts = test["counts"]
            for entry in test["sizes"]:
                sc = entry["scores"]
                print(
                    f"| {name} | {entry['per_gender']} | {detector} | {counts['images']} | "
                    f"{counts['scored']} | {counts['no_face']} | {counts['several_faces']} | "
                    f"{sc.get('accuracy', float('nan')):.4f} | "
                    f"{sc.get('balanced_accuracy', float('nan')):.4f} |"
                )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", default=DEFAULT_SECTIONS, help=f"of {','.join(SECTIONS)}")
    p.add_argument("--photos", type=int, default=40, help="speed: LFW photos (default: 40)")
    p.add_argument("--dlib-photos", type=int, default=15, help="speed: photos for dlib's CNN")
    p.add_argument("--repeats", type=int, default=3, help="speed: runs per photo, least counts")
    p.add_argument("--tight", type=int, default=300, help="tight: LFW photos (default: 300)")
    p.add_argument("--canvases", type=int, default=8, help="groups: canvases (default: 8)")
    p.add_argument("--seed", type=int, default=1, help="groups: seed of the canvases")
    p.add_argument("--answers", type=int, default=400, help="answers: LFW photos (default: 400)")
    p.add_argument("--lfw", type=int, default=250, help="equality: LFW photos")
    p.add_argument("--utk", type=int, default=150, help="equality: UTKFace crops")
    p.add_argument("--composites", type=int, default=100, help="equality: multi-face photos")
    p.add_argument("--out", default="detector-equality.jsonl", help="equality: results file")
    p.add_argument("--test-per-gender", type=int, default=300, help="bench: test photos")
    p.add_argument("--size", type=int, default=1000, help="bench: train images per gender")
    args = p.parse_args()
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")
    print(common.machine())
    for name in sections:
        t0 = time.perf_counter()
        globals()[f"section_{name}"](args)
        print(f"({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
