"""Shared pieces of the benchmark scripts: real photo samples, large photos, the naive pipeline,
peak memory of a process tree, and plain-text tables.

Everything generated (sample folders, upscaled photos, databases) goes to a temporary folder,
never into the repository; the photos are read from ``../shared/data`` (or ``ANFE_TEST_DATA``).
"""

from __future__ import annotations

import csv
import os
import platform
import random
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ANFE_TEST_DATA", ROOT.parent / "shared" / "data")).resolve()
LFW = DATA / "lfw"
UTKFACE = DATA / "utkface"
SIZES = {"small": None, "1080p": (1920, 1080), "4000x3000": (4000, 3000)}


def machine() -> str:
    """One line naming the machine the figures come from."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.machine()} {cores} cores, Python {platform.python_version()}, "
        f"load average {load:.1f} at start"
    )


def read_rows(root: Path) -> list[dict[str, str]]:
    with open(root / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def balanced_sample(
    root: Path, n: int, seed: int = 0, min_age: int | None = None
) -> list[dict[str, str]]:
    """``n`` labelled rows, half of each gender, drawn with ``seed``."""
    rows = read_rows(root)
    if min_age is not None:
        rows = [r for r in rows if int(r.get("age") or 0) >= min_age]
    rng = random.Random(seed)
    out = []
    for i, gender in enumerate(("female", "male")):
        pool = sorted((r for r in rows if r["gender"] == gender), key=lambda r: r["path"])
        out += rng.sample(pool, n // 2 + (n % 2 if i == 0 else 0))
    return out


def link_dataset(root: Path, rows: list[dict[str, str]], out: Path) -> list[Path]:
    """A ``female/`` ``male/`` folder of symlinks to ``rows`` (no image is copied)."""
    paths = []
    for r in rows:
        link = out / r["gender"] / r["path"].replace("/", "__")
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(root / r["path"])
        paths.append(link)
    return paths


def upscaled_dataset(rows: list[dict[str, str]], size: tuple[int, int], out: Path) -> list[Path]:
    """``female/`` ``male/`` of LFW photos upscaled with Pillow to ``size`` (width, height).

    The square photo is enlarged to the full height (bicubic) and centred on a blurred,
    stretched copy of itself, so the frame looks like a photo rather than bars.
    """
    from PIL import Image, ImageFilter

    width, height = size
    paths = []
    for r in rows:
        dest = out / r["gender"] / (Path(r["path"]).stem + f"_{width}x{height}.jpg")
        paths.append(dest)
        if dest.exists():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(LFW / r["path"]) as im:
            im = im.convert("RGB")
            back = im.resize((width // 8, height // 8)).filter(ImageFilter.GaussianBlur(4))
            canvas = back.resize((width, height), Image.Resampling.BILINEAR)
            side = min(width, height)
            canvas.paste(
                im.resize((side, side), Image.Resampling.BICUBIC), ((width - side) // 2, 0)
            )
            canvas.save(dest, quality=92)
    return paths


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants (e.g. detection workers), in bytes.

    :raises psutil.Error: the process itself is gone; descendants that end meanwhile are skipped
    """
    import psutil

    proc = psutil.Process(pid)
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class PeakRSS:
    """Sample the summed RSS of a process and all its descendants every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                total = tree_rss(self.proc.pid)
            except psutil.Error:
                break
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Measured:
    """What one command cost: wall seconds, CPU seconds of its whole tree, peak RSS, stdout."""

    wall: float
    cpu: float
    peak: int
    out: str


def run_measured(
    cmd: Sequence[str], env: dict[str, str] | None = None, ok_codes: Sequence[int] = (0,)
) -> Measured:
    """Run ``cmd`` and measure it (CPU time counts every process it started and waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    with PeakRSS(proc.pid) as peak:
        out, err = proc.communicate()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in ok_codes:
        sys.stderr.write(err[-2000:])
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    return Measured(wall, cpu, peak.peak, out)


def naive_embed(path: str | Path) -> tuple[int, list[float] | None]:
    """The way a user writes it with face_recognition: full resolution, one image at a time.

    :return: (faces found, the embedding when exactly one face was found)
    """
    import face_recognition

    image = face_recognition.load_image_file(str(path))
    boxes = face_recognition.face_locations(image)
    encodings = face_recognition.face_encodings(image, boxes)
    if len(encodings) != 1:
        return len(encodings), None
    return 1, [float(v) for v in encodings[0]]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (readable as plain text too)."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    return "\n".join([line, sep, *body])


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def mib(n: int) -> float:
    return n / (1024 * 1024)
