"""``anfe serve``: run the HTTP service with uvicorn."""

from __future__ import annotations

import argparse
import copy
import errno
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile

from anfe.app.metrics import MULTIPROC_ENV
from anfe.centroids.errors import CentroidsNotFound, DatabaseUnavailable, InvalidParameter
from anfe.centroids.storage.store import check_uri, default_uri, describe_uri
from anfe.centroids.vision import detectors, encoders
from anfe.cli import to_devnull
from anfe.options import add_db_option, add_detector_option, add_encoder_option

EXAMPLES = """examples:
  anfe serve                                    # http://127.0.0.1:8000, embedded database
  anfe serve --db mongodb://localhost:27017 --host 0.0.0.0 --port 8080
  anfe serve --workers 2 --cpu-workers 1        # two server processes, one detector each
  ANFE_API_KEYS=key1,key2 anfe serve            # require X-API-Key on the API routes
  anfe serve --encoder dlib                     # dlib's own encoder (default: onnx, same vectors)
  anfe serve --detector cnn                     # dlib's CNN detector (a request may ask hog)

then: curl -F file=@photo.jpg http://127.0.0.1:8000/predict
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve POST /predict, the upload page and the API docs over HTTP",
        description="Serve the HTTP API and the upload page. An empty database is first seeded "
        "with the shipped centroid sets. Other settings come from ANFE_* variables "
        "(ANFE_MAX_BYTES, ANFE_MAX_PIXELS, ANFE_API_KEYS, ...).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_db_option(p, "the centroid sets")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    p.add_argument("--workers", type=int, default=1, help="server processes (default: %(default)s)")
    p.add_argument(
        "--cpu-workers",
        type=int,
        default=None,
        help="face detection processes per server process (default: $ANFE_CPU_WORKERS or cores)",
    )
    p.add_argument(
        "--centroids",
        default=None,
        help="default centroid set (default: g_5000-mahalanobis, else the largest)",
    )
    p.add_argument("--no-seed", action="store_true", help="do not seed an empty database")
    add_detector_option(p)
    add_encoder_option(p, jitters=False)
    p.add_argument(
        "--limit-concurrency",
        type=int,
        default=None,
        help="requests in progress per server process before answering 503 server_busy; "
        "4 times as many open connections get uvicorn's own 503 "
        "(default: $ANFE_LIMIT_CONCURRENCY or 32)",
    )
    p.add_argument(
        "--timeout-keep-alive",
        type=float,
        default=None,
        help="seconds an idle kept-alive connection stays open (default: $ANFE_TIMEOUT_KEEP_ALIVE "
        "or 5)",
    )
    p.add_argument(
        "--timeout-headers",
        type=float,
        default=None,
        help="seconds for a request's line and headers to arrive (default: $ANFE_TIMEOUT_HEADERS "
        "or 10)",
    )
    p.add_argument(
        "--timeout-body",
        type=float,
        default=None,
        help="seconds without a byte of an unfinished body before 408 (default: "
        "$ANFE_TIMEOUT_BODY or 15)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (default: %(default)s)",
    )
    p.set_defaults(func=run, needs_models=True)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    if not 1 <= args.port <= 65535:
        raise InvalidParameter(f"--port must be between 1 and 65535, not {args.port}")
    if args.workers < 1 or (args.cpu_workers is not None and args.cpu_workers < 1):
        raise InvalidParameter("--workers and --cpu-workers must be at least 1")
    check_uri(args.db or default_uri())
    check_port(args.host, args.port)  # before any model or worker is loaded
    # the app reads its settings from the environment, in every server process uvicorn starts
    env = {
        "ANFE_DB": args.db,
        "ANFE_CPU_WORKERS": args.cpu_workers,
        "ANFE_CENTROIDS": args.centroids,
        "ANFE_SEED": "false" if args.no_seed else None,
        "ANFE_ENCODER": args.encoder,
        "ANFE_DETECTOR": args.detector,
        "ANFE_LIMIT_CONCURRENCY": args.limit_concurrency,
        "ANFE_TIMEOUT_KEEP_ALIVE": args.timeout_keep_alive,
        "ANFE_TIMEOUT_HEADERS": args.timeout_headers,
        "ANFE_TIMEOUT_BODY": args.timeout_body,
    }
    for name, value in env.items():
        if value is not None:
            os.environ[name] = str(value)
    from pydantic import ValidationError

    from anfe.app.concurrency import connection_backstop
    from anfe.app.protocol import HeadersDeadlineProtocol
    from anfe.app.settings import Settings

    try:
        settings = Settings()  # fail here, in one line, on a malformed ANFE_* variable
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "ANFE_" + str(err["loc"][0]).upper() if err.get("loc") else "ANFE_*"
        raise InvalidParameter(f"{name}: {err['msg']}") from None
    check_default_set(settings)  # exit 4 before serving, as `anfe predict --centroids` does
    encoders.prepare(settings.encoder)  # convert now: a failure is one line, not a dead worker
    detectors.prepare(settings.detector)
    print(
        f"{logging.Formatter().formatTime(logging.makeLogRecord({}))} "
        f"anfe: serving http://{args.host}:{args.port} ({describe_uri(settings.db)}, "
        f"{args.workers} server process(es) x {settings.cpu_workers} detector(s), "
        f"{settings.detector} detector, {settings.encoder} encoder)",
        flush=True,
    )
    metrics_dir = None
    if args.workers > 1 and not os.environ.get(MULTIPROC_ENV):
        # each server process writes its metrics there; GET /metrics adds them all up
        metrics_dir = tempfile.mkdtemp(prefix="anfe-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
    # SIGTERM (`docker stop`, systemd, Kubernetes) asks for a graceful stop: uvicorn finishes the
    # requests in flight and stops the workers, then raises the signal again, which would end the
    # process with status 143. A stop that was asked for and done is a success: exit 0.
    signal.signal(signal.SIGTERM, _stop_asked)
    try:
        uvicorn.run(
            "anfe.app.main:app_from_env",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
            log_config=log_config(args.log_level),
            http=HeadersDeadlineProtocol,
            # the service answers 503 server_busy itself (app/concurrency.py); uvicorn's limit
            # is a backstop on open connections
            limit_concurrency=connection_backstop(settings.limit_concurrency),
            timeout_keep_alive=settings.timeout_keep_alive,
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _stop_asked(signum: int, frame) -> None:
    """SIGTERM before uvicorn takes it over, or raised again by uvicorn once it has shut down."""
    raise SystemExit(0)


def check_default_set(settings) -> None:
    """Refuse a default set (``--centroids``, ``ANFE_CENTROIDS``) the database does not hold and
    seeding will not add, naming the stored sets. A database that cannot be reached now is not
    judged: the service waits for it (503 until it is back).

    :raises CentroidsNotFound: the set is not stored
    """
    cid = settings.centroids
    if not cid:
        return
    from anfe.centroids.storage import shipped
    from anfe.centroids.storage.store import Store, exists

    stored: list[str] = []
    if exists(settings.db):
        try:
            with Store(settings.db) as store:
                stored = [d["_id"] for d in store.list_centroids()]
        except DatabaseUnavailable:
            return
    if not stored and settings.seed:  # an empty database is seeded at start
        stored = [d["_id"] for d in shipped.shipped_documents()]
    if cid not in stored:
        raise CentroidsNotFound(
            f"no centroid set with id {cid!r} (--centroids); stored: {', '.join(stored) or 'none'}"
        )


def check_port(host: str, port: int) -> None:
    """Bind ``host:port`` the way uvicorn will, and let go: refuse a busy port in one line.

    :raises InvalidParameter: the address is in use, not ours to bind, or the host is unknown
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InvalidParameter(f"--host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind(address)
        except OSError as exc:
            why = (
                "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used: {exc.strerror}"
            )
            raise InvalidParameter(
                f"port {port} on {host} {why}; choose another with --port"
            ) from None


class PipeSafeHandler(logging.StreamHandler):
    """A log handler that goes quiet once the reader of its pipe has gone (``anfe serve | head -1``).

    The service keeps serving and its later lines are dropped, instead of a "Logging error"
    traceback on stderr for every access line written to the closed stdout.
    """

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], BrokenPipeError):
            to_devnull(self.stream)
        else:
            super().handleError(record)


def log_config(level: str) -> dict:
    """uvicorn's logging set-up, with the service's own ``anfe.*`` lines at ``level`` too.

    It is applied in every server process uvicorn starts, where the CLI's set-up does not reach.
    Every handler is a :class:`PipeSafeHandler`.
    """
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    pipe_safe = f"{__name__}.{PipeSafeHandler.__name__}"
    for handler in config["handlers"].values():
        handler["class"] = pipe_safe
    for formatter in config["formatters"].values():  # uvicorn's own and access lines: a time too
        if not formatter["fmt"].startswith("%(asctime)s"):
            formatter["fmt"] = "%(asctime)s " + formatter["fmt"]
    config["formatters"]["anfe"] = {
        "()": "uvicorn.logging.DefaultFormatter",
        "fmt": "%(asctime)s %(levelprefix)s %(name)s: %(message)s",
    }
    config["handlers"]["anfe"] = {
        "formatter": "anfe",
        "class": pipe_safe,
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["anfe"] = {"handlers": ["anfe"], "level": level.upper(), "propagate": False}
    return config
