"""Helpers shared by the tests: where the real data is, and a live ``anfe serve``.

Fixtures live in ``conftest.py``; plain functions and constants that test modules import live
here, so no test imports from ``conftest``.
"""

from __future__ import annotations

import csv
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest
import requests
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from anfe.centroids.builder.datasets import Item

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ANFE_TEST_DATA", ROOT.parent / "shared" / "data")).resolve()
LFW = DATA / "lfw"
UTKFACE = DATA / "utkface"
TRAIN_PER_GENDER = 60  # images per gender of the session's small centroid set g_60


def missing_data() -> list[Path]:
    """The label files of ../shared/data that are not there (empty when the data is present)."""
    return [p for p in (LFW / "labels.csv", UTKFACE / "labels.csv") if not p.is_file()]


def require_data() -> None:
    """Fail the calling test with one clear message when the real photos are missing."""
    missing = missing_data()
    if missing:
        pytest.fail(
            f"test data not found: {', '.join(map(str, missing))}. This test needs the real "
            "photos of ../shared/data (lfw/ and utkface/) beside the repository, or "
            "ANFE_TEST_DATA pointing at such a folder.",
            pytrace=False,
        )


def read_labels(root: Path) -> list[dict[str, str]]:
    """The rows of ``root/labels.csv``."""
    with open(root / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def link(src: Path, dst: Path) -> None:
    """Put a symbolic link to ``src`` at ``dst``, creating its folders."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)


def write_labels(root: Path, rows: list[dict[str, str]], fields: list[str]) -> None:
    """Write ``root/labels.csv`` with the columns ``fields`` of ``rows``."""
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows({k: r[k] for k in fields} for r in rows)


def grouped_draw(items: Iterable[Item], cells: Iterable[tuple[int, int, int]]) -> list[Item]:
    """For each ``race`` group (sorted), gender and cell ``(lo, hi, n)`` in turn: the first ``n``
    of ``items`` of that group and gender aged lo..hi (items without a race are left out)."""
    items = [it for it in items if it.extra.get("race")]
    cells = list(cells)
    draw = []
    for race in sorted({it.extra["race"] for it in items}):
        for g in ("female", "male"):
            for lo, hi, n in cells:
                draw += [it for it in items if it.extra["race"] == race and it.gender == g
                         and lo <= int(it.extra["age"]) <= hi][:n]  # fmt: skip
    return draw


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(
    db: str, log: Path, *args: str, env: dict | None = None, preexec_fn=None
) -> Iterator[str]:
    """Start ``anfe serve`` with one detection worker; yield its base URL once it answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "anfe.cli", "serve", "--db", db, "--port", str(port)]
    cmd += ["--cpu-workers", "1", "--log-level", "warning", *args]
    full_env = {**os.environ, "ANFE_REFRESH_SECONDS": "0.5", **(env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, preexec_fn=preexec_fn
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240  # start-up on a busy 2-core machine, not a speed test
        while True:
            if proc.poll() is not None:
                pytest.fail(f"anfe serve exited with {proc.returncode}:\n{log.read_text()}")
            try:
                requests.get(base + "/health", timeout=5)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail(f"anfe serve did not start:\n{log.read_text()}")
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def db_holding(folder: Path, *docs: dict) -> str:
    """An embedded database in ``folder/db`` holding the centroid documents ``docs``."""
    from anfe.centroids.storage.store import Store

    db = str(folder / "db")
    with Store(db) as s:
        for doc in docs:
            s.put_centroids(doc)
    return db


ANFE = [sys.executable, "-m", "anfe.cli"]


def anfe(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ANFE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def healthy(base: str) -> bool:
    """Whether the service at ``base`` answers ``GET /health`` with 200 (False while it cannot be
    reached yet)."""
    try:
        return requests.get(base + "/health", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def wait_until(check, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


def samples(text: str) -> dict[tuple, float]:
    """``{(sample name, sorted labels...): value}`` of a text exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, *sorted(s.labels.items()))] = s.value
    return out


def swapped(doc: dict, created_at: str) -> dict:
    """``doc`` with its female and male centroids exchanged: every face changes side."""
    vectors = {"female": doc["vectors"]["male"], "male": doc["vectors"]["female"]}
    return {**doc, "vectors": vectors, "created_at": created_at}


def server_pid(base: str) -> int:
    port = int(base.rsplit(":", 1)[1])
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            return conn.pid
    raise AssertionError("no process listens on the server's port")


def jpeg(img: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, **save)
    return buf.getvalue()


def upload(data: bytes, name: str = "photo.jpg", kind: str = "image/jpeg") -> dict:
    return {"file": (name, data, kind)}


def assert_error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert "Traceback" not in resp.text
    return body
