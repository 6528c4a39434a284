"""Scale of the data path: build every size from 100k cached embeddings without decoding anything.

Makes ``--per-gender`` synthetic cached embeddings per gender in a fresh montydb (sqlite)
database, each keyed by the sha256 of a small placeholder file in a ``female/`` ``male/``
folder, then runs the real :func:`anfe.centroids.builder.sets.build` for every size up to ``--per-gender``.
Every image is a cache hit, so the build must decode nothing and start no worker: the script
counts decodes and encodes and reports time and memory of each step.

The vectors are synthetic (two Gaussian clouds of unit-length 128-d vectors); this measures
storage and bookkeeping, not accuracy. The placeholder files are not images: reading and
hashing them is the only per-file work a fully cached build does.

Example (the figures of docs/performance.md)::

    .venv/bin/python perf/data_path.py --per-gender 50000
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from anfe.centroids.imaging import decoding


def rss_mib() -> float:
    import psutil

    return common.mib(psutil.Process().memory_info().rss)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--per-gender", type=int, default=50000, help="default: %(default)s")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    from anfe.centroids.builder import sets as build_mod
    from anfe.centroids.builder.extract import Embedded, load_cache
    from anfe.centroids.storage.store import Store
    from anfe.centroids.vision import encoders
    from anfe.centroids.vision.settings import EmbeddingSettings

    work = args.workdir or Path(tempfile.mkdtemp(prefix="anfe-bench-data-"))
    n = args.per_gender
    settings = EmbeddingSettings(cropped=True)
    key = settings.key()
    print(f"machine: {common.machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"work folder: {work}\n")
    rows = []

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 128))
    docs = []
    for gi, gender in enumerate(("female", "male")):
        folder = work / "data" / gender
        folder.mkdir(parents=True, exist_ok=True)
        vecs = centres[gi] + rng.normal(scale=2.0, size=(n, 128))
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        for i in range(n):
            data = f"{gender}-{i}".encode()
            path = folder / f"{i:06d}.jpg"
            path.write_bytes(data)
            emb = Embedded(hashlib.sha256(data).hexdigest(), 1, vecs[i], (0, 200, 200, 0))
            docs.append(emb.to_doc(key, gender, str(path)))
    rows.append(["make files and documents", time.perf_counter() - t0, rss_mib(), ""])

    db = work / "db"
    with Store(str(db)) as store:
        t0 = time.perf_counter()
        for i in range(0, len(docs), 2000):
            store.put_embeddings(docs[i : i + 2000])
        rows.append(
            [f"insert {len(docs)} embeddings (batches of 2000)", time.perf_counter() - t0, "", ""]
        )
    del docs
    size_mib = sum(p.stat().st_size for p in db.rglob("*") if p.is_file()) / 2**20

    with Store(str(db)) as store:
        before = rss_mib()
        t0 = time.perf_counter()
        with common.PeakRSS(__import__("os").getpid(), 0.05) as peak:
            cache = load_cache(store, settings)
        rows.append(
            [
                f"load_cache: {len(cache)} vectors in one pass",
                time.perf_counter() - t0,
                rss_mib(),
                f"+{rss_mib() - before:.0f} MiB kept, peak {common.mib(peak.peak):.0f} MiB",
            ]
        )
        del cache

    calls = {"decode": 0, "encode": 0}
    real_decode, real_encode = decoding.decode, encoders.encode_chips

    def counted(name, fn):
        def wrapper(*a, **kw):
            calls[name] += 1
            return fn(*a, **kw)

        return wrapper

    decoding.decode = counted("decode", real_decode)
    encoders.encode_chips = counted("encode", real_encode)
    sizes = [s for s in build_mod.DEFAULT_SIZES if s <= n] or [n]
    with Store(str(db)) as store:
        t0 = time.perf_counter()
        with common.PeakRSS(__import__("os").getpid(), 0.05) as peak:
            spec = build_mod.BuildSpec(work / "data", sizes, settings)
            report = build_mod.build(spec, store, progress=False, log=lambda *_: None)
        rows.append(
            [
                f"anfe build sizes {','.join(map(str, sizes))} (all cached)",
                time.perf_counter() - t0,
                rss_mib(),
                f"peak {common.mib(peak.peak):.0f} MiB; built {len(report.built)} sets; "
                f"{report.computed} embedded; {calls['decode']} decoded; "
                f"{calls['encode']} encoded",
            ]
        )
    print(common.table(["step", "seconds", "RSS MiB after", "notes"], rows))
    print(f"\ndatabase on disk: {size_mib:.0f} MiB for {2 * n} embeddings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
