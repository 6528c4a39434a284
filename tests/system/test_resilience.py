"""What one hostile or unlucky request may cost the running service, and what it may not.

``anfe serve`` (uvicorn on 127.0.0.1, two detection workers, a 4 s image budget) gets the crafted
files of :mod:`perf.crafted`, clients that go away, and workers killed with SIGKILL. Each test
checks a functional bound with a generous timeout; the timing targets themselves are printed by
``perf/resilience.py``.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import os
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

from anfe.app.concurrency import connection_backstop
from anfe.centroids.storage.store import Store
from perf.common import PeakRSS
from perf.crafted import deep_json, huge_int_json, scan_bomb, tall_png
from tests.helpers import db_holding, free_port, running_server, server_pid, wait_until

pytestmark = pytest.mark.slow

BUDGET = 4.0
CONCURRENCY = 8
BOMB = scan_bomb(6000)  # ~25-60 s of decoding without a budget


@pytest.fixture(scope="module")
def server(tmp_path_factory, small_centroids_doc):
    """(base URL, server pid, log path) of ``anfe serve`` with two detection workers."""
    folder = tmp_path_factory.mktemp("resilience")
    db = db_holding(folder, small_centroids_doc)
    log = folder / "server.log"
    env = {"ANFE_IMAGE_BUDGET_SECONDS": str(BUDGET), "ANFE_TIMEOUT_HEADERS": "2"}
    args = ("--no-seed", "--cpu-workers", "2", "--log-level", "info")
    args += ("--timeout-body", "2", "--limit-concurrency", str(CONCURRENCY))
    with running_server(db, log, *args, env=env) as base:
        wait_until(lambda: health(base)["workers_ready"] == 2, "two ready workers")
        yield base, server_pid(base), log


def health(base: str) -> dict:
    return requests.get(base + "/health", timeout=30).json()


def workers(pid: int) -> list[psutil.Process]:
    """The detection worker processes of the server: the children of its fork server."""
    kids = psutil.Process(pid).children(recursive=True)
    forkservers = [p for p in kids if "forkserver" in " ".join(p.cmdline())]
    return [w for f in forkservers for w in f.children()]


def post(base: str, data: bytes, timeout: float = 120) -> requests.Response:
    return requests.post(base + "/predict", files={"file": ("x.jpg", data)}, timeout=timeout)


def all_ready(base: str) -> None:
    wait_until(lambda: health(base)["workers_ready"] == 2, "both workers to be ready", 120)


def test_scan_bomb_is_stopped_at_its_budget_with_422(server):
    base, _, _ = server
    all_ready(base)
    started = time.monotonic()
    resp = post(base, BOMB)
    took = time.monotonic() - started
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "image_over_budget"
    assert took < BOMB_BUDGET_BOUND, f"answered after {took:.1f} s"


# budget + grace + the hand-over, with room for a busy 2-core machine; the bomb alone takes 25 s+
BOMB_BUDGET_BOUND = BUDGET + 12


def test_photo_is_answered_while_two_scan_bombs_are_abandoned(server, lfw_male):
    base, _, log = server
    all_ready(base)

    def abandon() -> None:
        try:
            post(base, BOMB, timeout=1.5)
        except requests.Timeout:
            pass

    with ThreadPoolExecutor(2) as ex:
        list(ex.map(lambda _: abandon(), range(2)))
    started = time.monotonic()
    resp = post(base, lfw_male.read_bytes())
    took = time.monotonic() - started
    assert resp.status_code == 200 and resp.json()["faces"][0]["gender"] == "male"
    # both workers were freed (killed and replaced) instead of decoding the bombs for 25 s+
    assert took < 20, f"the photo waited {took:.1f} s behind two abandoned bombs"
    wait_until(lambda: log.read_text().count("client went away") >= 2, "the two aborts logged")


def test_worker_killed_while_idle_is_replaced_and_reported(server, lfw_female):
    base, pid, _ = server
    all_ready(base)
    before = health(base)["workers_replaced"]
    victim = workers(pid)[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    # /health notices without any request touching the dead worker
    wait_until(
        lambda: health(base)["workers_replaced"] == before + 1, "the death to be reported", 10
    )
    resp = post(base, lfw_female.read_bytes())  # the next innocent request is not hurt
    assert resp.status_code == 200, resp.text
    all_ready(base)
    assert victim.pid not in [w.pid for w in workers(pid)]


def test_only_the_request_whose_worker_died_is_told(server):
    base, pid, _ = server
    all_ready(base)
    procs = workers(pid)
    assert len(procs) == 2
    cpu_before = {p.pid: sum(p.cpu_times()[:2]) for p in procs}
    results: list[requests.Response] = []

    def send() -> None:
        results.append(post(base, BOMB))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    # both workers busy with a bomb, then one of them dies
    wait_until(
        lambda: all(sum(p.cpu_times()[:2]) - cpu_before[p.pid] > 0.3 for p in procs),
        "both workers to be busy",
        BUDGET,
    )
    os.kill(procs[0].pid, signal.SIGKILL)
    for t in threads:
        t.join()
    codes = sorted((r.status_code, r.json()["error"]["code"]) for r in results)
    assert codes == [(422, "image_over_budget"), (503, "worker_failed")]


def test_client_leaving_mid_upload_is_one_log_line_not_a_500(server):
    base, _, log = server
    port = int(base.rsplit(":", 1)[1])
    before = log.read_text().count("\n")
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
                b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
                + b"\xff\xd8\xff" + b"x" * 5000
            )  # fmt: skip
            time.sleep(0.3)  # the server is reading the body when the client leaves
    wait_until(lambda: log.read_text().count("during the upload") >= 3, "the aborts to be logged")
    new = log.read_text().splitlines()[before:]
    assert not [line for line in new if "Traceback" in line or "ERROR" in line], new
    assert len([line for line in new if "during the upload" in line]) == 3


def test_tall_png_sent_twice_keeps_the_server_under_its_memory_ceiling(server):
    """1 x 39,999,999 RGBA (291 KB) is under the pixel limit; Pillow would hold 40 M rows."""
    base, pid, _ = server
    all_ready(base)
    png = tall_png()
    with PeakRSS(pid, interval=0.05) as rss, ThreadPoolExecutor(2) as ex:
        answers = list(ex.map(lambda _: post(base, png), range(2)))
    for resp in answers:
        assert resp.status_code == 413, resp.text
        assert resp.json()["error"]["code"] == "image_too_large"
    print(f"server tree peak RSS with two 1 x 39,999,999 PNGs: {rss.peak / 2**20:.0f} MB")
    assert rss.peak < MEMORY_CEILING


MEMORY_CEILING = 1.5 * 2**30  # SECURITY.md: the server tree with two detection workers


@pytest.mark.parametrize(
    "body",
    [deep_json(), huge_int_json(inside_object=False), huge_int_json(), b'{"image_base64": 1e999}'],
    ids=["nested-100000-deep", "5000-digit-integer", "object-holding-one", "infinite-float"],
)
def test_hostile_json_body_gets_a_4xx(server, body):
    base, _, _ = server
    resp = requests.post(
        base + "/predict", data=body, headers={"Content-Type": "application/json"}, timeout=60
    )
    assert 400 <= resp.status_code < 500, resp.text
    assert resp.json()["error"]["code"] in ("malformed_request", "invalid_parameter")


def test_unreachable_mongodb_fails_parallel_requests_fast_and_health_at_once(tmp_path, lfw_male):
    """Each look at a MongoDB with no server takes its 3 s timeout: ten requests must share one
    look (and the failure be remembered), not queue for ten; /health must not wait for it."""
    port = free_port()  # nothing listens there
    with running_server(f"mongodb://127.0.0.1:{port}", tmp_path / "server.log") as base:
        photo = lfw_male.read_bytes()
        health_seconds = []

        def poll_health() -> None:
            for _ in range(5):
                t = time.monotonic()
                assert requests.get(base + "/health", timeout=60).status_code == 503
                health_seconds.append(time.monotonic() - t)
                time.sleep(0.5)

        started = time.monotonic()
        with ThreadPoolExecutor(11) as ex:
            polling = ex.submit(poll_health)
            answers = list(ex.map(lambda _: post(base, photo, timeout=120), range(10)))
            polling.result()
        took = time.monotonic() - started
    assert [r.status_code for r in answers] == [503] * 10
    assert {r.json()["error"]["code"] for r in answers} == {"database_unavailable"}
    assert took < 15, f"ten requests took {took:.1f} s (one 3 s look each would be 30 s)"
    assert max(health_seconds) < 2, health_seconds  # the target, < 0.1 s, is printed by perf


def without_root_file_powers() -> None:
    """In the child before exec: drop root's power to write files whatever their mode."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP; fails harmlessly when not root


def test_read_only_database_folder_is_served(tmp_path, small_centroids_doc, lfw_female):
    db = tmp_path / "db"
    with Store(str(db)) as s:
        s.put_centroids(small_centroids_doc)
    modes = {p: p.stat().st_mode for p in [db, *db.rglob("*")]}
    for p in modes:
        p.chmod(modes[p] & ~0o222)
    try:
        with running_server(
            str(db), tmp_path / "server.log", "--no-seed", preexec_fn=without_root_file_powers
        ) as base:
            assert requests.get(base + "/health", timeout=30).json()["database"]["ok"] is True
            resp = post(base, lfw_female.read_bytes())
            assert resp.status_code == 200, resp.text
            assert resp.json()["faces"][0]["gender"] == "female"
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def connect(base: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=30)


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Read until the server closes the connection or ``seconds`` pass: (closed, what came)."""
    sock.settimeout(seconds)
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
        return True, got
    except TimeoutError:
        return False, got
    except ConnectionResetError:
        return True, got


def test_slow_headers_are_cut_off(server):
    base, _, _ = server
    with connect(base) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        closed, _ = closed_within(sock, 20)
    assert closed, "a connection without complete headers stayed open"


def test_body_that_stops_arriving_gets_408(server):
    base, _, _ = server
    with connect(base) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n"
            b"Content-Type: application/json\r\n\r\n" + b"{" + b" " * 1023
        )
        closed, answer = closed_within(sock, 20)
    assert closed and answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request_timeout" in answer


@contextlib.contextmanager
def uploads_in_progress(base: str, n: int):
    """``n`` uploads to /predict that keep sending a byte every 0.5 s and never finish."""
    socks = [connect(base) for _ in range(n)]
    done = threading.Event()

    def trickle() -> None:
        while not done.wait(0.5):
            for sock in socks:
                sock.sendall(b" ")

    for sock in socks:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
            b"Content-Type: application/json\r\n\r\n{"
        )
    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        for sock in socks:
            sock.close()


def test_requests_past_the_concurrency_limit_get_a_json_503_and_health_still_answers(server):
    base, _, _ = server
    all_ready(base)
    with uploads_in_progress(base, CONCURRENCY):
        busy = lambda: requests.get(base + "/centroids", timeout=30)  # noqa: E731
        wait_until(lambda: busy().status_code == 503, "the uploads to be in progress", 30)
        resp = busy()
        assert resp.status_code == 503
        assert resp.headers["Content-Type"] == "application/json"
        assert resp.headers["Retry-After"] == "1"
        assert resp.json()["error"]["code"] == "server_busy"
        assert str(CONCURRENCY) in resp.json()["error"]["message"]
        assert requests.get(base + "/health", timeout=30).status_code == 200
        assert requests.head(base + "/health", timeout=30).status_code == 200
    wait_until(lambda: busy().status_code == 200, "recovery once the uploads are gone")


def test_connections_past_uvicorns_backstop_get_503(server):
    base, _, _ = server
    idle = [connect(base) for _ in range(connection_backstop(CONCURRENCY))]  # no headers yet
    try:
        time.sleep(0.5)
        resp = requests.get(base + "/health", timeout=30)
        assert resp.status_code == 503
    finally:
        for sock in idle:
            sock.close()
    wait_until(lambda: requests.get(base + "/health", timeout=30).status_code == 200, "recovery")


def test_head_on_the_page_and_health_answers_200(server):
    base, _, _ = server
    all_ready(base)
    for path in ("/", "/health"):
        resp = requests.head(base + path, timeout=30)
        assert resp.status_code == 200, (path, resp.status_code)
        assert not resp.content


def test_page_carries_a_content_security_policy_and_no_sniffing(server):
    base, _, _ = server
    page = requests.get(base + "/", timeout=30)
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
    [script] = re.findall(r"<script>(.*?)</script>", page.text, flags=re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy  # the page's own script runs, no other inline one
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    for resp in (page, requests.get(base + "/health", timeout=30), post(base, b"not an image")):
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"


def test_no_traceback_or_500_in_the_log(server):
    _, _, log = server
    text = log.read_text()
    assert "Traceback" not in text
    assert " 500" not in text
