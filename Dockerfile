# anfe HTTP service: `docker build -t anfe . && docker run -p 8000:8000 anfe`
# (or `docker compose up` for the service with MongoDB). The dlib models ship inside the image
# (face_recognition_models); nothing is downloaded when the container runs.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# dlib-bin's wheel links libstdc++ and libgomp dynamically
RUN apt-get update \
    && apt-get install -y --no-install-recommends libstdc++6 libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/anfe

# the same three steps as the Makefile: prebuilt dlib and the model weights first, then
# face_recognition without its `dlib` requirement (that sdist would compile for 10+ minutes);
# every version pinned by constraints.txt (`make constraints`), as for `make install` and the tests
COPY constraints.txt ./
RUN pip install -c constraints.txt dlib-bin face_recognition_models "setuptools<81" \
    && pip install -c constraints.txt --no-deps face_recognition==1.3.0

COPY pyproject.toml README.md ./
COPY anfe ./anfe
COPY centroids ./centroids
COPY bench ./bench
COPY app ./app
COPY scraper ./scraper
# dlib's face encoder converted to ONNX at build time, readable by the service's user
ENV ANFE_CACHE=/opt/anfe/encoder-cache
RUN pip install -c constraints.txt . \
    && python -c "import face_recognition, anfe.app.main" \
    && anfe prepare  # fails the build if a model is missing or unconvertible

RUN useradd --system --create-home --uid 10001 anfe \
    && mkdir -p /data \
    && chown anfe:anfe /data
USER anfe

# the embedded database, used when ANFE_DB is not set to a mongodb:// URI
ENV ANFE_DB=/data/db
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=8).status != 200)"]

CMD ["anfe", "serve", "--host", "0.0.0.0", "--port", "8000"]
