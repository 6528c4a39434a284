"""The 128-d face encoder a process uses: the ONNX port of dlib's network (default) or dlib.

Both compute the same embedding of the same 150x150 face chip (dlib cuts the chip in both cases;
``perf/encoder.py --equality`` measures them within 1.4e-6 of each other, Euclidean), so the
choice changes speed, not results, and the embedding cache does not name the encoder
(:meth:`centroids.EmbeddingSettings.key`). ``onnx`` runs on onnxruntime
(:mod:`anfe.centroids.vision.encoders.onnx_encoder`); ``dlib`` is ``dlib.face_recognition_model_v1``, kept as the
reference and for ``jitters`` > 1 (dlib's random jitter is not reproduced by the port).

The encoder is chosen per call (``--encoder``, ``ANFE_ENCODER``); onnxruntime's intra-op
threads are set per process with :func:`set_threads`, so that worker processes x threads = the
cores. Models load once per process and thread count, on first use or on :func:`load`. Both
encoders take the chips dlib cuts (:func:`anfe.centroids.vision.faces.face_chips`), so a worker can keep the
chips of several images, not the images, and encode them in one call.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from anfe.centroids.cpus import usable_cpus
from anfe.centroids.errors import InvalidParameter
from anfe.centroids.vision import requirements

ENCODERS = ("onnx", "dlib")
DEFAULT_ENCODER = "onnx"
ENV_VAR = "ANFE_ENCODER"
EMBEDDING_SIZE = 128

_threads = 1  # onnxruntime intra-op threads of this process (see set_threads)


def check(name: str) -> str:
    """Return ``name`` if it is an encoder we have. :raises InvalidParameter: otherwise"""
    if name not in ENCODERS:
        raise InvalidParameter(f"encoder must be one of {', '.join(ENCODERS)}, not {name!r}")
    return name


def default_encoder() -> str:
    """``$ANFE_ENCODER`` if set, else ``onnx``. :raises InvalidParameter: an unknown name"""
    name = os.environ.get(ENV_VAR) or DEFAULT_ENCODER
    if name not in ENCODERS:
        raise InvalidParameter(
            f"{ENV_VAR}={name!r}: the encoder must be one of {', '.join(ENCODERS)}"
        )
    return name


def used_for(encoder: str, jitters: int) -> str:
    """The encoder that actually runs: dlib for ``jitters`` > 1, which only dlib reproduces."""
    return "dlib" if jitters > 1 else check(encoder)


def threads_per_process(processes: int) -> int:
    """onnxruntime threads for each of ``processes`` workers, so that their product is the CPUs
    this process may use (:func:`anfe.centroids.cpus.usable_cpus`)."""
    return max(1, usable_cpus() // max(1, processes))


def set_threads(threads: int) -> None:
    """Set onnxruntime's intra-op threads for the ONNX encoder this process loads from now on."""
    global _threads
    if not 1 <= threads <= 256:
        raise InvalidParameter("encoder threads must be between 1 and 256")
    _threads = threads


@functools.cache
def _dlib_encoder():
    dlib, models = requirements.dlib_stack()
    return dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))


@functools.cache
def _onnx_encoder(threads: int):
    from anfe.centroids.vision.encoders.onnx_encoder import OnnxEncoder

    return OnnxEncoder(threads=threads)


def prepare(encoder: str) -> None:
    """Convert the ONNX model now if it is not cached, so that a failure is one clear error here
    rather than in every worker process. Nothing to do for dlib.

    :raises ModelFileInvalid, EncoderCacheUnwritable: the conversion failed
    """
    if check(encoder) == "onnx":
        from anfe.centroids.vision.encoders.onnx_encoder import converted_model

        converted_model()


def load(encoder: str, jitters: int = 1) -> None:
    """Load the encoder now rather than on the first face."""
    if used_for(encoder, jitters) == "onnx":
        _onnx_encoder(_threads)
    else:
        _dlib_encoder()


def encode_chips(chips: np.ndarray, jitters: int, encoder: str) -> np.ndarray:
    """Embed aligned face chips, all in one call.

    :param chips: uint8 RGB array (N, 150, 150, 3), cut by :func:`anfe.centroids.vision.faces.face_chips`
    :param jitters: dlib's ``num_jitters`` (> 1 runs dlib)
    :param encoder: ``onnx`` or ``dlib``
    :returns: float64 array (N, 128)
    """
    if not len(chips):
        return np.empty((0, EMBEDDING_SIZE))
    if used_for(encoder, jitters) == "onnx":
        return _onnx_encoder(_threads).encode_chips(chips)
    # dlib on a chip gives bit for bit what it gives on the image and the landmarks
    vectors = _dlib_encoder().compute_face_descriptor(list(chips), jitters)
    return np.asarray(vectors, dtype=np.float64).reshape(len(chips), EMBEDDING_SIZE)
