"""How long real photos take to decode and detect: the figure the image budget is set from.

The service stops an image whose decoding plus face detection runs past
``ANFE_IMAGE_BUDGET_SECONDS`` (see ``app/pool.py``). This script times exactly that part
(``decoding.decode`` then ``faces.detect``, as ``anfe.centroids.predict.predict_image`` runs them) in one
process on real photos: a sample of LFW (250x250) and UTKFace (200x200) photos, and LFW photos
upscaled with Pillow to 1920x1080, 4000x3000 and 6000x6000 (the largest square the default pixel
limit accepts), saved as JPEG and PNG. It prints the median and the slowest of each kind and the
slowest overall. Example (the figure of docs/reliability.md)::

    .venv/bin/python perf/image_budget.py --photos 200 --large 4
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anfe.centroids.imaging import decoding
from anfe.centroids.vision import faces  # noqa: E402
from perf.common import LFW, UTKFACE, balanced_sample, machine, upscaled_dataset  # noqa: E402


def seconds(data: bytes) -> float:
    """Decode plus detection time of one image, in seconds."""
    t = time.perf_counter()
    image = decoding.decode(data)
    faces.detect(image)
    return time.perf_counter() - t


def as_png(path: Path) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    with Image.open(path) as im:
        im.save(buf, "PNG")
    return buf.getvalue()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=int, default=200, help="photos of each dataset (LFW, UTKFace)")
    p.add_argument("--large", type=int, default=4, help="upscaled photos of each large size")
    args = p.parse_args()
    faces.warm_up()
    print(machine())
    kinds: dict[str, list[float]] = {}
    for name, root in (("LFW 250x250", LFW), ("UTKFace 200x200", UTKFACE)):
        rows = balanced_sample(root, args.photos, seed=0)
        kinds[name] = [seconds((root / r["path"]).read_bytes()) for r in rows]
    rows = balanced_sample(LFW, args.large, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        for size in ((1920, 1080), (4000, 3000), (6000, 6000)):
            paths = upscaled_dataset(rows, size, Path(tmp) / f"{size[0]}x{size[1]}")
            label = f"{size[0]}x{size[1]}"
            kinds[f"{label} JPEG"] = [seconds(p.read_bytes()) for p in paths]
            kinds[f"{label} PNG"] = [seconds(as_png(p)) for p in paths]
    print(f"{'photos':<20} {'n':>4} {'median s':>9} {'slowest s':>10}")
    for name, times in kinds.items():
        print(f"{name:<20} {len(times):>4} {statistics.median(times):>9.3f} {max(times):>10.3f}")
    slowest = max(max(t) for t in kinds.values())
    print(f"slowest real photo: {slowest:.2f} s of decoding and detection")
    return 0


if __name__ == "__main__":
    sys.exit(main())
