"""What hostile and unlucky requests cost a running ``anfe serve``: the figures of docs/reliability.md.

Starts ``anfe serve --cpu-workers 2`` (default settings otherwise, the shipped centroid sets) on
127.0.0.1 and measures, in one run:

1. a progressive JPEG with thousands of EOB-only AC scans (:func:`perf.crafted.scan_bomb`):
   when it is answered (``422 image_over_budget`` after ``ANFE_IMAGE_BUDGET_SECONDS``);
2. a real photo sent right after two such bombs were abandoned by their clients after 3 s:
   its latency (the workers are stopped and replaced, not left decoding);
3. the peak RSS of the server's process tree while two 1 x 39,999,999 RGBA PNGs are sent at
   once, then while two of the largest images the limits accept are (6000x6000 RGBA PNGs made
   from a real photo: the pixel and decoded-byte limits at their defaults);
4. ``/health`` latency while 16 clients post 28 MB JSON bodies;
5. a second server on a MongoDB URI where nothing listens: when ten concurrent requests are
   answered 503, and ``/health`` latency meanwhile.

    .venv/bin/python perf/resilience.py
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.common import LFW, PeakRSS, machine  # noqa: E402
from perf.crafted import scan_bomb, tall_png  # noqa: E402
from tests.helpers import free_port  # noqa: E402

PHOTO = LFW / "actresses/AJ_Cook/AJ_Cook_0001.jpg"


@contextmanager
def server(db: str, log: Path):
    port = free_port()
    cmd = [sys.executable, "-m", "anfe.cli", "serve", "--db", db, "--port", str(port)]
    cmd += ["--cpu-workers", "2", "--log-level", "warning"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"anfe serve did not start:\n{log.read_text()[-2000:]}")
            try:
                requests.get(base + "/health", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(60)


def post(base: str, data: bytes, timeout: float = 600) -> requests.Response:
    return requests.post(base + "/predict", files={"file": ("x", data)}, timeout=timeout)


def wait_ready(base: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        body = requests.get(base + "/health", timeout=30).json()
        if body.get("workers_ready") == body.get("workers"):
            return
        time.sleep(0.2)
    raise SystemExit("the detection workers did not come back")


def timed(fn) -> tuple[float, object]:
    t = time.monotonic()
    out = fn()
    return time.monotonic() - t, out


def largest_accepted_png() -> bytes:
    from PIL import Image

    with Image.open(PHOTO) as im:
        big = im.convert("RGBA").resize((6000, 6000))
    buf = io.BytesIO()
    big.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def health_ms(base: str, n: int, pause: float = 0.2) -> list[float]:
    out = []
    for _ in range(n):
        seconds, _ = timed(lambda: requests.get(base + "/health", timeout=60))
        out.append(seconds * 1000)
        time.sleep(pause)
    return out


def scan_bombs(base: str, photo: bytes) -> None:
    bomb = scan_bomb(10_000)
    seconds, resp = timed(lambda: post(base, bomb))
    code = resp.json()["error"]["code"]
    print(f"1. scan bomb ({len(bomb) // 1024} KB, 6320x6320, 10,000 AC scans): "
          f"{resp.status_code} {code} after {seconds:.1f} s")  # fmt: skip
    wait_ready(base)

    def abandon() -> None:
        try:
            post(base, bomb, timeout=3)
        except requests.Timeout:
            pass

    with ThreadPoolExecutor(2) as ex:
        list(ex.map(lambda _: abandon(), range(2)))
    seconds, resp = timed(lambda: post(base, photo))
    print(f"2. a photo after two bombs were abandoned at 3 s: {resp.status_code} "
          f"in {seconds:.1f} s")  # fmt: skip
    wait_ready(base)


def memory(base: str, pid: int) -> None:
    for label, data in (
        ("1 x 39,999,999 RGBA PNG", tall_png()),
        ("6000x6000 RGBA PNG (largest accepted)", largest_accepted_png()),
    ):
        wait_ready(base)
        with PeakRSS(pid, interval=0.05) as rss, ThreadPoolExecutor(2) as ex:
            statuses = [r.status_code for r in ex.map(post, [base] * 2, [data] * 2)]
        print(f"3. two {label} at once: {statuses}, server tree peak RSS "
              f"{rss.peak / 2**20:.0f} MB")  # fmt: skip


def json_bodies(base: str) -> None:
    body = b'{"image_base64": "' + base64.b64encode(b"\0" * (20 * 2**20)) + b'"}'
    with ThreadPoolExecutor(16) as ex:
        futures = [
            ex.submit(
                requests.post,
                base + "/predict",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=600,
            )
            for _ in range(16)
        ]
        times = health_ms(base, 15, pause=0.1)
        statuses = sorted({f.result().status_code for f in futures})
    print(f"4. /health while 16 clients post {len(body) // 2**20} MB JSON bodies "
          f"(answered {statuses}): median {statistics.median(times):.0f} ms, "
          f"max {max(times):.0f} ms")  # fmt: skip


def mongodb_down(photo: bytes) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        server(f"mongodb://127.0.0.1:{free_port()}", Path(tmp) / "log") as (base, _),
        ThreadPoolExecutor(11) as ex,
    ):
        polling = ex.submit(health_ms, base, 10)
        started = time.monotonic()
        statuses = sorted({r.status_code for r in ex.map(post, [base] * 10, [photo] * 10)})
        seconds = time.monotonic() - started
        times = polling.result()
    print(f"5. MongoDB unreachable: ten concurrent requests answered {statuses} within "
          f"{seconds:.1f} s; /health median {statistics.median(times):.0f} ms, "
          f"max {max(times):.0f} ms")  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", default="1345", help="which steps to run (1 also runs 2)")
    steps = p.parse_args().steps
    print(machine())
    photo = PHOTO.read_bytes()
    if set(steps) & set("134"):
        with (
            tempfile.TemporaryDirectory() as tmp,
            server(str(Path(tmp) / "db"), Path(tmp) / "log") as (base, pid),
        ):
            wait_ready(base)
            if "1" in steps:
                scan_bombs(base, photo)
            if "3" in steps:
                memory(base, pid)
            if "4" in steps:
                json_bodies(base)
    if "5" in steps:
        mongodb_down(photo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
