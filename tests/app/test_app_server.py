"""The service as users run it: ``anfe serve`` (uvicorn) on a free local port, spoken to over HTTP.

This is the start-up path the Dockerfile uses; ``mongodb://`` and embedded URIs share it.
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import threading

import pytest
import requests
from PIL import Image

from anfe.centroids.storage.store import Store
from tests.helpers import free_port, healthy, running_server, wait_until

pytestmark = pytest.mark.slow
STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")  # a log line's time


@pytest.fixture(scope="module")
def server(tmp_path_factory, small_centroids_doc):
    """(base URL, db path) of ``anfe serve`` on an embedded database holding g_60."""
    folder = tmp_path_factory.mktemp("served")
    db = str(folder / "db")
    with Store(db) as s:
        s.put_centroids(small_centroids_doc)
    with running_server(db, folder / "server.log", "--no-seed") as base:
        yield base, db


def test_uploaded_photo_answers_its_gender_with_both_distances(server, lfw_female, lfw_male):
    base, _ = server
    for photo, gender in ((lfw_female, "female"), (lfw_male, "male")):
        with open(photo, "rb") as fh:  # what `curl -F file=@photo.jpg .../predict` sends
            resp = requests.post(base + "/predict", files={"file": fh}, timeout=120)
        assert resp.status_code == 200, resp.text
        [face] = resp.json()["faces"]
        assert face["gender"] == gender
        other = "male" if gender == "female" else "female"
        assert face["distances"][gender] < face["distances"][other]


def test_health_answers_while_a_large_photo_is_classified(server, lfw_rows, lfw_female):
    base, _ = server
    lfw = lfw_female.parents[2]
    tiles = [lfw / r["path"] for r in lfw_rows[:16]]
    grid = Image.new("RGB", (1000, 1000))
    for i, path in enumerate(tiles):
        grid.paste(Image.open(path).convert("RGB"), ((i % 4) * 250, (i // 4) * 250))
    buf = io.BytesIO()
    grid.resize((2000, 2000)).save(buf, "JPEG", quality=90)
    done = threading.Event()
    result = {}

    def classify():
        resp = requests.post(
            base + "/predict?max_faces=100",
            files={"file": ("grid.jpg", buf.getvalue())},
            timeout=600,
        )
        result["status"] = resp.status_code
        result["faces"] = len(resp.json().get("faces", []))
        done.set()

    worker = threading.Thread(target=classify)
    worker.start()
    answered_meanwhile = 0
    while not done.is_set():
        health = requests.get(base + "/health", timeout=60)
        if not done.is_set():
            assert health.status_code == 200
            answered_meanwhile += 1
    worker.join()
    assert result["status"] == 200 and result["faces"] >= 8
    assert answered_meanwhile >= 3  # the event loop kept answering during detection


def test_set_built_by_another_process_is_served_without_restart(server, small_centroids_doc):
    base, db = server
    doc = {**small_centroids_doc, "_id": "g_62", "created_at": "2030-01-02T00:00:00+00:00"}
    with Store(db) as s:
        s.put_centroids(doc)
    try:
        wait_until(
            lambda: requests.get(base + "/centroids/g_62", timeout=30).status_code == 200,
            "g_62 to be served",
        )
    finally:
        with Store(db) as s:
            s.delete_centroids("g_62")


def test_upload_over_the_limit_is_refused_before_it_is_all_sent(server):
    base, _ = server
    port = int(base.rsplit(":", 1)[1])
    limit_chunks = 2000  # 2000 x 64 KB = 125 MB, far over the 20 MB default limit
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
        )
        part = (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff"
        )
        sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        chunk = b"%x\r\n%s\r\n" % (64_000, b"x" * 64_000)
        sent = 0
        try:
            while sent < limit_chunks:
                sock.sendall(chunk)
                sent += 1
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection after answering
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"image_too_large" in answer
    assert sent < limit_chunks  # the upload was cut off, not read to the end


def test_service_starts_without_its_database_and_recovers(tmp_path, small_centroids_doc, lfw_male):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the database folder should be")
    db = str(blocker / "db")
    with running_server(db, tmp_path / "server.log", "--no-seed") as base:
        health = requests.get(base + "/health", timeout=30)
        assert health.status_code == 503
        assert health.json()["database"]["ok"] is False
        resp = requests.post(base + "/predict", files={"file": lfw_male.read_bytes()}, timeout=30)
        assert resp.status_code == 503
        assert resp.json()["error"]["code"] == "database_unavailable"
        assert str(tmp_path) not in resp.text
        blocker.unlink()  # the database comes back
        with Store(db) as s:
            s.put_centroids(small_centroids_doc)
        wait_until(
            lambda: requests.get(base + "/health", timeout=30).status_code == 200,
            "the service to find its database",
        )
        resp = requests.post(base + "/predict", files={"file": lfw_male.read_bytes()}, timeout=120)
        assert resp.status_code == 200 and resp.json()["faces"][0]["gender"] == "male"


def run_anfe(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "anfe.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_serve_refuses_bad_settings_in_one_line():
    bad_port = run_anfe("serve", "--port", "70000")
    assert bad_port.returncode == 2
    assert bad_port.stderr.strip().count("\n") == 0 and "--port" in bad_port.stderr
    bad_env = run_anfe("serve", env={"ANFE_MAX_BYTES": "lots"})
    assert bad_env.returncode == 2
    assert "ANFE_MAX_BYTES" in bad_env.stderr and "Traceback" not in bad_env.stderr


@pytest.mark.parametrize("how", ["option", "variable"])
def test_serve_with_an_unknown_default_set_exits_4_before_serving(tmp_path, how):
    db = str(tmp_path / "db")
    assert run_anfe("centroids", "seed", "--db", db).returncode == 0
    args = ["serve", "--db", db, "--port", str(free_port())]
    if how == "option":
        done = run_anfe(*args, "--centroids", "g_7")
    else:
        done = run_anfe(*args, env={"ANFE_CENTROIDS": "g_7"})
    assert done.returncode == 4
    assert "anfe: serving" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("anfe: error: no centroid set with id 'g_7'")
    assert lines[0].endswith("stored: g_1000, g_2000, g_5000, g_5000-mahalanobis")


def test_serve_on_a_fresh_database_knows_the_sets_seeding_will_add(tmp_path):
    fresh = tmp_path / "fresh"
    done = run_anfe("serve", "--db", str(fresh), "--centroids", "g_7", "--port", str(free_port()))
    assert done.returncode == 4 and "stored: g_1000, g_2000" in done.stderr
    assert not fresh.exists()
    none = run_anfe("serve", "--db", str(fresh), "--centroids", "g_1000", "--no-seed",
                    "--port", str(free_port()))  # fmt: skip
    assert none.returncode == 4 and none.stderr.strip().endswith("stored: none")


def test_serve_help_has_examples():
    out = run_anfe("serve", "--help")
    assert out.returncode == 0
    assert "examples:" in out.stdout and "curl -F file=@" in out.stdout


def test_serve_keeps_serving_quietly_once_the_reader_of_its_output_has_gone(tmp_path):
    # `anfe serve | head -1`: the access lines that follow the first line meet a closed pipe
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [*[sys.executable, "-m", "anfe.cli", "serve"], "--port", str(port)]
    cmd += ["--db", str(tmp_path / "db"), "--cpu-workers", "1"]
    with open(tmp_path / "stderr.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
    try:
        first = proc.stdout.readline()
        proc.stdout.close()  # what `head -1` does once it has its line
        assert re.match(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} anfe: serving ", first), first
        assert f" anfe: serving {base} ".encode() in first

        wait_until(lambda: healthy(base), "anfe serve to answer", seconds=240)
        for _ in range(3):
            assert requests.get(base + "/centroids", timeout=30).status_code == 200
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    log_text = (tmp_path / "stderr.log").read_text()
    assert "Application startup complete" in log_text
    assert "Logging error" not in log_text and "Broken pipe" not in log_text, log_text
    lines = [line for line in log_text.splitlines() if line.strip()]
    untimed = [line for line in lines if not STAMP.match(line)]
    assert lines and not untimed, untimed  # every log line says when


def test_sigterm_stops_the_service_gracefully_with_exit_code_0(tmp_path):
    """What `docker stop` sends: the service finishes, shuts its workers down and exits 0 (not 143,
    the status of a process killed by SIGTERM, which uvicorn would leave by raising it again)."""
    port = free_port()
    cmd = [sys.executable, "-m", "anfe.cli", "serve", "--port", str(port)]
    cmd += ["--db", str(tmp_path / "db"), "--cpu-workers", "1"]
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: healthy(f"http://127.0.0.1:{port}"), "anfe serve to answer", seconds=240)
        proc.terminate()  # SIGTERM
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
    log_text = (tmp_path / "server.log").read_text()
    assert "Application shutdown complete" in log_text and "Traceback" not in log_text, log_text
