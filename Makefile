# Two entry points, each creates .venv and installs what it needs on first use:
#   make serve   serve POST /predict on http://127.0.0.1:8000 (embedded database, shipped centroids)
#   make test    run the test suite (the tests on real photos need ../shared/data)
#   make docker  build the Docker image `anfe` (README "Docker"); make docker-test runs its tests
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install serve test lint clean constraints docker docker-test

install: $(STAMP)

$(STAMP): pyproject.toml Makefile constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# prebuilt dlib and the model weights first; face_recognition without its `dlib` requirement
	$(BIN)/python -m pip install --quiet -c constraints.txt dlib-bin face_recognition_models "setuptools<81"
	$(BIN)/python -m pip install --quiet -c constraints.txt --no-deps face_recognition==1.3.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,dask]'
	# convert dlib's face encoder to ONNX now (cached in $$ANFE_CACHE or ~/.cache/anfe), so that
	# anfe works offline and the first request does not wait for it
	$(BIN)/anfe prepare
	touch $(STAMP)

# the exact versions of a working .venv, which `make install` and the Docker image install with;
# rerun after changing a dependency in pyproject.toml (tests/project/test_constraints.py checks them)
constraints:
	$(BIN)/python -m pip freeze --all --exclude-editable | grep -v '^pip==' > constraints.txt

# make serve PORT=8080 HOST=0.0.0.0
PORT ?= 8000
HOST ?= 127.0.0.1
serve: $(STAMP)
	$(BIN)/anfe serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest

# The image, built as the Docker test builds it. Where no container registry is reachable,
# DOCKER_BASE (run as root) starts dockerd and builds a local stand-in for python:3.11-slim first;
# --network host: pip inside the build uses this machine's network and configuration.
DOCKER_BASE ?= ../shared/tools/docker-base.sh
IMAGE ?= anfe

docker:
	@if [ -f $(DOCKER_BASE) ] && ! { docker info && docker image inspect python:3.11-slim; } >/dev/null 2>&1; then \
		bash $(DOCKER_BASE); fi
	docker build --network host -t $(IMAGE) .

docker-test: $(STAMP)
	$(BIN)/python -m pytest -m docker tests/system/test_docker.py

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .anfe .pytest_cache
