"""The Docker image built from this checkout and run for real (marker ``docker``).

The tests run the commands of the README's Docker section, with names of their own (image tag,
containers, volume and compose project) and a free loopback port:

- the engine: ``../shared/tools/docker-base.sh`` when ``dockerd`` does not answer or the base image
  ``python:3.11-slim`` is missing (it starts ``dockerd`` and builds a local stand-in for that
  image: no container registry is reachable here);
- ``docker build --network host -t TAG .`` from this checkout;
- ``docker run -d -p 127.0.0.1:PORT:8000 -v VOLUME:/data TAG``: ``/health`` within 120 s,
  ``POST /predict`` as ``anfe predict --json`` outside the container, a non-root user, the image's
  ``HEALTHCHECK`` healthy, ``docker stop`` within 10 s with exit code 0;
- a second container on the same volume, ``--read-only`` with ``/tmp`` a tmpfs and
  ``--no-seed``, serves the sets the first one seeded;
- ``docker compose config`` of ``docker-compose.yml``; ``seed`` and ``api`` run on the embedded
  store through ``docker-compose.embedded.yml`` (MongoDB's image cannot be fetched here), the
  page answers, and ``down -v`` leaves no container or volume.

Docker needs root (or the docker group) and a running ``dockerd``: without them these tests FAIL
with one message saying so. A developer without Docker deselects them: ``-m 'not docker'``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.helpers import LFW, ROOT, free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

BASE_IMAGE = "python:3.11-slim"
BASE_SCRIPT = ROOT.parent / "shared" / "tools" / "docker-base.sh"
# one tag per checkout, so two checkouts on one machine do not build over each other's image
TAG = "anfe-test:" + hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
NAME = f"anfe-test-{os.getpid()}"  # containers, the volume and the compose project
PHOTO = "actresses/AJ_Cook/AJ_Cook_0001.jpg"
READY_SECONDS = 120  # /health must answer 200 within this after `docker run`
STOP_SECONDS = 10  # docker stop's own grace period: past it, SIGKILL (exit code 137)
HEALTHY_SECONDS = 90  # the image's HEALTHCHECK: first check after its 10 s interval
SERVICE_UID = 10001


def _fail(message: str) -> None:
    pytest.fail(message, pytrace=False)


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """``docker ARGS``; a failure (when ``check``) fails the test with docker's own words."""
    try:
        done = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        _fail(_NO_ENGINE + " (no `docker` command)")
    if check and done.returncode != 0:
        _fail(f"`docker {' '.join(args)}` exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done


_NO_ENGINE = (
    "the Docker tests need a running dockerd and the right to use it (root here; CI runs as root). "
    f"As root they start it with {BASE_SCRIPT}; deselect them with -m 'not docker'"
)


def _report(config: pytest.Config, line: str) -> None:
    """A line in pytest's own output (the build and run times the README records)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"docker: {line}")


@pytest.fixture(scope="session")
def engine() -> None:
    """``dockerd`` answers and the base image is there; made with docker-base.sh when not."""
    ok = shutil.which("docker") is not None and docker("info", check=False).returncode == 0
    if ok and docker("image", "inspect", BASE_IMAGE, check=False).returncode == 0:
        return
    if os.geteuid() != 0:
        why = "the base image is missing" if ok else "docker does not answer"
        _fail(_NO_ENGINE + f" (running as uid {os.geteuid()}, and {why})")
    if not BASE_SCRIPT.is_file():
        _fail(f"{BASE_SCRIPT} not found: it starts dockerd and builds the base image {BASE_IMAGE}")
    done = subprocess.run(
        ["bash", str(BASE_SCRIPT)], capture_output=True, text=True, timeout=1200, check=False
    )
    if done.returncode != 0:
        _fail(f"{BASE_SCRIPT} exited {done.returncode}:\n{done.stderr[-3000:]}\n{_NO_ENGINE}")


@pytest.fixture(scope="session")
def image(engine, request, tmp_path_factory) -> str:
    """The image built from this checkout, as the README says (``--network host``)."""
    log = tmp_path_factory.mktemp("docker") / "build.log"
    started = time.monotonic()
    with open(log, "w") as out:
        done = subprocess.run(
            ["docker", "build", "--network", "host", "-t", TAG, str(ROOT)],
            stdout=out, stderr=subprocess.STDOUT, timeout=1500, check=False,
        )  # fmt: skip
    seconds = time.monotonic() - started
    if done.returncode != 0:
        _fail(f"docker build exited {done.returncode}:\n{log.read_text()[-4000:]}")
    size = int(docker("image", "inspect", "-f", "{{.Size}}", TAG).stdout)
    cached = log.read_text().count("Using cache")
    _report(request.config, f"built {TAG} in {seconds:.0f} s ({cached} steps cached), "
                            f"{size / 1e6:.0f} MB")  # fmt: skip
    return TAG


@dataclass
class Container:
    name: str
    base: str  # http://127.0.0.1:PORT

    def logs(self) -> str:
        done = docker("logs", "--tail", "40", self.name, check=False)
        return done.stdout + done.stderr

    def state(self, field: str) -> str:
        return docker("inspect", "-f", "{{.State." + field + "}}", self.name).stdout.strip()


def start(image: str, name: str, *options: str, command: tuple[str, ...] = ()) -> Container:
    """``docker run -d`` with the service's port published on the loopback only."""
    port = free_port()
    docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", *options, image, *command)
    return Container(name, f"http://127.0.0.1:{port}")


def wait_ready(c: Container, seconds: float = READY_SECONDS) -> float:
    """Seconds until ``/health`` answers 200; fails with the container's log when it does not."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            if requests.get(c.base + "/health", timeout=5).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        if c.state("Running") != "true":
            _fail(f"container {c.name} exited {c.state('ExitCode')}:\n{c.logs()}")
        time.sleep(0.5)
    _fail(f"/health of {c.name} did not answer 200 within {seconds:.0f} s:\n{c.logs()}")


def remove(*names: str) -> None:
    docker("rm", "-f", "-v", *names, check=False)  # -v: anonymous volumes too, never named ones


@pytest.fixture(scope="module")
def volume(engine) -> Iterator[str]:
    """A named volume for /data, shared by the first and the second container."""
    name = f"{NAME}-data"
    docker("volume", "create", name)
    yield name
    docker("volume", "rm", "-f", name, check=False)


@pytest.fixture(scope="module")
def first(image, volume, request) -> Iterator[Container]:
    """The image as a user runs it, on an empty /data volume (it seeds the shipped sets)."""
    c = start(image, f"{NAME}-first", "-v", f"{volume}:/data")
    try:
        seconds = wait_ready(c)
        _report(request.config, f"/health answered 200 {seconds:.1f} s after docker run")
        yield c
    finally:
        remove(c.name)


def test_image_runs_the_installed_package_only_with_no_compilers_caches_or_tests(image):
    probe = r"""
import json, os, pathlib, shutil, sys, site
import anfe, anfe.centroids
from anfe.centroids.vision.encoders.onnx_encoder import cache_dir
site_dirs = site.getsitepackages()
found = lambda *ps: [p for p in ps if pathlib.Path(p).exists()]
print(json.dumps({
    "anfe": anfe.__file__, "centroids": anfe.centroids.__file__, "site": site_dirs,
    "cwd": os.getcwd(),
    "compilers": [c for c in ("gcc", "cc", "g++", "c++", "clang", "make") if shutil.which(c)],
    "pip_caches": found("/root/.cache/pip", os.path.expanduser("~/.cache/pip")),
    "sources": found("/src", "/opt/anfe/centroids", "/opt/anfe/pyproject.toml"),
    "tests": [str(p) for d in site_dirs for p in [*pathlib.Path(d).glob("anfe/**/tests"),
              pathlib.Path(d, "tests")] if p.exists()],
    "cwd_files": sorted(os.listdir(".")),
    "encoder_cache": [(p.name, p.stat().st_mode & 0o777) for p in cache_dir().glob("*.onnx")],
}))
"""
    # as root, who may look everywhere (the service's user is checked on the running service)
    done = docker("run", "--rm", "--user", "0", "--entrypoint", "python", image, "-c", probe)
    found = json.loads(done.stdout)
    # `anfe --help` loads every subcommand's entry point: a package left out of the wheel fails it
    assert "serve" in docker("run", "--rm", image, "anfe", "--help").stdout
    site = found["site"][0]
    assert found["anfe"].startswith(site) and found["centroids"].startswith(site), found
    assert found["cwd"] == "/data"
    assert "pyproject.toml" not in found["cwd_files"] and "anfe" not in found["cwd_files"], found
    assert not found["compilers"] and not found["pip_caches"], found
    assert not found["sources"] and not found["tests"], found
    # prepared at build time by root, readable by the service's user: -rw-r--r--
    assert [mode for _, mode in found["encoder_cache"]] == [0o644], found


def test_predict_in_the_container_answers_as_anfe_predict_outside(first, real_data, tmp_path):
    photo = LFW / PHOTO
    with open(photo, "rb") as fh:
        answer = requests.post(first.base + "/predict", files={"file": fh}, timeout=120)
    assert answer.status_code == 200, answer.text
    inside = answer.json()
    cli = Path(sys.executable).with_name("anfe")
    done = subprocess.run(
        [str(cli), "predict", "--json", str(photo)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    outside = json.loads(done.stdout)
    assert inside["centroids"] == outside["centroids"]
    assert len(inside["faces"]) == len(outside["faces"]) >= 1
    for a, b in zip(inside["faces"], outside["faces"], strict=True):
        assert a["box"] == b["box"]
        assert a["gender"] == b["gender"]
        for side in ("female", "male"):
            assert a["distances"][side] == pytest.approx(b["distances"][side], abs=1e-6)


def test_the_service_runs_as_a_user_other_than_root(first):
    assert docker("exec", first.name, "id", "-u").stdout.strip() == str(SERVICE_UID)
    top = docker("top", first.name, "-o", "pid,uid,args").stdout.splitlines()[1:]
    assert len(top) >= 3 and all(line.split()[1] == str(SERVICE_UID) for line in top), top


def test_the_image_healthcheck_reports_healthy(first):
    deadline = time.monotonic() + HEALTHY_SECONDS
    while (status := first.state("Health.Status")) != "healthy":
        assert status in ("starting", "healthy"), first.logs()
        assert time.monotonic() < deadline, f"still {status!r} after {HEALTHY_SECONDS} s"
        time.sleep(1)


def test_docker_stop_ends_the_service_within_10_s_with_exit_code_0(first, request):
    started = time.monotonic()
    docker("stop", first.name, timeout=60)  # SIGTERM, then SIGKILL after 10 s
    seconds = time.monotonic() - started
    _report(request.config, f"docker stop took {seconds:.1f} s")
    assert seconds < STOP_SECONDS
    assert first.state("ExitCode") == "0", first.logs()
    assert "Application shutdown complete" in first.logs()


def test_a_second_read_only_container_serves_the_sets_the_first_seeded(
    image, volume, first, real_data
):
    docker("stop", first.name, timeout=60)  # one process on the embedded database at a time
    c = start(
        image, f"{NAME}-second", "--read-only", "--tmpfs", "/tmp", "-v", f"{volume}:/data",
        command=("anfe", "serve", "--host", "0.0.0.0", "--no-seed"),
    )  # fmt: skip
    try:
        wait_ready(c)
        listed = requests.get(c.base + "/centroids", timeout=30).json()
        ids = {s["id"] for s in listed["centroids"]}
        assert {"g_1000", "g_5000", "g_5000-mahalanobis"} <= ids, listed
        with open(LFW / PHOTO, "rb") as fh:
            answer = requests.post(c.base + "/predict", files={"file": fh}, timeout=120)
        assert answer.status_code == 200 and answer.json()["faces"], answer.text
        assert "Traceback" not in c.logs()
    finally:
        remove(c.name)


# --- docker compose ---------------------------------------------------------------------------


def compose_command() -> list[str]:
    """``docker compose`` (the plugin) or else ``docker-compose`` (Debian's package, v1)."""
    if docker("compose", "version", check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    _fail("neither `docker compose` nor `docker-compose` is installed: apt-get install "
          "docker-compose (.ci/run does)")  # fmt: skip


def compose(*args: str, files: tuple[str, ...], env: dict, timeout: float = 300):
    cmd = [*compose_command(), "-p", NAME]
    for f in files:
        cmd += ["-f", str(ROOT / f)]
    done = subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, **env}, cwd=ROOT,
    )  # fmt: skip
    if done.returncode != 0:
        _fail(f"`{' '.join([*cmd, *args])}` exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done


MAIN = ("docker-compose.yml",)
EMBEDDED = ("docker-compose.yml", "docker-compose.embedded.yml")


def test_compose_files_are_valid(engine):
    env = {"ANFE_IMAGE": TAG, "ANFE_PORT": "8000"}
    compose("config", "-q", files=MAIN, env=env)
    services = compose("config", "--services", files=EMBEDDED, env=env).stdout.split()
    assert sorted(services) == ["api", "mongo", "seed"]


def test_compose_seed_and_api_on_the_embedded_store_answer_the_page(image, real_data):
    port = free_port()
    env = {"ANFE_IMAGE": image, "ANFE_PORT": str(port)}
    base = f"http://127.0.0.1:{port}"
    label = f"label=com.docker.compose.project={NAME}"
    try:
        seeded = compose("run", "--rm", "--no-deps", "seed", files=EMBEDDED, env=env)
        assert "g_5000-mahalanobis" in seeded.stdout, seeded.stdout
        compose("up", "-d", "--no-deps", "api", files=EMBEDDED, env=env)
        api = compose("ps", "-q", "api", files=EMBEDDED, env=env).stdout.strip()
        wait_ready(Container(api, base))
        assert docker("ps", "-q", "--no-trunc", "--filter", label).stdout.split() == [api]
        page = requests.get(base + "/", timeout=30)
        assert page.status_code == 200 and 'type="file"' in page.text
        with open(LFW / PHOTO, "rb") as fh:
            answer = requests.post(base + "/predict", files={"file": fh}, timeout=120)
        assert answer.status_code == 200 and answer.json()["faces"], answer.text
    finally:
        compose("down", "-v", files=EMBEDDED, env=env)
    for kind in ("container", "volume", "network"):
        left = docker(kind, "ls", "-q", *(["-a"] if kind == "container" else []), "--filter", label)
        assert left.stdout.split() == [], f"{kind}s left after down -v: {left.stdout}"
