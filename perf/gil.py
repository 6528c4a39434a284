"""Does dlib release the GIL? Time detection and encoding in 1 thread, then split over threads.

If two threads finish the same work in about half the time, dlib releases the GIL there and
threads would do; if they take as long as one, only processes run dlib in parallel (the
reason ``anfe.centroids.builder.extract`` and the service use processes). Also reports whether dlib itself
uses several cores for one call (CPU time above wall time in one thread), and how long a thread
that asks to wake every millisecond is stalled while detection and encoding run: that is how long
an event loop in the same process would be blocked (why app/pool.py detects in processes).

Example::

    .venv/bin/python perf/gil.py --images 40
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from anfe.centroids.imaging import decoding


def timed(fn, items, threads: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) to run ``fn`` on every item with ``threads``."""
    c0, t0 = time.process_time(), time.perf_counter()
    if threads == 1:
        for it in items:
            fn(it)
    else:
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(fn, items))
    return time.perf_counter() - t0, time.process_time() - c0


def stalls(fn, items) -> list[float]:
    """Wake-up gaps (seconds) of a thread sleeping 1 ms at a time while ``fn`` runs on ``items``."""
    gaps: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    th = threading.Thread(target=probe)
    th.start()
    for it in items:
        fn(it)
    stop.set()
    th.join()
    return sorted(gaps)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=40, help="LFW photos (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from anfe.centroids.vision import faces

    rows = common.balanced_sample(common.LFW, args.images, seed=2)
    images = [decoding.decode((common.LFW / r["path"]).read_bytes()) for r in rows]
    boxes = [faces.detect(im) for im in images]
    one_face = [(im, b) for im, b in zip(images, boxes, strict=True) if len(b) == 1]
    faces.encode(*one_face[0], encoder="dlib")  # load the models before timing
    tasks = {
        "HOG detection (face_detector)": (lambda im: faces.detect(im), images),
        "landmarks + encoder (compute_face_descriptor)": (
            lambda ib: faces.encode(*ib, encoder="dlib"),
            one_face,
        ),
    }
    print(f"machine: {common.machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")
    out = []
    for name, (fn, items) in tasks.items():
        w1, c1 = timed(fn, items, 1)
        wn, cn = timed(fn, items, args.threads)
        out.append([name, len(items), w1, c1 / w1, wn, w1 / wn])
    print(
        common.table(
            [
                "call",
                "items",
                "1 thread s",
                "CPU/wall in 1 thread",
                f"{args.threads} threads s",
                "speed-up from threads",
            ],
            out,
        )
    )
    gaps = stalls(lambda ib: faces.encode(ib[0], faces.detect(ib[0]), encoder="dlib"), one_face)
    print(
        f"\nprobe thread asking to wake every 1 ms during detect+encode of {len(one_face)} photos: "
        f"longest stall {gaps[-1] * 1000:.0f} ms, p99 {gaps[int(len(gaps) * 0.99)] * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
