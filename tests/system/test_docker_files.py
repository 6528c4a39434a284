"""What the running image cannot show: the Dockerfile and compose files read as text.

``test_docker.py`` builds and runs the image and compose's embedded variant. These checks need no
Docker: the image installs dlib exactly as the Makefile does, and compose wires the API to MongoDB
(whose image cannot be fetched here, so that part is never run) while the embedded override
changes the store alone.
"""

from __future__ import annotations

import re

import yaml

from tests.helpers import ROOT


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
    assert api["ports"] == ["127.0.0.1:${ANFE_PORT:-8000}:8000"]  # the loopback only


def test_the_embedded_override_changes_the_store_of_seed_and_api_only():
    main = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    override = yaml.safe_load((ROOT / "docker-compose.embedded.yml").read_text())
    assert set(override["services"]) == {"seed", "api"} <= set(main["services"])
    for service in override["services"].values():
        assert service == {"environment": {"ANFE_DB": "/data/db"}, "volumes": ["anfe-data:/data"]}
    assert set(override["volumes"]) == {"anfe-data"}


def _volumes(service: dict) -> list[dict]:
    out = []
    for v in service.get("volumes", []):
        source, target = v.split(":")[:2]
        out.append({"source": source, "target": target})
    return out
