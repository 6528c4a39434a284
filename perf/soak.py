"""Soak test: many mixed requests against ``anfe serve`` on 127.0.0.1; statuses and memory.

Starts ``anfe serve --workers W --cpu-workers 1`` on a free local port with a small centroid set
built from UTKFace, then sends N requests from C concurrent clients: real LFW photos (200 with
faces) mixed with the bad-input corpus of ``perf/badinputs.py`` (400/413/415) and bad
parameters, unknown sets, listings and health checks. Every request has one expected status.
Prints the status counts, unexpected answers, latency, and the resident memory of the server's
whole process tree before and after a warm-up and at the end. Exits 1 on any unexpected status
or RSS growth of 10% or more after warm-up.

    .venv/bin/python perf/soak.py --requests 3000 --clients 8 --workers 2
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("ANFE_TEST_DATA", ROOT.parent / "shared" / "data")).resolve()

from perf.badinputs import make_corpus  # noqa: E402
from perf.common import tree_rss  # noqa: E402


@dataclass(frozen=True)
class Req:
    kind: str
    method: str
    path: str
    expect: int
    file: tuple[str, bytes] | None = None


def requests_mix(n_photos: int, seed: int) -> list[Req]:
    """The menu of requests, drawn uniformly: with 40 photos, 55% photos, 31% corpus files (a
    third of them decodable odd formats, answered 200), 14% other requests."""
    rng = random.Random(seed)
    lfw = sorted((DATA / "lfw" / "actresses").glob("*/*.jpg")) + sorted(
        (DATA / "lfw" / "actors").glob("*/*.jpg")
    )
    photos = rng.sample(lfw, n_photos)
    good = [Req("photo", "POST", "/predict", 200, (p.name, p.read_bytes())) for p in photos]
    corpus = make_corpus(photos[0], big_side=3000)
    bad = [
        Req(f"corpus:{c.name}", "POST", "/predict", c.status, (c.filename, c.data)) for c in corpus
    ]
    other = [
        Req("health", "GET", "/health", 200),
        Req("centroids", "GET", "/centroids", 200),
        Req("unknown_set", "GET", "/centroids/g_999", 404),
        Req("bad_param", "POST", "/predict?max_faces=0", 422, good[0].file),
        Req("no_route", "GET", "/nothing", 404),
    ]
    return good + bad + other * 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_db(folder: Path, per_gender: int) -> str:
    from anfe.centroids.builder.sets import BuildSpec, build
    from anfe.centroids.storage.store import Store

    db = str(folder / "db")
    with Store(db) as s:
        spec = BuildSpec(DATA / "utkface", [per_gender], seed=0, min_age=18)
        build(spec, s, progress=False, jobs=2, log=lambda *_: None)
    return db


def send(session: requests.Session, base: str, req: Req) -> tuple[int, float]:
    t0 = time.perf_counter()
    files = {"file": (req.file[0], req.file[1], "application/octet-stream")} if req.file else None
    resp = session.request(req.method, base + req.path, files=files, timeout=300)
    resp.content  # noqa: B018 - read the whole answer
    return resp.status_code, time.perf_counter() - t0


def run_load(base: str, menu: list[Req], n: int, clients: int, seed: int):
    rng = random.Random(seed)
    plan = [rng.choice(menu) for _ in range(n)]
    local = threading.local()

    def one(req: Req):
        if not hasattr(local, "session"):
            local.session = requests.Session()
        try:
            status, dt = send(local.session, base, req)
        except requests.RequestException as exc:
            return req, -1, 0.0, type(exc).__name__
        return req, status, dt, None

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, plan))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=300, help="requests before the baseline RSS")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="uvicorn server processes")
    ap.add_argument("--photos", type=int, default=40, help="distinct LFW photos in the mix")
    ap.add_argument("--per-gender", type=int, default=30, help="UTKFace images per gender of g_N")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="anfe-soak-"))
    t = time.perf_counter()
    db = make_db(tmp, args.per_gender)
    menu = requests_mix(args.photos, args.seed)
    print(f"set-up: g_{args.per_gender} built and {len(menu)} request kinds in "
          f"{time.perf_counter() - t:.0f} s")  # fmt: skip
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ANFE_CPU_WORKERS": "1", "ANFE_REFRESH_SECONDS": "2"}
    cmd = [sys.executable, "-m", "anfe.cli", "serve", "--db", db, "--port", str(port),
           "--workers", str(args.workers), "--no-seed", "--log-level", "warning"]  # fmt: skip
    log = open(tmp / "server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                              start_new_session=True)  # fmt: skip
    mb = 1024 * 1024
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if requests.get(base + "/health", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print((tmp / "server.log").read_text(), file=sys.stderr)
                return 2
            time.sleep(0.3)
        time.sleep(2)  # let every server process finish starting its workers
        rss_start = tree_rss(server.pid)
        run_load(base, menu, args.warmup, args.clients, args.seed + 1)
        rss_warm = tree_rss(server.pid)
        t = time.perf_counter()
        results = run_load(base, menu, args.requests, args.clients, args.seed + 2)
        wall = time.perf_counter() - t
        rss_end = tree_rss(server.pid)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()

    statuses = Counter(status for _, status, _, _ in results)
    unexpected = Counter(
        (req.kind, req.expect, status, err)
        for req, status, _, err in results
        if status != req.expect
    )
    latencies = sorted(
        dt for req, status, dt, _ in results if req.kind == "photo" and status == 200
    )
    growth = (rss_end - rss_warm) / rss_warm
    print(
        f"requests: {len(results)} from {args.clients} clients against {args.workers} server "
        f"processes x 1 detector, in {wall:.0f} s ({len(results) / wall:.1f} requests/s)"
    )
    print("statuses: " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
    print(
        f"unexpected: {sum(unexpected.values())}"
        + "".join(f"\n  {k}: {n}" for k, n in unexpected.most_common(10))
    )
    if latencies:
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        print(
            f"photo latency: median {statistics.median(latencies) * 1000:.0f} ms, "
            f"p95 {p95 * 1000:.0f} ms ({len(latencies)} photos)"
        )
    print(f"server tree RSS: {rss_start / mb:.0f} MB at start, {rss_warm / mb:.0f} MB after "
          f"{args.warmup} warm-up requests, {rss_end / mb:.0f} MB at the end "
          f"({growth:+.1%} after warm-up)")  # fmt: skip
    ok = not unexpected and growth < 0.10
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
