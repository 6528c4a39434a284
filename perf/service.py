"""``/predict`` latency and throughput through a real ``anfe serve`` (uvicorn) on 127.0.0.1.

Steps, all in one run so the ratios are side by side:

1. builds a small centroid set (UTKFace crops) into a temporary embedded database;
2. the naive pipeline called directly in this process on the same photos:
   ``load_image_file`` → ``face_locations`` → ``face_encodings`` → nearer centroid;
3. ``anfe serve --workers 1 --cpu-workers 2`` (the default on 2 cores): sequential latency
   (p50, p95, p99) on small photos (LFW, 250x250) and large ones (LFW upscaled to 4000x3000
   with Pillow); ``/health`` latency while 8 large requests are in flight;
4. throughput (requests/s) of 8 concurrent clients on small photos against
   ``--workers 1 --cpu-workers 1`` and ``--workers 2 --cpu-workers 1`` (one detection process
   per server process) and the default; RSS of every process of each server.

Every request loop is bounded in count; the server listens on 127.0.0.1 only and is stopped
at the end. Example (the figures of docs/performance.md)::

    .venv/bin/python perf/service.py --small 40 --large 6 --requests 96

``--set-transfer N`` measures only how the centroid set reaches the detection processes, with
the default ``g_5000-mahalanobis`` (a database seeded with the shipped sets): two servers run side
by side, one with ``ANFE_WORKER_SETS=0`` (the set pickled and sent with every image, as before
the workers kept sets) and one with the default; N requests go to each, alternately, on small
LFW photos and on the same photos cut after 600 bytes (the worker receives the request, fails to
decode it and answers 400: what is left is the cost of handing a request over, set included).
Bytes sent to the workers and set transfers come from each server's ``/metrics``::

    .venv/bin/python perf/service.py --set-transfer 200
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ANFE = str(Path(sys.executable).with_name("anfe"))
CENTROIDS = "g_60"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``anfe serve`` in a subprocess on 127.0.0.1, ready once ``/health`` answers 200."""

    def __init__(
        self,
        db: Path,
        workers: int,
        cpu_workers: int,
        encoder: str | None = None,
        centroids: str = CENTROIDS,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [ANFE, "serve", "--db", str(db), "--port", str(self.port), "--no-seed"]
        cmd += ["--workers", str(workers), "--cpu-workers", str(cpu_workers)]
        cmd += ["--centroids", centroids, "--log-level", "warning"]
        cmd += ["--encoder", encoder] if encoder else []
        self.log = db.parent / (
            f"serve-{workers}x{cpu_workers}{'-' + encoder if encoder else ''}-{self.port}.log"
        )
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )
        self.label = f"--workers {workers} --cpu-workers {cpu_workers}"
        self.label += f" --encoder {encoder}" if encoder else ""
        self.workers = workers
        self.cpu_workers = cpu_workers

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"anfe serve exited: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    # with several server processes, every one must answer before we measure
                    if self.workers == 1 or self._all_workers_up():
                        return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.__exit__()
        raise SystemExit(f"anfe serve not healthy within 180 s: {self.log.read_text()[-2000:]}")

    def _all_workers_up(self) -> bool:
        """Whether every server process has its fork server and all its detection processes.

        uvicorn's supervisor spawns the server processes (``multiprocessing.spawn``); each
        starts a fork server (``multiprocessing.forkserver``, holding the models) and forks its
        ``cpu_workers`` detection processes from it, which keep the fork server's command line.
        """
        import psutil

        try:
            supervisor = psutil.Process(self.proc.pid)
            servers = [p for p in supervisor.children() if _kind(p) == "spawn"]
            detection = [len(_detection_processes(p)) for p in servers]
        except psutil.Error:  # a process came or went while we looked
            return False
        return len(servers) >= self.workers and all(n >= self.cpu_workers for n in detection)

    def rss(self) -> list[tuple[str, float]]:
        """(role, MiB) of each process of the server, named by its place in the tree."""
        import psutil

        def role(p, parent_kind: str | None) -> str:
            kind = _kind(p)
            if kind == "resource_tracker":
                return "multiprocessing resource tracker"
            if parent_kind == "forkserver":
                return "detection process"
            if kind == "forkserver":
                return "fork server (models loaded, forks the detection processes)"
            if parent_kind is None:
                return "server process" if self.workers == 1 else "uvicorn supervisor"
            return "server process (uvicorn worker)"

        out = []

        def walk(p, parent_kind: str | None) -> None:
            try:
                out.append((role(p, parent_kind), common.mib(p.memory_info().rss)))
                # a detection process has the fork server's command line: it is its child
                kind = "worker" if parent_kind == "forkserver" else _kind(p)
                for child in p.children():
                    walk(child, kind)
            except psutil.Error:
                pass

        walk(psutil.Process(self.proc.pid), None)
        return out

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by every process of the server."""
        import psutil

        root = psutil.Process(self.proc.pid)
        total = 0.0
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _kind(p) -> str:
    """Which multiprocessing entry point a process runs: ``spawn``, ``forkserver``,
    ``resource_tracker``, or ``other`` (the ``anfe serve`` command itself)."""
    cmd = " ".join(p.cmdline())
    for kind in ("resource_tracker", "forkserver", "spawn"):
        if f"from multiprocessing.{kind} import" in cmd:
            return kind
    return "other"


def _detection_processes(server) -> list:
    """The detection processes of one server process: the children of its fork server."""
    return [w for f in server.children() if _kind(f) == "forkserver" for w in f.children()]


def post(session: requests.Session, url: str, data: bytes, expect: int = 200) -> float:
    t0 = time.perf_counter()
    r = session.post(
        url + "/predict", files={"file": ("photo.jpg", data, "image/jpeg")}, timeout=300
    )
    elapsed = time.perf_counter() - t0
    if r.status_code != expect:
        raise SystemExit(f"/predict answered {r.status_code}: {r.text[:300]}")
    return elapsed


def percentiles(times: list[float]) -> list[float]:
    return [float(np.percentile(times, q)) * 1000 for q in (50, 95, 99)]


def sequential(url: str, photos: list[bytes], n: int) -> list[float]:
    with requests.Session() as s:
        post(s, url, photos[0])  # first request may pay for connection set-up
        return [post(s, url, photos[i % len(photos)]) for i in range(n)]


def concurrent(url: str, photos: list[bytes], total: int, clients: int) -> float:
    """Requests per second of ``clients`` threads sending ``total`` requests in all."""
    counter = iter(range(total))
    lock = threading.Lock()

    def client() -> None:
        with requests.Session() as s:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                post(s, url, photos[i % len(photos)])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as ex:
        for f in [ex.submit(client) for _ in range(clients)]:
            f.result()
    return total / (time.perf_counter() - t0)


def health_under_load(url: str, heavy: bytes, clients: int, probes: int) -> list[float]:
    """``/health`` latencies measured while ``clients`` large requests are in flight."""
    with ThreadPoolExecutor(clients) as ex:
        futures = [ex.submit(post, requests.Session(), url, heavy) for _ in range(clients)]
        # let every heavy request reach the server; with the ONNX encoder 8 large photos take
        # ~1.5 s on 2 cores in all, so probe often enough to land several probes in that time
        time.sleep(0.3)
        times = []
        for _ in range(probes):
            if all(f.done() for f in futures):
                break
            t0 = time.perf_counter()
            r = requests.get(url + "/health", timeout=30)
            times.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise SystemExit(f"/health answered {r.status_code} under load")
            time.sleep(0.05)
        in_flight_at_end = sum(not f.done() for f in futures)
        for f in futures:
            f.result()
    print(f"  /health probed {len(times)} times; {in_flight_at_end} heavy requests still in flight")
    return times


def naive_predict(data: bytes, cs) -> float:
    import face_recognition

    t0 = time.perf_counter()
    image = face_recognition.load_image_file(io.BytesIO(data))
    boxes = face_recognition.face_locations(image)
    vectors = face_recognition.face_encodings(image, boxes)
    if vectors:
        cs.classify(np.asarray(vectors))
    return time.perf_counter() - t0


def metrics(url: str) -> dict[str, float]:
    """The server's unlabelled counters, by sample name (``anfe_worker_sent_bytes_total``, ...)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(url + "/metrics", timeout=30).text
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.labels
    }


def set_transfer(work: Path, n: int, clients_photos: int) -> None:
    """``/predict`` with g_5000-mahalanobis: the set sent with every image against kept sets."""
    import pickle

    from anfe.centroids.storage import shipped
    from anfe.centroids.storage.store import Store

    cid = shipped.DEFAULT_CENTROIDS
    db = work / "db-shipped"
    with Store(str(db)) as store:
        shipped.seed(store)
        cs = shipped.load_centroid_set(store, cid)
    blob = pickle.dumps(cs, protocol=pickle.HIGHEST_PROTOCOL)
    t0 = time.perf_counter()
    for _ in range(100):
        pickle.loads(pickle.dumps(cs, protocol=pickle.HIGHEST_PROTOCOL))
    round_trip = (time.perf_counter() - t0) / 100 * 1000
    print(f"{cid} pickled: {len(blob):,} bytes; pickle + unpickle in one process: "
          f"{round_trip:.2f} ms\n")  # fmt: skip

    rows = common.balanced_sample(common.LFW, clients_photos, 7)
    small = [(common.LFW / r["path"]).read_bytes() for r in rows]

    # (photos, the status the worker answers them with)
    kinds = {
        "small 250x250": (small, 200),
        "JPEG cut at 600 bytes (400)": ([d[:600] for d in small], 400),
    }
    cores = len(os.sched_getaffinity(0))
    variants = {"set with every image (ANFE_WORKER_SETS=0)": "0", "sets kept (default)": None}
    servers = {
        name: Server(db, 1, cores, centroids=cid, env={"ANFE_WORKER_SETS": v} if v else None)
        for name, v in variants.items()
    }
    rows_out, per = [], {}
    try:
        for server in servers.values():
            server.__enter__()
        sessions = {name: requests.Session() for name in servers}
        for kind, (photos, status) in kinds.items():
            for name, server in servers.items():  # warm: every worker loads the set once
                for d in photos[: 2 * cores]:
                    post(sessions[name], server.url, d, status)
            before = {name: (metrics(s.url), s.cpu_seconds()) for name, s in servers.items()}
            times: dict[str, list[float]] = {name: [] for name in servers}
            for i in range(n):  # alternate, so both servers see the same machine
                for name, server in servers.items():
                    data = photos[i % len(photos)]
                    times[name].append(post(sessions[name], server.url, data, status))
            for name, server in servers.items():
                m0, c0 = before[name]
                m1 = metrics(server.url)
                images = m1["anfe_worker_images_total"] - m0["anfe_worker_images_total"]
                sent = m1["anfe_worker_sent_bytes_total"] - m0["anfe_worker_sent_bytes_total"]
                sets = m1["anfe_worker_set_transfers_total"] - m0["anfe_worker_set_transfers_total"]
                cpu = (server.cpu_seconds() - c0) / n * 1000
                p50, p95, _ = percentiles(times[name])
                mean = float(np.mean(times[name])) * 1000
                per[(kind, name)] = (sent / images, p50, mean, cpu)
                rows_out.append([kind, name, n, sets, sent / images, p50, p95, mean, cpu])
    finally:
        for server in servers.values():
            server.__exit__()
    print(
        common.table(
            ["photos", "server", "requests", "set transfers", "bytes to worker/request",
             "p50 ms", "p95 ms", "mean ms", "server CPU ms/request"],
            rows_out,
        )
    )  # fmt: skip
    print()
    old, new = variants
    ratios = []
    for kind in kinds:
        (b0, p0, m0, c0), (b1, p1, m1, c1) = per[(kind, old)], per[(kind, new)]
        ratios.append([kind, b0 / b1, p0 / p1, m0 / m1, c0 / c1, m0 - m1])
    print(
        common.table(
            ["photos", "bytes/request: before / kept", "p50: before / kept",
             "mean: before / kept", "CPU/request: before / kept", "mean ms saved"],
            ratios,
        )
    )  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--small", type=int, default=40, help="LFW photos (default: %(default)s)")
    ap.add_argument("--large", type=int, default=6, help="4000x3000 photos (default: 6)")
    ap.add_argument("--requests", type=int, default=96, help="requests per throughput run")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--naive-large", type=int, default=4, help="naive calls on large photos")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument(
        "--set-transfer",
        type=int,
        default=0,
        metavar="N",
        help="only measure how g_5000-mahalanobis reaches the workers: N requests per server "
        "and photo size (the set sent with every image, against sets kept by the workers)",
    )
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="anfe-bench-service-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {common.machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"work folder: {work}\n")
    if args.set_transfer:
        set_transfer(work, args.set_transfer, args.small)
        return 0

    # a centroid set to serve, built from real crops into a fresh embedded database
    db = work / "db"
    utk = common.link_dataset(
        common.UTKFACE, common.balanced_sample(common.UTKFACE, 140, 5, min_age=18), work / "utk"
    )
    del utk
    common.run_measured(
        [ANFE, "build", str(work / "utk"), "--sizes", "60", "--cropped", "--no-progress"]
        + ["--db", str(db)]
    )
    from anfe.centroids.storage import shipped
    from anfe.centroids.storage.store import Store

    with Store(str(db)) as store:
        cs = shipped.load_centroid_set(store, CENTROIDS)

    small_rows = common.balanced_sample(common.LFW, args.small, 7)
    small = [(common.LFW / r["path"]).read_bytes() for r in small_rows]
    large_paths = common.upscaled_dataset(
        common.balanced_sample(common.LFW, args.large, 8), (4000, 3000), work / "large"
    )
    large = [p.read_bytes() for p in large_paths]

    print("naive pipeline, called directly ...", flush=True)
    naive_predict(small[0], cs)  # load the models first
    naive_small = [naive_predict(d, cs) for d in small]
    naive_large = [naive_predict(d, cs) for d in large[: args.naive_large]]

    lat_rows, rss_rows, thr_rows = [], [], []
    lat_rows.append(["naive, direct call", "small 250x250", len(small), *percentiles(naive_small)])
    lat_rows.append(
        ["naive, direct call", "4000x3000", len(naive_large), *percentiles(naive_large)]
    )

    cores = len(os.sched_getaffinity(0))
    default = (1, cores)
    configs = [(1, 1), (2, 1)] + ([default] if default not in [(1, 1), (2, 1)] else [])
    health: list[float] = []
    for workers, cpu in [default, *[c for c in configs if c != default]]:
        with Server(db, workers, cpu) as server:
            print(f"anfe serve {server.label} ...", flush=True)
            if (workers, cpu) == default:
                s_small = sequential(server.url, small, len(small))
                s_large = sequential(server.url, large, len(large))
                name = f"anfe serve {server.label}"
                lat_rows.append([name, "small 250x250", len(s_small), *percentiles(s_small)])
                lat_rows.append([name, "4000x3000", len(s_large), *percentiles(s_large)])
                health = health_under_load(server.url, large[0], args.clients, 20)
            concurrent(server.url, small, args.clients * 2, args.clients)  # warm every worker
            c0, t0 = server.cpu_seconds(), time.perf_counter()
            rps = concurrent(server.url, small, args.requests, args.clients)
            cpu, wall = server.cpu_seconds() - c0, time.perf_counter() - t0
            thr_rows.append(
                [
                    server.label,
                    args.clients,
                    args.requests,
                    rps,
                    cpu / wall,
                    1000 * cpu / args.requests,
                ]
            )
            for role, size in server.rss():
                rss_rows.append([server.label, role, size])

    print()
    print(common.table(["pipeline", "photos", "requests", "p50 ms", "p95 ms", "p99 ms"], lat_rows))
    ratio = lat_rows[1][3] / lat_rows[3][3]
    print(f"\np50 on 4000x3000: naive / anfe serve = {ratio:.1f}x")
    base = thr_rows[[r[0] for r in thr_rows].index("--workers 1 --cpu-workers 1")][3]
    for r in thr_rows:
        r.append(r[3] / base)
    print()
    print(
        common.table(
            [
                "server",
                "clients",
                "requests",
                "requests/s",
                "cores the server got (CPU/wall)",
                "server CPU ms/request",
                "requests/s vs --workers 1 --cpu-workers 1",
            ],
            thr_rows,
        )
    )
    print()
    print(common.table(["server", "process", "RSS MiB"], rss_rows))
    if health:
        print()
        print(
            common.table(
                ["/health while 8 large requests in flight", "value"],
                [
                    ["probes", len(health)],
                    ["p50 ms", float(np.percentile(health, 50)) * 1000],
                    ["max ms", max(health) * 1000],
                ],
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
