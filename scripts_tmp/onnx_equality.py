"""Phase-A check: dlib's embeddings vs the ONNX port's on real faces, and side-by-side speed.

    OMP_NUM_THREADS=1 .venv/bin/python scripts_tmp/onnx_equality.py --lfw 1000 --utk 1100

LFW photos go through HOG detection (face_recognition.face_locations, upsample 1); UTKFace crops
are one face = the whole image box. dlib's reference is face_recognition.face_encodings
(num_jitters=1, model='small'); ours is encode_faces on the same landmarks.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import subprocess
import time
from pathlib import Path

import dlib
import face_recognition as fr
import numpy as np
from face_recognition import api

from centroids.onnx_encoder import OnnxEncoder, encode_faces, face_chips

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def rows(name: str) -> list[str]:
    with open(DATA / name / "labels.csv", newline="") as fh:
        return [str(DATA / name / r["path"]) for r in csv.DictReader(fh)]


def landmarks(img: np.ndarray, boxes) -> dlib.full_object_detections:
    shapes = dlib.full_object_detections()
    for box in boxes:
        shapes.append(api.pose_predictor_5_point(img, api._css_to_rect(box)))
    return shapes


def per_face(fn, chips: list[np.ndarray], batch: int, repeats: int) -> float:
    """Median over repeats of (time to run fn over all chips in batches) / number of chips."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(0, len(chips), batch):
            fn(chips[i : i + batch])
        times.append((time.perf_counter() - t) / len(chips))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lfw", type=int, default=1000)
    ap.add_argument("--utk", type=int, default=1100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--speed-chips", type=int, default=32)
    args = ap.parse_args()

    enc = OnnxEncoder(threads=1)
    rnd = random.Random(args.seed)
    jobs = [(p, False) for p in rnd.sample(rows("lfw"), args.lfw)]
    jobs += [(p, True) for p in rnd.sample(rows("utkface"), args.utk)]
    dists: dict[str, list[float]] = {"lfw": [], "utkface": []}
    speed_chips: list[np.ndarray] = []
    t0 = time.time()
    try:
        for i, (path, cropped) in enumerate(jobs, 1):
            img = fr.load_image_file(path)
            h, w = img.shape[:2]
            boxes = [(0, w, h, 0)] if cropped else fr.face_locations(img)
            if not boxes:
                continue
            ref = np.array(fr.face_encodings(img, boxes, num_jitters=1, model="small"))
            shapes = landmarks(img, boxes)
            ours = encode_faces(enc, img, shapes)
            dists["utkface" if cropped else "lfw"] += np.linalg.norm(ref - ours, axis=1).tolist()
            if len(speed_chips) < args.speed_chips:
                speed_chips += list(face_chips(img, shapes))
            if i % 200 == 0:
                n = sum(map(len, dists.values()))
                print(f"  {i}/{len(jobs)} images, {n} faces, {time.time() - t0:.0f} s", flush=True)
    except KeyboardInterrupt:
        print("interrupted: figures below cover the faces done so far")

    print("\nEquality (Euclidean distance dlib vs ONNX)")
    every = dists["lfw"] + dists["utkface"]
    for name, d in (*dists.items(), ("all", every)):
        if d:
            print(f"  {name:8s} faces={len(d):5d}  max={max(d):.3e}  mean={np.mean(d):.3e}")
    print(f"  faces over 1e-4: {sum(x > 1e-4 for x in every)}")

    chips = speed_chips[: args.speed_chips]
    model = api.face_encoder
    print(
        f"\nSpeed, one thread, {len(chips)} chips (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})"
    )
    print("  load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    stack = np.stack(chips)
    enc.encode_chips(stack[:8])
    model.compute_face_descriptor(chips[0])
    for batch in (1, 8):
        if batch == 1:
            d = per_face(lambda c: model.compute_face_descriptor(c[0]), chips, 1, 3)
        else:
            d = per_face(lambda c: model.compute_face_descriptor(list(c)), chips, batch, 3)
        o = per_face(lambda c: enc.encode_chips(np.stack(c)), chips, batch, 5)
        print(
            f"  batch {batch}: dlib {d * 1e3:6.1f} ms/face  onnx {o * 1e3:6.2f} ms/face  ratio {d / o:5.1f}x"
        )
    print("  load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
