"""Scale of the data path: store, load and build from 100k cached embeddings, today's code
against an earlier revision's, one run each on the same machine.

For each code (this checkout, and with ``--baseline REV`` the revision ``REV`` exported from git
into a temporary folder), a fresh process makes ``--per-gender`` synthetic cached embeddings per
gender in a fresh montydb (sqlite) database, each keyed by the sha256 of a small placeholder file
in a ``female/`` ``male/`` folder, then:

- inserts them in batches of 2,000 (``Store.put_embeddings``);
- loads them for a build in one pass (``load_cache``): time, and RSS kept above the start;
- runs the real ``build`` for every default size up to ``--per-gender``, all from the cache
  (nothing may be decoded or encoded: the counts are printed): time and peak RSS;
- sums the database folder's files.

The vectors are synthetic (two Gaussian clouds of unit-length 128-d vectors): this measures
storage and bookkeeping, not accuracy. The placeholder files are not images: reading and hashing
them is the only per-file work a fully cached build does.

Example (the figures of docs/performance.md, section 4)::

    .venv/bin/python perf/data_path.py --per-gender 50000 --baseline e6285e0

``REV`` must be a revision of the layout before the single ``anfe`` package (a top-level
``centroids`` package), such as ``e6285e0``, the last before vectors were stored compactly.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

STEPS = ("make files and documents", "insert", "load", "build")


def rss_mib() -> float:
    import psutil

    return common.mib(psutil.Process().memory_info().rss)


def _api() -> dict:
    """The modules measured: the earlier layout's (``centroids.*``, when ``PYTHONPATH`` points
    at an exported revision) or this checkout's (``anfe.centroids.*``)."""
    try:
        importlib.import_module("centroids.store")
    except ImportError:
        names = {
            "store": "anfe.centroids.storage.store",
            "extract": "anfe.centroids.builder.extract",
            "workers": "anfe.centroids.builder.workers",
            "build": "anfe.centroids.builder.sets",
            "settings": "anfe.centroids.vision.settings",
        }
    else:
        names = {
            "store": "centroids.store",
            "extract": "centroids.extract",
            "workers": "centroids.workers",
            "build": "centroids.build",
            "settings": "centroids.faces",
        }
    return {k: importlib.import_module(v) for k, v in names.items()}


def measure(n: int, work: Path, chunk: int | None = None) -> dict:
    """Run every step in this process; return its figures. ``chunk``: faces per cache document
    (this checkout's code only; 1 stores one face per document, as earlier versions did)."""
    api = _api()
    if chunk:
        from anfe.centroids.storage import embedding_chunks

        embedding_chunks.CHUNK = chunk
    Store, build_mod, workers = api["store"].Store, api["build"], api["workers"]
    settings = api["settings"].EmbeddingSettings(cropped=True)
    key = settings.key()
    out: dict = {"code": api["store"].__name__, "embeddings": 2 * n}

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 128))
    docs = []
    for gi, gender in enumerate(("female", "male")):
        folder = work / "data" / gender
        folder.mkdir(parents=True, exist_ok=True)
        vecs = centres[gi] + rng.normal(scale=2.0, size=(n, 128))
        vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
        for i in range(n):
            data = f"{gender}-{i}".encode()
            path = folder / f"{i:06d}.jpg"
            path.write_bytes(data)
            emb = workers.Embedded(hashlib.sha256(data).hexdigest(), 1, vecs[i], (0, 200, 200, 0))
            docs.append(emb.to_doc(key, gender, str(path)))
    out["make files and documents"] = {"seconds": time.perf_counter() - t0, "rss_after": rss_mib()}

    db = work / "db"
    with Store(str(db)) as store:
        t0 = time.perf_counter()
        for i in range(0, len(docs), 2000):
            store.put_embeddings(docs[i : i + 2000])
        out["insert"] = {"seconds": time.perf_counter() - t0}
    del docs
    out["disk_mib"] = sum(p.stat().st_size for p in db.rglob("*") if p.is_file()) / 2**20

    with Store(str(db)) as store:
        before = rss_mib()
        t0 = time.perf_counter()
        with common.PeakRSS(os.getpid(), 0.05) as peak:
            cache = api["extract"].load_cache(store, settings)
        seconds = time.perf_counter() - t0
        out["load"] = {
            "seconds": seconds,
            "rss_after": rss_mib(),
            "kept_mib": rss_mib() - before,
            "peak_mib": common.mib(peak.peak),
            "faces": len(cache),
        }
        del cache

    calls = {"embedded": 0}
    real = workers.embed_batch

    def counted(batch, *a, **kw):
        calls["embedded"] += len(batch)
        return real(batch, *a, **kw)

    workers.embed_batch = counted
    api["extract"].embed_batch = counted
    sizes = [s for s in build_mod.DEFAULT_SIZES if s <= n] or [n]
    with Store(str(db)) as store:
        t0 = time.perf_counter()
        with common.PeakRSS(os.getpid(), 0.05) as peak:
            spec = build_mod.BuildSpec(work / "data", sizes, settings)
            report = build_mod.build(spec, store, progress=False, log=lambda *_: None)
        out["build"] = {
            "seconds": time.perf_counter() - t0,
            "rss_after": rss_mib(),
            "peak_mib": common.mib(peak.peak),
            "sizes": sizes,
            "built": len(report.built),
            "computed": report.computed,
            "embedded": calls["embedded"],
        }
    return out


def real_build(crops: int, work: Path) -> dict:
    """``anfe build --cropped`` (its :func:`build`, in this process, with its worker pool) of
    ``crops`` real UTKFace crops, half of each gender, all ages, into a fresh database, every
    default size the folder fills: faces per second against the encoder's floor, and the share
    of the wall time spent in the database."""
    import extraction

    api = _api()
    Store, build_mod = api["store"].Store, api["build"]
    rows = common.balanced_sample(common.UTKFACE, crops, seed=0)
    folder = work / "utk"
    paths = common.link_dataset(common.UTKFACE, rows, folder)
    t_enc, c_enc, _ = extraction.encoder_floor(paths, 60)
    cores = len(os.sched_getaffinity(0))
    in_store = {"seconds": 0.0}
    for name in ("put_embeddings", "load_embeddings", "put_centroids", "find_centroids"):
        real = getattr(Store, name)

        def timed(self, *a, _real=real, **kw):
            t0 = time.perf_counter()
            try:
                return _real(self, *a, **kw)
            finally:
                in_store["seconds"] += time.perf_counter() - t0

        setattr(Store, name, timed)
    sizes = [s for s in build_mod.DEFAULT_SIZES if s <= crops // 2]
    settings = api["settings"].EmbeddingSettings(cropped=True)
    with Store(str(work / "utk-db")) as store:
        t0 = time.perf_counter()
        with common.PeakRSS(os.getpid(), 0.1) as peak:
            spec = build_mod.BuildSpec(folder, sizes, settings)
            report = build_mod.build(spec, store, progress=False, log=lambda *_: None)
        wall = time.perf_counter() - t0
    return {
        "crops": crops,
        "sizes": sizes,
        "built": report.built,
        "computed": report.computed,
        "wall": wall,
        "faces_per_s": crops / wall,
        "floor_faces_per_s": cores / c_enc,
        "encoder_ms": 1000 * c_enc,
        "store_seconds": in_store["seconds"],
        "peak_mib": common.mib(peak.peak),
    }


def run(n: int, work: Path, tree: Path | None, chunk: int | None = None) -> dict:
    """:func:`measure` in a fresh process, on the exported revision ``tree`` or this checkout."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    else:
        env.pop("PYTHONPATH", None)
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "--per-gender", str(n), "--workdir", str(work), "--measure"]
    cmd += ["--chunk", str(chunk)] if chunk else []
    done = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"the measuring process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def export(rev: str, dest: Path) -> Path:
    """The files of revision ``rev`` of this repository, in ``dest``."""
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", rev], capture_output=True, check=True
    ).stdout
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def rows_of(r: dict) -> list[list]:
    load, build = r["load"], r["build"]
    return [
        ["make files and documents", r["make files and documents"]["seconds"], ""],
        [f"insert {r['embeddings']} embeddings (batches of 2000)", r["insert"]["seconds"], ""],
        [
            f"load_cache: {load['faces']} vectors in one pass",
            load["seconds"],
            f"+{load['kept_mib']:.0f} MiB kept, peak {load['peak_mib']:.0f} MiB",
        ],
        [
            f"build sizes {','.join(map(str, build['sizes']))} (all cached)",
            build["seconds"],
            f"peak {build['peak_mib']:.0f} MiB; built {build['built']} sets; "
            f"{build['computed']} computed, {build['embedded']} embedded",
        ],
        ["database on disk (MiB)", r["disk_mib"], ""],
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--per-gender", type=int, default=50000, help="default: %(default)s")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument("--baseline", metavar="REV", help="also measure this git revision's code")
    ap.add_argument(
        "--utk-crops",
        type=int,
        default=0,
        metavar="N",
        help="instead: build N real UTKFace crops end to end (faces/s, floor, store share)",
    )
    ap.add_argument(
        "--chunk",
        type=int,
        default=None,
        help="faces per cache document for this checkout (default: the store's, 256; "
        "1 measures one face per document)",
    )
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="anfe-bench-data-"))
    if args.utk_crops:
        print(f"machine: {common.machine()} (shared with other jobs)")
        print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
        r = real_build(args.utk_crops, work)
        print(
            common.table(
                ["anfe build --cropped, real UTKFace crops", "value"],
                [
                    ["crops (half of each gender, all ages)", r["crops"]],
                    ["sizes built", ", ".join(r["built"]) or "none"],
                    ["faces embedded", r["computed"]],
                    ["wall seconds", r["wall"]],
                    ["faces/s (wall)", r["faces_per_s"]],
                    ["encoder alone, CPU ms per face", r["encoder_ms"]],
                    ["floor = cores / encoder CPU time, faces/s", r["floor_faces_per_s"]],
                    ["build / floor", r["faces_per_s"] / r["floor_faces_per_s"]],
                    ["seconds in the database (this process)", r["store_seconds"]],
                    ["share of the wall time in the database", r["store_seconds"] / r["wall"]],
                    ["peak RSS (this process and its workers), MiB", r["peak_mib"]],
                ],
            )
        )
        return 0
    if args.measure:
        print(json.dumps(measure(args.per_gender, work, args.chunk)))
        return 0
    print(f"machine: {common.machine()} (shared with other jobs)")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"work folder: {work}\n")
    results = {}
    if args.baseline:
        tree = export(args.baseline, work / "baseline-code")
        t0 = time.strftime("%H:%M:%S", time.gmtime())
        results["baseline"] = run(args.per_gender, work / "baseline", tree)
        print(f"{args.baseline} ({t0}-{time.strftime('%H:%M:%S', time.gmtime())} UTC):")
        print(common.table(["step", "seconds", "notes"], rows_of(results["baseline"])) + "\n")
    t0 = time.strftime("%H:%M:%S", time.gmtime())
    results["new"] = run(args.per_gender, work / "new", None, args.chunk)
    print(f"this checkout ({t0}-{time.strftime('%H:%M:%S', time.gmtime())} UTC):")
    print(common.table(["step", "seconds", "notes"], rows_of(results["new"])))
    if "baseline" in results:
        old, new = results["baseline"], results["new"]
        ratios = [
            ["insert", old["insert"]["seconds"] / new["insert"]["seconds"]],
            ["load_cache", old["load"]["seconds"] / new["load"]["seconds"]],
            ["build from the cache", old["build"]["seconds"] / new["build"]["seconds"]],
            [
                "memory kept by load_cache",
                old["load"]["kept_mib"] / max(new["load"]["kept_mib"], 1),
            ],
            ["peak RSS of the build", old["build"]["peak_mib"] / new["build"]["peak_mib"]],
            ["database on disk", old["disk_mib"] / new["disk_mib"]],
        ]
        print(f"\n{args.baseline} / this checkout (higher is better for this checkout):")
        print(common.table(["", "ratio"], ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
