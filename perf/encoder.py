"""The ONNX port of dlib's face encoder against dlib's own, side by side in one run.

Sections (``--sections``, comma-separated; default: all but ``equality``):

- ``speed``: the encoder alone on one thread, per face, at batch 1 and 8, on real face chips
  (UTKFace crops, chips cut by dlib beforehand); onnxruntime on all the cores for reference.
- ``build``: ``anfe build --cropped --jobs 1`` on ``--build-crops`` UTKFace crops, an empty
  database each, ``--encoder onnx`` then ``--encoder dlib``; then where the ONNX build's time
  goes, each step timed alone in this process on the same crops (read + hash, decode,
  landmarks, chip, encoder in batches of 8, database writes).
- ``service``: two real ``anfe serve`` (one per encoder, the default ``--cpu-workers``) on
  127.0.0.1 with the same centroid set; LFW 250x250 photos posted to each in turn, one at a
  time; p50/p95 latency, the median of the response's ``timings_ms`` split (decode, HOG
  detection, landmarks + chip, encoder, classify), and the RSS of each detection process.
- ``memory``: the RSS of one worker process after embedding ``--memory-photos`` LFW photos:
  as before this change (``import face_recognition``: every dlib model, dlib's encoder), and
  now with each encoder (only the models used).
- ``equality``: dlib's and the ONNX embedding of the same chips of ``--lfw`` LFW photos (HOG
  detection, every face) and ``--utk`` UTKFace crops: the Euclidean distance per face (max,
  mean), and the answers of every shipped centroid set per face (how many change side, and
  their margins).
- ``bench``: the databases of two ``anfe bench`` runs, ``--encoder onnx`` and ``--encoder dlib``
  (``--bench-dbs``): every face embedded by both, and each run's centroid sets' answer per face.

Example (the figures of docs/performance.md)::

    .venv/bin/python perf/encoder.py
    .venv/bin/python perf/encoder.py --sections equality --lfw 1000 --utk 1100
    anfe bench ... --encoder onnx --db ONNX_DB; anfe bench ... --encoder dlib --db DLIB_DB
    .venv/bin/python perf/encoder.py --sections bench --bench-dbs ONNX_DB DLIB_DB
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
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import service  # noqa: E402

from anfe.centroids.imaging import decoding

ANFE = service.ANFE
SECTIONS = ("speed", "build", "service", "memory", "equality", "bench")
TIMING_PARTS = ("decode", "detect", "landmarks", "encode", "classify")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def chips_of(paths: list[Path]) -> np.ndarray:
    """The dlib chip of each UTKFace crop (the whole image is the face)."""
    from anfe.centroids.vision import faces

    out = []
    for p in paths:
        image = decoding.decode(p.read_bytes())
        shapes = faces.landmark_shapes(image, [faces.whole_image_box(image)])
        out.append(faces.face_chips(image, shapes))
    return np.concatenate(out)


def per_face(fn, chips: np.ndarray, batch: int, repeats: int) -> tuple[float, float]:
    """Median over ``repeats`` of the wall and CPU seconds per face of ``fn`` over all chips in
    batches (CPU time counts every thread of this process: load-independent on one thread)."""
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(chips), batch):
            fn(chips[i : i + batch])
        walls.append((time.perf_counter() - t0) / len(chips))
        cpus.append((time.process_time() - c0) / len(chips))
    return statistics.median(walls), statistics.median(cpus)


# -- speed -----------------------------------------------------------------------------------


def speed(chips: np.ndarray) -> None:
    from anfe.centroids.cpus import usable_cpus
    from anfe.centroids.vision import encoders

    encoders.set_threads(1)
    dlib_run = lambda c: encoders.encode_chips(c, 1, "dlib")  # noqa: E731
    onnx_run = lambda c: encoders.encode_chips(c, 1, "onnx")  # noqa: E731
    dlib_run(chips[:1]), onnx_run(chips[:8])  # load both
    rows = []
    for batch in (1, 8):
        (d, dc), (o, oc) = per_face(dlib_run, chips, batch, 2), per_face(onnx_run, chips, batch, 5)
        rows.append(
            [f"batch {batch}, 1 thread", d * 1e3, o * 1e3, d / o, dc * 1e3, oc * 1e3, dc / oc]
        )
    cores = usable_cpus()
    if cores > 1:
        encoders.set_threads(cores)
        onnx_run(chips[:8])
        o, oc = per_face(onnx_run, chips, 8, 5)
        nan = float("nan")
        rows.append([f"batch 8, onnx on {cores} threads", nan, o * 1e3, nan, nan, oc * 1e3, nan])
    print(f"\n## Encoder alone, {len(chips)} real face chips\n")
    print(
        common.table(
            ["", "dlib ms/face", "onnx ms/face", "dlib / onnx", "dlib CPU ms", "onnx CPU ms",
             "dlib / onnx, CPU"],
            rows,
        )
    )  # fmt: skip


# -- build -----------------------------------------------------------------------------------


class Steps:
    """Wall and CPU seconds of named steps, summed over calls."""

    def __init__(self, names: list[str]) -> None:
        self.wall = dict.fromkeys(names, 0.0)
        self.cpu = dict.fromkeys(names, 0.0)
        self._t = (0.0, 0.0)

    def start(self) -> None:
        self._t = (time.perf_counter(), time.process_time())

    def lap(self, name: str) -> None:
        t, c = time.perf_counter(), time.process_time()
        self.wall[name] += t - self._t[0]
        self.cpu[name] += c - self._t[1]
        self._t = (t, c)


def build(crops: Path, paths: list[Path], work: Path) -> None:
    from anfe.centroids.builder.workers import WRITE_EVERY, Embedded, chunks
    from anfe.centroids.imaging import formats
    from anfe.centroids.storage.store import Store
    from anfe.centroids.vision import encoders, faces

    n = len(paths)
    runs = {}
    # as is (onnxruntime on all the cores with --jobs 1), then pinned to one CPU (one thread)
    for pinned in (False, True):
        for encoder in ("onnx", "dlib"):
            name = f"{encoder}{', pinned to 1 CPU' if pinned else ''}"
            db = work / f"build-{encoder}{'-pinned' if pinned else ''}"
            cmd = ["taskset", "-c", "0"] if pinned else []
            cmd += [ANFE, "build", str(crops), "--cropped", "--jobs", "1", "--sizes", str(n // 2)]
            cmd += ["--encoder", encoder, "--no-progress", "--db", str(db)]
            print(f"anfe build --encoder {name} ...", flush=True)
            m = common.run_measured(cmd)
            if f"embedded {n} new images" not in m.out:
                raise SystemExit(f"the build did not embed {n} images: {m.out}")
            runs[name] = m
    # the pinned onnx build once more, every embedding cached: start-up, reading, hashing, look-up
    again = ["taskset", "-c", "0", ANFE, "build", str(crops), "--cropped", "--jobs", "1"]
    again += ["--sizes", str(n // 2), "--no-progress", "--db", str(work / "build-onnx-pinned")]
    cached = common.run_measured(again)
    print(f"\n## anfe build --cropped --jobs 1, {n} UTKFace crops ({uptime()})\n")
    rows = [
        [name, m.wall, m.cpu, m.cpu / m.wall, 1000 * m.wall / n, 1000 * m.cpu / n, common.mib(m.peak)]
        for name, m in runs.items()
    ]  # fmt: skip
    heads = ["encoder", "wall s", "CPU s", "cores got", "wall ms/face", "CPU ms/face", "peak MiB"]
    print(common.table(heads, rows))
    for suffix in ("", ", pinned to 1 CPU"):
        d, o = runs["dlib" + suffix], runs["onnx" + suffix]
        print(f"\ndlib / onnx{suffix}: wall {d.wall / o.wall:.2f}x, CPU {d.cpu / o.cpu:.2f}x")

    # where the ONNX build's CPU goes: each step alone, on the same crops, on one thread
    encoders.set_threads(1)
    st = Steps(["read + hash", "decode", "landmarks", "chip", "encoder", "database"])
    shas, all_chips = [], []
    for p in paths:
        st.start()
        data = p.read_bytes()
        shas.append(formats.content_hash(data))
        st.lap("read + hash")
        image = decoding.decode(data)
        st.lap("decode")
        shapes = faces.landmark_shapes(image, [faces.whole_image_box(image)])
        st.lap("landmarks")
        all_chips.append(faces.face_chips(image, shapes))
        st.lap("chip")
    encoders.encode_chips(all_chips[0], 1, "onnx")  # loaded, as in a running build
    vectors = []
    st.start()
    for batch in chunks(all_chips, 8):
        vectors += list(encoders.encode_chips(np.concatenate(batch), 1, "onnx"))
    st.lap("encoder")
    docs = [
        Embedded(sha, 1, v, (0, 200, 200, 0)).to_doc("timing", "female", str(p))
        for sha, v, p in zip(shas, vectors, paths, strict=True)
    ]
    with Store(str(work / "build-steps-db")) as store:
        st.start()
        for batch in chunks(docs, WRITE_EVERY):
            store.put_embeddings(batch)
        st.lap("database")
    total = runs["onnx, pinned to 1 CPU"].cpu
    rows = [
        [name, 1000 * st.wall[name] / n, 1000 * cpu / n, f"{100 * cpu / total:.0f} %"]
        for name, cpu in st.cpu.items()
    ]
    rows.append(
        ["start-up + read + hash + cache look-up (the build again, all cached)",
         1000 * cached.wall / n, 1000 * cached.cpu / n, f"{100 * cached.cpu / total:.0f} %"]
    )  # fmt: skip
    rest = total - cached.cpu - sum(c for k, c in st.cpu.items() if k != "read + hash")
    rows.append(
        ["the rest (centroid fitting, ...)", "", 1000 * rest / n, f"{100 * rest / total:.0f} %"]
    )
    print(f"\nwhere the onnx build's {total:.1f} CPU s go (pinned run; each step timed alone)\n")
    print(common.table(["step", "wall ms/face", "CPU ms/face", "share of the build's CPU"], rows))


# -- service ---------------------------------------------------------------------------------


def post(session: requests.Session, url: str, data: bytes) -> tuple[float, dict]:
    t0 = time.perf_counter()
    r = session.post(url + "/predict", files={"file": ("p.jpg", data, "image/jpeg")}, timeout=300)
    elapsed = time.perf_counter() - t0
    if r.status_code != 200:
        raise SystemExit(f"/predict answered {r.status_code}: {r.text[:300]}")
    return elapsed, r.json()


def serve(work: Path, photos: int) -> None:
    db = work / "service-db"
    utk = work / "service-utk"
    common.link_dataset(
        common.UTKFACE, common.balanced_sample(common.UTKFACE, 140, 5, min_age=18), utk
    )
    common.run_measured([ANFE, "build", str(utk), "--sizes", "60", "--cropped", "--no-progress"]
                        + ["--db", str(db)])  # fmt: skip
    small = [
        (common.LFW / r["path"]).read_bytes() for r in common.balanced_sample(common.LFW, photos, 7)
    ]
    cores = len(os.sched_getaffinity(0))
    lat: dict[str, list[float]] = {"onnx": [], "dlib": []}
    parts: dict[str, dict[str, list[float]]] = {e: {k: [] for k in TIMING_PARTS} for e in lat}
    rss_rows = []
    with (
        service.Server(db, 1, cores, "onnx") as onnx,
        service.Server(db, 1, cores, "dlib") as dlib,
        requests.Session() as s,
    ):
        servers = {"onnx": onnx, "dlib": dlib}
        print(f"two servers up; {len(small)} photos to each, in turn ...", flush=True)
        for server in servers.values():
            for data in small[: 2 * cores]:  # every detection process answers once first
                post(s, server.url, data)
        for data in small:
            for encoder, server in servers.items():
                elapsed, body = post(s, server.url, data)
                lat[encoder].append(elapsed)
                for k in TIMING_PARTS:
                    parts[encoder][k].append(body["timings_ms"].get(k, float("nan")))
        for encoder, server in servers.items():
            for role, size in server.rss():
                if role == "detection process":
                    rss_rows.append([encoder, role, size])
    p50 = {e: float(np.percentile(v, 50)) * 1000 for e, v in lat.items()}
    p95 = {e: float(np.percentile(v, 95)) * 1000 for e, v in lat.items()}
    print(f"\n## /predict on LFW 250x250, anfe serve --cpu-workers {cores} ({uptime()})\n")
    rows = [[e, len(lat[e]), p50[e], p95[e]] for e in lat]
    print(common.table(["encoder", "requests", "p50 ms", "p95 ms"], rows))
    print(f"\np50 dlib / onnx: {p50['dlib'] / p50['onnx']:.2f}x")
    print("\nmedian of the response's timings_ms (server side, in the detection process)\n")
    rows = []
    for e in lat:
        med = {k: statistics.median(parts[e][k]) for k in TIMING_PARTS}
        rest = p50[e] - sum(med.values())
        rows.append([e, *(med[k] for k in TIMING_PARTS), rest])
    print(common.table(["encoder", *TIMING_PARTS, "HTTP + hand-over (p50 - sum)"], rows))
    print()
    print(common.table(["encoder", "process", "RSS MiB"], rss_rows))


# -- memory ----------------------------------------------------------------------------------

WORKER_KINDS = {
    "before (import face_recognition: every dlib model, dlib's encoder)": "before",
    "now, --encoder dlib (HOG, 5-point landmarks, dlib's encoder)": "dlib",
    "now, --encoder onnx (HOG, 5-point landmarks, ONNX encoder, 1 thread)": "onnx",
}


def worker_rss(kind: str, photos: list[str]) -> dict:
    """Run in a fresh process: load the models as a worker of ``kind`` does, embed the photos."""
    import psutil

    from anfe.centroids.vision import faces

    if kind == "before":  # what the worker loaded before the ONNX encoder (faces._api())
        import face_recognition.api as api

        for p in photos:
            image = decoding.decode(Path(p).read_bytes())
            for box in api.face_detector(image, 1):
                shape = api.pose_predictor_5_point(image, box)
                api.face_encoder.compute_face_descriptor(image, shape, 1)
    else:
        faces.warm_up(kind)
        for p in photos:
            image = decoding.decode(Path(p).read_bytes())
            faces.encode(image, faces.detect(image), encoder=kind)
    return {"rss": psutil.Process().memory_info().rss}


def memory(photos: int) -> None:
    paths = [str(common.LFW / r["path"]) for r in common.balanced_sample(common.LFW, photos, 9)]
    rows = []
    for label, kind in WORKER_KINDS.items():
        # the peak is sampled from here: ru_maxrss would carry this process's over the exec
        m = common.run_measured(
            [sys.executable, __file__, "--worker-rss", kind, *paths], {"OMP_NUM_THREADS": "1"}
        )
        rss = json.loads(m.out.strip().splitlines()[-1])["rss"]
        rows.append([label, common.mib(rss), common.mib(m.peak)])
    base = rows[0][1]
    for row in rows:
        row.append(f"{row[1] - base:+.0f}")
    print(f"\n## One worker process after {photos} LFW photos\n")
    print(common.table(["worker", "RSS MiB", "peak RSS MiB", "RSS vs before, MiB"], rows))


# -- equality --------------------------------------------------------------------------------


def equality(n_lfw: int, n_utk: int, seed: int) -> None:
    import random

    from anfe.centroids.model.centroid_set import CentroidSet
    from anfe.centroids.storage import shipped
    from anfe.centroids.vision import encoders, faces

    encoders.set_threads(1)
    rng = random.Random(seed)
    jobs = [
        (common.LFW / r["path"], False) for r in rng.sample(common.read_rows(common.LFW), n_lfw)
    ]
    jobs += [
        (common.UTKFACE / r["path"], True)
        for r in rng.sample(common.read_rows(common.UTKFACE), n_utk)
    ]
    vecs: dict[str, dict[str, list]] = {
        "lfw": {"dlib": [], "onnx": []},
        "utkface": {"dlib": [], "onnx": []},
    }
    t0 = time.time()
    for i, (path, cropped) in enumerate(jobs, 1):
        image = decoding.decode(path.read_bytes())
        boxes = [faces.whole_image_box(image)] if cropped else faces.detect(image)
        if boxes:
            chips = faces.face_chips(image, faces.landmark_shapes(image, boxes))
            name = "utkface" if cropped else "lfw"
            for encoder in ("dlib", "onnx"):
                vecs[name][encoder].append(encoders.encode_chips(chips, 1, encoder))
        if i % 250 == 0:
            print(f"  {i}/{len(jobs)} images, {time.time() - t0:.0f} s", flush=True)
    rows, every = [], {"dlib": [], "onnx": []}
    for name, v in vecs.items():
        d, o = np.concatenate(v["dlib"]), np.concatenate(v["onnx"])
        every["dlib"].append(d)
        every["onnx"].append(o)
        dist = np.linalg.norm(d - o, axis=1)
        rows.append(
            [name, len(dist), f"{dist.max():.2e}", f"{dist.mean():.2e}", int((dist > 1e-4).sum())]
        )
    d, o = np.concatenate(every["dlib"]), np.concatenate(every["onnx"])
    dist = np.linalg.norm(d - o, axis=1)
    rows.append(
        ["all", len(dist), f"{dist.max():.2e}", f"{dist.mean():.2e}", int((dist > 1e-4).sum())]
    )
    print(f"\n## Equality: Euclidean distance between dlib's and the ONNX embedding ({uptime()})\n")
    print(common.table(["faces of", "faces", "max", "mean", "over 1e-4"], rows))
    print(
        f"\nlargest component difference: {np.abs(d - o).max():.2e}; "
        f"a face's embedding has norm ~{np.linalg.norm(d, axis=1).mean():.2f}"
    )
    rows = []
    for doc in shipped.shipped_documents():
        cs = CentroidSet.from_doc(doc)
        pd, po = cs.classify(d), cs.classify(o)
        changed = np.flatnonzero(pd.gender != po.gender)
        margins = ", ".join(f"{pd.margin[i]:.1e}" for i in changed) or "-"
        rows.append(
            [
                cs.id,
                len(d),
                len(changed),
                margins,
                f"{np.abs(pd.margin - po.margin).max():.1e}",
                int((pd.uncertain != po.uncertain).sum()),
            ]
        )
    print("\nanswers of the shipped centroid sets on the same faces, dlib vs onnx\n")
    print(
        common.table(
            ["set", "faces", "changed side", "their margins", "max margin diff", "uncertain flips"],
            rows,
        )
    )


def bench_diff(db_onnx: Path, db_dlib: Path) -> None:
    """Two ``anfe bench`` databases, one per encoder: the same faces' embeddings and every
    centroid set's answer on each face (the faces of both tests and the training draws)."""
    from anfe.centroids import vectors
    from anfe.centroids.model.centroid_set import CentroidSet
    from anfe.centroids.storage.store import Store

    vecs, sets = {}, {}
    for name, db in (("onnx", db_onnx), ("dlib", db_dlib)):
        with Store(str(db)) as store:
            vecs[name] = {
                sha: d["vector"]
                for key in {d["settings"] for d in store.embeddings.find({}, {"settings": 1})}
                for sha, d in store.cached_embeddings(key).items()
                if d["vector"] is not None
            }
            sets[name] = {d["_id"]: d for d in store.list_centroids(with_vectors=True)}
    ids = sorted(set(vecs["onnx"]) & set(vecs["dlib"]))
    o = np.array([vecs["onnx"][i] for i in ids])
    d = np.array([vecs["dlib"][i] for i in ids])
    dist = np.linalg.norm(o - d, axis=1)
    only = len(set(vecs["onnx"]) ^ set(vecs["dlib"]))
    print(f"\n## anfe bench with each encoder: {len(ids)} faces embedded by both ({uptime()})\n")
    print(f"embedding distance dlib vs onnx: max {dist.max():.2e}, mean {dist.mean():.2e}; "
          f"faces embedded by one run only: {only}")  # fmt: skip
    rows = []
    for cid in sorted(set(sets["onnx"]) & set(sets["dlib"])):
        a, b = sets["onnx"][cid], sets["dlib"][cid]
        diff = max(
            float(np.abs(vectors.unpack(a["vectors"][g]) - vectors.unpack(b["vectors"][g])).max())
            for g in ("female", "male")
        )
        po = CentroidSet.from_doc(a).classify(o)  # each run's own set on its own embeddings
        pd = CentroidSet.from_doc(b).classify(d)
        changed = np.flatnonzero(po.gender != pd.gender)
        margins = ", ".join(f"{pd.margin[i]:.1e}" for i in changed) or "-"
        rows.append([cid, f"{diff:.1e}", len(ids), len(changed), margins])
    heads = ["set", "max centroid diff", "faces", "changed side", "their margins (dlib)"]
    print(common.table(heads, rows))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sections", default="speed,build,service,memory", help="default: %(default)s")
    ap.add_argument("--chips", type=int, default=64, help="chips timed by speed (default: 64)")
    ap.add_argument("--build-crops", type=int, default=1000, help="default: %(default)s")
    ap.add_argument("--photos", type=int, default=60, help="LFW photos per server (default: 60)")
    ap.add_argument("--memory-photos", type=int, default=20, help="default: %(default)s")
    ap.add_argument("--lfw", type=int, default=1000, help="LFW photos for equality")
    ap.add_argument("--utk", type=int, default=1100, help="UTKFace crops for equality")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--bench-dbs",
        nargs=2,
        type=Path,
        metavar=("ONNX_DB", "DLIB_DB"),
        help="the --db of two anfe bench runs, with --encoder onnx and dlib (section bench)",
    )
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--worker-rss", default=None, help=argparse.SUPPRESS)
    ap.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker_rss:
        print(json.dumps(worker_rss(args.worker_rss, args.paths)))
        return 0
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        ap.error(
            f"unknown sections {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}"
        )
    work = args.workdir or Path(tempfile.mkdtemp(prefix="anfe-perf-encoder-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {common.machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"start: {uptime()}\n")
    if "speed" in sections or "build" in sections:
        rows = common.balanced_sample(common.UTKFACE, max(args.build_crops, args.chips), 3, 18)
        crops = work / "utk-crops"
        paths = common.link_dataset(common.UTKFACE, rows, crops)
    if "speed" in sections:
        speed(chips_of(paths[:: max(1, len(paths) // args.chips)][: args.chips]))
    if "build" in sections:
        build(crops, paths, work)
    if "service" in sections:
        serve(work, args.photos)
    if "memory" in sections:
        memory(args.memory_photos)
    if "equality" in sections:
        equality(args.lfw, args.utk, args.seed)
    if "bench" in sections:
        if not args.bench_dbs:
            ap.error("section bench needs --bench-dbs ONNX_DB DLIB_DB")
        bench_diff(*args.bench_dbs)
    print(f"\nend: {uptime()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
