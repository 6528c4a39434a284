"""Fuzz every route of the live service from its own OpenAPI schema with schemathesis.

``anfe serve`` runs on 127.0.0.1 (one detection worker, a database holding g_60); schemathesis
reads ``/openapi.json`` and sends generated requests, valid and invalid, to every operation:
no answer may be a 5xx, and every answer must match the status codes, content types and body
schemas the document promises. Examples are derandomized (the same requests on every run);
``ANFE_FUZZ_EXAMPLES`` sets how many per operation, half valid and half invalid (default 64,
about 290 requests in all).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from anfe.centroids.storage.store import Store
from tests.helpers import running_server

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("ANFE_FUZZ_EXAMPLES", "64"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live_schema(tmp_path_factory, small_centroids_doc):
    folder = tmp_path_factory.mktemp("fuzz")
    db = str(folder / "db")
    with Store(db) as s:
        s.put_centroids(small_centroids_doc)
    with running_server(db, folder / "server.log", "--no-seed") as base:
        yield schemathesis.openapi.from_url(base + "/openapi.json")


OPERATIONS = [
    ("GET", "/health"),
    ("POST", "/predict"),
    ("POST", "/predict/batch"),
    ("GET", "/centroids"),
    ("GET", "/centroids/{cid}"),
]


def test_schema_lists_every_operation_fuzzed(live_schema):
    listed = {(op.ok().method.upper(), op.ok().path) for op in live_schema.get_all_operations()}
    assert listed == set(OPERATIONS)


# schemathesis's own pytest plugin does not run on pytest 9 (it sets Function._nodeid), so each
# operation's strategy is driven by hypothesis directly: the same cases, the same checks
# every operation with valid requests; with invalid ones all but /health, which takes no input
# that could be invalid (no parameters, no body, no API key)
RUNS = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if p != "/health"
]


@pytest.mark.parametrize("method, path, mode", RUNS, ids=[f"{m} {p} {g.value}" for m, p, g in RUNS])
def test_no_route_answers_5xx_or_off_its_schema(live_schema, method, path, mode):
    operation = live_schema[path][method]
    calls = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES // 2,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case) -> None:
        response = case.call_and_validate(checks=CHECKS, timeout=120)
        calls.append(response.status_code)

    fuzz()
    assert calls, "no request was sent"
    assert all(status < 500 for status in calls)
    print(f"{method} {path} {mode.value}: {len(calls)} requests, statuses {sorted(set(calls))}")
