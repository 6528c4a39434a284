"""``anfe build --dask local`` versus the local process pool, on the same real UTKFace crops.

Both run ``anfe build --cropped`` into a fresh embedded database, one after the other, with as
many workers as cores; the Dask run includes starting its LocalCluster (scheduler and worker
processes on 127.0.0.1). Also prints how fast the client side alone (read, hash, cache look-up,
database write) goes, from a rerun where everything is cached: the ceiling on how many Dask
workers one ``anfe build`` can keep busy.

Example::

    .venv/bin/python perf/dask_overhead.py --utk 300
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ANFE = str(Path(sys.executable).with_name("anfe"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--utk", type=int, default=300, help="UTKFace crops (default: %(default)s)")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="anfe-bench-dask-"))
    print(f"machine: {common.machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")
    rows = common.balanced_sample(common.UTKFACE, args.utk, 3)
    folder = work / "utk"
    common.link_dataset(common.UTKFACE, rows, folder)
    n = len(rows)
    out = []
    for label, extra in (("local process pool", []), ("--dask local", ["--dask", "local"])):
        db = work / ("db-" + label.replace(" ", "-").strip("-"))
        shutil.rmtree(db, ignore_errors=True)
        cmd = [ANFE, "build", str(folder), "--sizes", str(n // 2), "--cropped", "--no-progress"]
        cmd += ["--db", str(db), *extra]
        m = common.run_measured(cmd)
        rerun = common.run_measured(cmd)
        assert "embedded 0 new images" in rerun.out, rerun.out
        out.append([label, n, m.wall, n / m.wall, common.mib(m.peak), n / rerun.wall])
    base = out[0][3]
    for r in out:
        r.append(r[3] / base)
    print(
        common.table(
            [
                "extraction",
                "images",
                "seconds",
                "img/s",
                "peak MiB (all processes)",
                "cached rerun img/s",
                "vs local pool",
            ],
            out,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
