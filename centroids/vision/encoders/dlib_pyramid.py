"""dlib's image resampling for the CNN face detector, in numpy, with dlib's exact numbers.

The detector (``cnn_face_detection_model_v1``) does two kinds of resampling before its network:

- ``pyramid_up`` (only when asked to upsample): the uint8 RGB photo grows to ``2*rows + 1`` by
  ``2*cols + 2`` pixels (the rectangle ``pyramid_down<2>.rect_up`` gives, rounded), by dlib's
  bilinear ``resize_image`` for RGB images: four columns at a time in float32, truncated to
  uint8, the last columns in float64;
- ``input_rgb_image_pyramid<pyramid_down<6>>``: the photo, normalized to ``(pixel - mean)/256``
  in float32, and copies each 5/6 the size of the one before, tiled into one image
  (``create_tiled_pyramid``'s layout); each copy is the bilinear ``resize_image`` of the one
  before for float images, four columns at a time in float32.

dlib's four-column loop keeps its column positions in float32 and adds ``4 * scale`` to them at
each step, so positions drift from ``column * scale``; this module repeats the same float32 sums
(numpy's ``add.accumulate`` adds in order), so that the same source pixels and weights are used.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

MIN_LEVEL_ROWS = 5  # create_tiled_pyramid stops before a level shorter than this
PYRAMID_RATE = 5.0 / 6.0  # pyramid_down<6>: each level is (6-1)/6 of the one before


@dataclass(frozen=True)
class Rect:
    """dlib's ``rectangle``: inclusive pixel bounds."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left + 1

    @property
    def height(self) -> int:
        return self.bottom - self.top + 1


# ---------------------------------------------------------------------------------------------
# Geometry of the tiled pyramid (compute_tiled_image_pyramid_details)


def tiled_pyramid_layout(
    rows: int, cols: int, padding: int, outer_padding: int
) -> tuple[list[Rect], int, int]:
    """Where each pyramid level sits in the tiled image, and the tiled image's size.

    :returns: (level rectangles, largest first; tiled rows; tiled columns)
    """
    if rows * cols == 0:
        return [], 0, 0
    sizes = [(rows, cols)]
    nr, nc = rows, cols
    while True:
        nr, nc = math.floor(PYRAMID_RATE * nr), math.floor(PYRAMID_RATE * nc)
        if nr * nc == 0 or nr < MIN_LEVEL_ROWS:
            break
        sizes.append((nr, nc))

    first_rows, width = sizes[0]
    total_height = sum(h + padding for h, _ in sizes) - 2 * padding
    height = 0
    prev_width = 0
    for h, w in sizes:
        # the first column goes on until the next level fits beside the previous one
        if w <= width - prev_width - padding and (height - first_rows) * 2 >= (
            total_height - first_rows
        ):
            break
        height += h + padding
        prev_width = w
    height -= padding

    rects: list[Rect] = []
    y = outer_padding
    i = 0
    while y < height + outer_padding and i < len(sizes):
        h, w = sizes[i]
        rects.append(Rect(outer_padding, y, outer_padding + w - 1, y + h - 1))
        y += h + padding
        i += 1
    y -= padding
    while i < len(sizes):
        h, w = sizes[i]
        x1, y1 = outer_padding + width - 1, y - 1
        rect = Rect(x1 - (w - 1), y1 - (h - 1), x1, y1)
        first = rects[0]
        if not (
            max(first.left, rect.left) > min(first.right, rect.right)
            or max(first.top, rect.top) > min(first.bottom, rect.bottom)
        ):
            break  # it would overlap the photo: dlib drops this level and the rest
        rects.append(rect)
        y -= h + padding
        i += 1
    return rects, height + 2 * outer_padding, width + 2 * outer_padding


# ---------------------------------------------------------------------------------------------
# dlib's bilinear resize_image, four columns at a time


def _row_positions(src_rows: int, dst_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top, bottom, tb_frac float64) of each output row: ``y`` summed in float64 as dlib does."""
    y_scale = (src_rows - 1) / max(dst_rows - 1, 1)
    steps = np.full(dst_rows, y_scale, dtype=np.float64)
    steps[0] = -y_scale + y_scale
    y = np.add.accumulate(steps)
    top = np.floor(y).astype(np.int64)
    bottom = np.minimum(top + 1, src_rows - 1)
    return top, bottom, y - top


@dataclass
class _Columns:
    """Column sampling of one resize: the float32 four-lane part, then the float64 tail."""

    simd: int  # columns computed by the four-lane loop
    left: np.ndarray
    right: np.ndarray
    frac: np.ndarray  # float64: exact float32 values for the lanes, float64 for the tail


def _column_positions(src_cols: int, dst_cols: int) -> _Columns:
    x_scale = (src_cols - 1) / max(dst_cols - 1, 1)
    step = np.float32(4 * x_scale)
    iterations = dst_cols // 4 + 2  # the loop always stops by then (lane 3 passes the edge)
    lanes = []
    for k in range(4):
        start = np.float32(-4 * x_scale + k * x_scale)
        seq = np.empty(iterations, dtype=np.float32)
        seq[0] = start
        seq[1:] = step
        lanes.append(np.add.accumulate(seq, dtype=np.float32)[1:])
    xs = np.stack(lanes, axis=1)  # (iteration, lane)
    left = xs.astype(np.int32)  # truncation, as _mm_cvttps_epi32
    stop = np.nonzero(left[:, 3] + 1 >= src_cols)[0]
    n_iter = int(stop[0]) if len(stop) else iterations
    simd = 4 * n_iter
    lane_x = xs[:n_iter].reshape(-1)
    lane_left = left[:n_iter].reshape(-1).astype(np.int64)
    lane_frac = (lane_x - lane_left.astype(np.float32)).astype(np.float32)

    tail_cols = dst_cols - simd
    if tail_cols > 0:
        steps = np.full(tail_cols, x_scale, dtype=np.float64)
        steps[0] = -x_scale + simd * x_scale + x_scale
        tx = np.add.accumulate(steps)
        tail_left = np.floor(tx).astype(np.int64)
        tail_frac = tx - tail_left
    else:
        tail_left = np.empty(0, dtype=np.int64)
        tail_frac = np.empty(0, dtype=np.float64)
    left_all = np.concatenate([lane_left, tail_left])[:dst_cols]
    frac_all = np.concatenate([lane_frac.astype(np.float64), tail_frac])[:dst_cols]
    simd = min(simd, dst_cols)
    right_all = left_all + 1
    right_all[simd:] = np.minimum(right_all[simd:], src_cols - 1)
    return _Columns(simd, left_all, right_all, frac_all)


@functools.lru_cache(maxsize=256)
def _plan(src_rows: int, src_cols: int, dst_rows: int, dst_cols: int) -> tuple:
    """Gather indices and weights of one resize (cached: they depend on the sizes only).

    :returns: (four-lane columns s, flat indices of tl, tr, bl, br (dst_rows, dst_cols), their
        float32 weights for the four-lane part (dst_rows, s), tb_frac float64 (dst_rows, 1), the
        tail's lr_frac float64)
    """
    top, bottom, tb = _row_positions(src_rows, dst_rows)
    cols = _column_positions(src_cols, dst_cols)
    s = cols.simd
    index = [
        rows[:, None] * src_cols + c[None, :]
        for rows in (top, bottom)
        for c in (cols.left, cols.right)
    ]  # tl, tr, bl, br
    tb32 = tb.astype(np.float32)[:, None]
    inv_tb32 = (1.0 - tb).astype(np.float32)[:, None]
    lr = cols.frac[None, :s].astype(np.float32)
    inv_lr = np.float32(1) - lr
    weights = (inv_tb32 * inv_lr, inv_tb32 * lr, tb32 * inv_lr, tb32 * lr)
    for array in (*index, *weights):
        array.setflags(write=False)
    return s, index, weights, tb[:, None], cols.frac[s:]


def resize_float(src: np.ndarray, dst_rows: int, dst_cols: int, out: np.ndarray | None = None):
    """dlib's ``resize_image`` of a float image, on each channel of ``src`` (c, rows, cols);
    written into ``out`` (c, dst_rows, dst_cols) when given."""
    if out is None:
        out = np.empty((src.shape[0], dst_rows, dst_cols), dtype=np.float32)
    if out.size == 0 or src.size == 0:
        return out
    s, index, weights, tb, tail_frac = _plan(src.shape[1], src.shape[2], dst_rows, dst_cols)
    flat = src.reshape(src.shape[0], -1)
    tl, tr, bl, br = (np.take(flat, i, axis=1) for i in index)
    wtl, wtr, wbl, wbr = weights
    lanes = out[:, :, :s]
    np.multiply(wtl, tl[:, :, :s], out=lanes)
    lanes += wtr * tr[:, :, :s]
    lanes += wbl * bl[:, :, :s]
    lanes += wbr * br[:, :, :s]
    if s < dst_cols:
        lr = tail_frac.astype(np.float32)  # the float version keeps lr_frac in float32
        inv_lr = np.float32(1) - lr
        upper = inv_lr * tl[:, :, s:] + lr * tr[:, :, s:]  # float32
        lower = inv_lr * bl[:, :, s:] + lr * br[:, :, s:]
        out[:, :, s:] = (1 - tb) * upper + tb * lower
    return out


def resize_rgb(image: np.ndarray, dst_rows: int, dst_cols: int) -> np.ndarray:
    """dlib's ``resize_image`` of an RGB (rows, cols, 3) uint8 image (bilinear, truncated)."""
    src = np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.float32)
    out = np.empty((3, dst_rows, dst_cols), dtype=np.uint8)
    if out.size == 0 or src.size == 0:
        return out.transpose(1, 2, 0)
    s, index, weights, tb, tail_frac = _plan(src.shape[1], src.shape[2], dst_rows, dst_cols)
    flat = src.reshape(3, -1)
    tl, tr, bl, br = (np.take(flat, i, axis=1) for i in index)
    wtl, wtr, wbl, wbr = weights
    lanes = wtl * tl[:, :, :s] + wtr * tr[:, :, :s] + wbl * bl[:, :, :s] + wbr * br[:, :, :s]
    out[:, :, :s] = lanes.astype(np.int32)  # truncation, as _mm_cvttps_epi32
    if s < dst_cols:
        lr = tail_frac  # the RGB version works in float64 here
        tail = (1 - tb) * ((1 - lr) * tl[:, :, s:] + lr * tr[:, :, s:]) + tb * (
            (1 - lr) * bl[:, :, s:] + lr * br[:, :, s:]
        )
        out[:, :, s:] = tail.astype(np.int64)
    return np.ascontiguousarray(out.transpose(1, 2, 0))


def pyramid_up(image: np.ndarray) -> np.ndarray:
    """dlib's ``pyramid_up(image, pyramid_down<2>)`` of an RGB uint8 image."""
    rows, cols = image.shape[:2]
    if rows * cols == 0:
        return image[:0, :0]
    # rect_up of (0, 0, cols-1, rows-1): (p + (1.25, 0.75)) * 2, rounded to whole pixels
    right = math.floor((cols - 1 + 1.25) * 2 + 0.5)
    bottom = math.floor((rows - 1 + 0.75) * 2 + 0.5)
    return resize_rgb(image, bottom + 1, right + 1)


def tiled_pyramid(
    image: np.ndarray, mean_rgb: tuple[float, float, float], padding: int, outer_padding: int
) -> tuple[np.ndarray, list[Rect]]:
    """The input tensor of ``input_rgb_image_pyramid<pyramid_down<6>>`` for one RGB photo.

    :returns: (float32 (1, 3, rows, cols) tensor, the level rectangles in it)
    """
    rows, cols = image.shape[:2]
    rects, nr, nc = tiled_pyramid_layout(rows, cols, padding, outer_padding)
    tensor = np.zeros((3, nr, nc), dtype=np.float32)
    if not rects:
        return tensor[None], rects
    mean = np.asarray(mean_rgb, dtype=np.float32).reshape(3, 1, 1)
    level = (image.transpose(2, 0, 1).astype(np.float32) - mean) / np.float32(256.0)
    for i, rect in enumerate(rects):
        if i:
            level = resize_float(level, rect.height, rect.width)
        tensor[:, rect.top : rect.bottom + 1, rect.left : rect.right + 1] = level
    return tensor[None], rects
