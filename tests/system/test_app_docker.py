"""Docker cannot run here, so check by reading that the image and compose file match the project.

The image must install dlib exactly as the Makefile does, and compose must wire the API to
MongoDB; the start-up path they use (``anfe serve``) is exercised in ``test_app_server.py``.
"""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml

from tests.helpers import ROOT

pytestmark = pytest.mark.docker


def test_dockerfile_installs_dlib_and_face_recognition_like_the_makefile():
    makefile = (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    lines = [
        line.strip()
        for line in re.findall(r"pip install --quiet (.+)", makefile)
        if "dlib" in line or "face_recognition" in line
    ]
    assert len(lines) == 2
    for line in lines:
        assert f"pip install {line}" in dockerfile, line


def test_image_and_make_install_convert_the_face_encoder_ahead_of_use():
    """So the service starts offline, and a conversion failure fails the build, not a request."""
    convert = "anfe prepare"
    assert convert in (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert convert in dockerfile
    assert dockerfile.index(convert) < dockerfile.index("USER ")  # written where root may write
    assert re.search(r"^ENV ANFE_CACHE=/opt/", dockerfile, re.M)  # not the build user's home


def test_dockerfile_runs_anfe_serve_as_a_non_root_user_with_a_healthcheck():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", dockerfile, re.M)
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in dockerfile and "/health" in dockerfile
    assert '"anfe", "serve", "--host", "0.0.0.0"' in dockerfile


def test_image_holds_every_package_the_anfe_command_loads():
    """``anfe`` loads every ``anfe.commands`` entry point: a package left out breaks the image."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    entry_points = pyproject["project"]["entry-points"]["anfe.commands"].values()
    assert {ep.split(".")[0] for ep in entry_points} <= set(packages)
    for package in packages:
        assert re.search(rf"^COPY {package} \./{package}$", dockerfile, re.M), package


def test_compose_serves_from_mongodb_after_a_one_shot_seed():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert any(v["target"] == "/data/db" for v in _volumes(services["mongo"]))
    assert set(compose["volumes"]) >= {v["source"] for v in _volumes(services["mongo"])}
    api, seed = services["api"], services["seed"]
    assert api["environment"]["ANFE_DB"] == "mongodb://mongo:27017"
    assert seed["environment"]["ANFE_DB"] == "mongodb://mongo:27017"
    assert seed["command"][:3] == ["anfe", "centroids", "seed"]
    assert api["depends_on"]["seed"]["condition"] == "service_completed_successfully"
    assert api["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert "healthcheck" in api and "healthcheck" in services["mongo"]


def _volumes(service: dict) -> list[dict]:
    out = []
    for v in service.get("volumes", []):
        source, target = v.split(":")[:2]
        out.append({"source": source, "target": target})
    return out
