"""Does dlib hold the GIL during detection and encoding? Decides threads vs processes in app/pool.py.

Runs the same detect+encode work (a real LFW photo tiled to 1000x1000) three ways and prints:
one thread; two threads sharing the work (a speed-up near 2x would mean the GIL is released);
one thread while a probe thread tries to wake every millisecond (its longest stall is how long an
event loop in the same process would be blocked).

    .venv/bin/python benchmarks/app_gil.py [--rounds 8]
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import numpy as np

from centroids import faces

PHOTO = Path(__file__).resolve().parents[2] / "shared/data/lfw/actresses/AJ_Cook/AJ_Cook_0001.jpg"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8, help="detect+encode rounds (even)")
    args = ap.parse_args()
    faces.warm_up()
    photo = faces.decode(PHOTO.read_bytes())
    image = np.ascontiguousarray(np.tile(photo, (4, 4, 1)))

    def work(n: int) -> None:
        for _ in range(n):
            faces.encode(image, faces.detect(image, 1000, 1))

    t = time.perf_counter()
    work(args.rounds)
    one = time.perf_counter() - t

    threads = [threading.Thread(target=work, args=(args.rounds // 2,)) for _ in range(2)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    two = time.perf_counter() - t

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
    work(args.rounds)
    stop.set()
    th.join()
    gaps.sort()
    print(f"{args.rounds} rounds of detect+encode on a 1000x1000 image: one LFW photo tiled 4x4")
    print(f"one thread:            {one:6.2f} s")
    print(
        f"two threads:           {two:6.2f} s  (speed-up {one / two:.2f}x; 2x if the GIL were released)"
    )
    print(
        f"probe thread stalls:   longest {gaps[-1] * 1000:.0f} ms, "
        f"p99 {gaps[int(len(gaps) * 0.99)] * 1000:.0f} ms (asked for 1 ms)"
    )


if __name__ == "__main__":
    main()
