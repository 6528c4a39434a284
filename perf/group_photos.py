"""Generated group photos with known faces: LFW faces pasted into large canvases.

Each canvas (4000x3000 by default) holds 10-40 faces of 24-200 px (sides drawn log-uniformly,
so that small and large faces are about equally many), each a real LFW photo cut around its
face and scaled, pasted where it overlaps no other, on a blurred, stretched LFW photo (no face
survives the blur). The true box of each face is HOG's box on the LFW photo (upsampled once, at
250 px: only photos where HOG finds exactly one face are used), scaled with the photo; so a
"40 px face" is a face whose HOG box is 40 px wide at full resolution.

A detection finds a true face when its centre lies inside the true box grown by 20 % on every
side and its side is 0.5-2 times the true side (HOG's and the CNN's boxes of one face differ in
size and place; both pass); each detection finds at most one face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

Box = tuple[int, int, int, int]  # (top, right, bottom, left), inclusive right and bottom
SIZE_BINS = (24, 32, 40, 60, 80, 120, 201)


@dataclass(frozen=True)
class PoolFace:
    path: Path
    box: Box  # HOG's box on the 250 px photo


def face_pool(rows: list[dict[str, str]], root: Path, n: int) -> list[PoolFace]:
    """Up to ``n`` LFW photos (of ``rows``, in order) in which HOG finds exactly one face."""
    from anfe.centroids.vision import detectors

    pool = []
    for r in rows:
        image = np.asarray(Image.open(root / r["path"]).convert("RGB"))
        boxes = detectors.locate(image, "hog", 1)
        if len(boxes) == 1:
            pool.append(PoolFace(root / r["path"], boxes[0]))
            if len(pool) == n:
                break
    return pool


def canvas(
    pool: list[PoolFace],
    rng: np.random.Generator,
    size: tuple[int, int] = (4000, 3000),
    count: tuple[int, int] = (10, 40),
    sides: tuple[int, int] = (24, 200),
) -> tuple[np.ndarray, list[Box]]:
    """One generated group photo (uint8 RGB) and the true box of each face in it."""
    width, height = size
    with Image.open(pool[int(rng.integers(len(pool)))].path) as im:
        back = im.convert("RGB").resize((width // 8, height // 8))
    back = back.filter(ImageFilter.GaussianBlur(12)).resize((width, height), Image.BILINEAR)
    truth: list[Box] = []
    taken: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        face = pool[int(rng.integers(len(pool)))]
        top, right, bottom, left = face.box
        side = (right - left + 1 + bottom - top + 1) / 2
        scale = math.exp(rng.uniform(math.log(sides[0]), math.log(sides[1]))) / side
        with Image.open(face.path) as im:
            photo = im.convert("RGB")
        m = 0.6 * side  # forehead, chin and some of the head around HOG's box
        crop = (
            max(0, round(left - m)), max(0, round(top - m)),
            min(photo.width, round(right + m)), min(photo.height, round(bottom + m)),
        )  # fmt: skip
        piece = photo.crop(crop)
        pw, ph = max(1, round(piece.width * scale)), max(1, round(piece.height * scale))
        piece = piece.resize((pw, ph), Image.Resampling.LANCZOS)
        for _ in range(200):  # a free place, 10 px from every other face
            x, y = int(rng.integers(0, width - pw)), int(rng.integers(0, height - ph))
            if all(
                x + pw + 10 < a or c + 10 < x or y + ph + 10 < b or d + 10 < y
                for a, b, c, d in taken
            ):
                break
        else:
            continue
        taken.append((x, y, x + pw, y + ph))
        back.paste(piece, (x, y))
        fl, ft = x + (left - crop[0]) * scale, y + (top - crop[1]) * scale
        fr, fb = fl + (right - left + 1) * scale - 1, ft + (bottom - top + 1) * scale - 1
        truth.append((round(ft), round(fr), round(fb), round(fl)))
    return np.asarray(back), truth


def side(box: Box) -> float:
    top, right, bottom, left = box
    return (right - left + 1 + bottom - top + 1) / 2


def finds(detection: Box, truth: Box) -> bool:
    """Whether ``detection`` finds the face of ``truth`` (see the module's docstring)."""
    top, right, bottom, left = truth
    w, h = right - left + 1, bottom - top + 1
    cy, cx = (detection[0] + detection[2]) / 2, (detection[1] + detection[3]) / 2
    if not (left - 0.2 * w <= cx <= right + 0.2 * w and top - 0.2 * h <= cy <= bottom + 0.2 * h):
        return False
    return 0.5 <= side(detection) / side(truth) <= 2


def found(detections: list[Box], truth: list[Box]) -> list[bool]:
    """For each true face, whether a detection (each used once) finds it."""
    used: set[int] = set()
    out = []
    for t in truth:
        hit = next((j for j, d in enumerate(detections) if j not in used and finds(d, t)), None)
        if hit is not None:
            used.add(hit)
        out.append(hit is not None)
    return out
