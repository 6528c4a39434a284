"""What changes an embedding: the settings every cache key and centroid document names."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from anfe.centroids.errors import InvalidParameter
from anfe.centroids.vision import detectors, encoders

DEFAULT_MAX_SIDE = 800


ENCODER_NAME = "dlib_face_recognition_resnet_model_v1"


@dataclass(frozen=True)
class EmbeddingSettings:
    """Everything that changes an embedding, part of every cache key and centroid document; and
    the encoder that computes it, which is part of neither (see :meth:`key`).
    """

    model: str = "small"  # landmark model: "small" (5 points) or "large" (68 points)
    jitters: int = 1
    detector: str = detectors.DEFAULT_DETECTOR  # "hog" or "cnn"
    upsample: int | None = None  # None: the detector's default (hog 1, cnn 0)
    max_side: int = DEFAULT_MAX_SIDE
    cropped: bool = False
    encoder: str = field(default_factory=encoders.default_encoder)  # "onnx" or "dlib"

    def __post_init__(self) -> None:
        encoders.check(self.encoder)
        detectors.check(self.detector)
        if self.upsample is None:
            object.__setattr__(self, "upsample", detectors.default_upsample(self.detector))
        if self.model not in ("small", "large"):
            raise InvalidParameter(f"landmark model must be 'small' or 'large', not {self.model!r}")
        if not 1 <= self.jitters <= 100:
            raise InvalidParameter("jitters must be between 1 and 100")
        if not isinstance(self.upsample, int) or not 0 <= self.upsample <= 3:
            raise InvalidParameter("upsample must be between 0 and 3")
        if self.max_side < 64:
            raise InvalidParameter("max_side must be at least 64 pixels")

    def key(self) -> str:
        """A short stable string naming these settings, used in embedding cache ids.

        It does not name the encoder: the ONNX port and dlib give the same embedding within
        1.4e-6 (Euclidean, max over 2,000+ real faces, ``perf/encoder.py --equality``), far below
        the 1e-4 under which two vectors count as one. Should a converter change ever move the
        numbers beyond that, ``onnx_encoder.CONVERTER_VERSION`` is the thing to add here.
        """
        if self.cropped:
            return f"{self.model}-j{self.jitters}-cropped"
        return f"{self.model}-j{self.jitters}-{self.detector}-u{self.upsample}-s{self.max_side}"

    def describe(self) -> dict:
        """The ``embedding`` block of a centroid document."""
        d = asdict(self)
        del d["encoder"]  # same vectors either way, like the cache key
        d["model"] = ENCODER_NAME
        d["landmarks"] = self.model
        return d
