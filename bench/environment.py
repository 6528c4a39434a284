"""The versions and the machine a benchmark ran on, recorded with its results."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for dist in (
        "anfe",
        "numpy",
        "dlib-bin",
        "face_recognition",
        "face_recognition_models",
        "scikit-learn",
        "matplotlib",
        "montydb",
        "pymongo",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"platform": platform.platform(), "cpu": cpu, "cores": cores}
