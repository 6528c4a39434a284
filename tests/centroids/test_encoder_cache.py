"""The cache of the converted face encoder, shared between users.

The Docker image converts the encoder as root at build time and serves as uid 10001: the file must
be readable by another user when the umask allows, and a cached file this process cannot read is
another user's: never deleted, one clear error instead.

Root reads every file whatever its mode, and CI runs as root. So the reader runs in a child
process that gives up the two capabilities that let root ignore file permissions
(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), on a file that belongs to ``nobody`` with mode 0600: the
image's case, the other way round. As another user, the file gets mode 000 instead.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from anfe.centroids.vision.encoders.onnx_encoder import cache_entry, converted_model

NOBODY = 65534
_PR_CAPBSET_DROP = 24  # prctl(2): drop a capability from the bounding set of this process
_DAC_CAPABILITIES = (1, 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """The encoder converted into a fresh cache, under the usual umask 022."""
    previous = os.umask(0o022)
    try:
        path, was_converted = converted_model(cache=tmp_path_factory.mktemp("encoder-cache"))
    finally:
        os.umask(previous)
    assert was_converted
    return path


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_the_conversion_is_written_with_the_process_umask(tmp_path, umask, mode):
    """Not always 0600, as ``tempfile.mkstemp`` made it: under 022 every user may read it."""
    previous = os.umask(umask)
    try:
        path, _ = converted_model(cache=tmp_path / "cache")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == mode
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_cache_entry_tells_a_missing_file_from_a_readable_one(tmp_path, converted):
    assert cache_entry(tmp_path / "absent.onnx") == "missing"
    assert cache_entry(converted / "below-a-file.onnx") == "missing"  # not a folder: never there
    assert cache_entry(converted) == "readable"
    assert converted_model(cache=converted.parent) == (converted, False)


def _drop_dac_capabilities() -> None:
    """``preexec_fn`` of a root child: from then on it obeys file permissions like any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in _DAC_CAPABILITIES:
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture
def private_cache(tmp_path, converted) -> Path:
    """A cache folder whose converted encoder the children of this test may not read."""
    cache = tmp_path / "private-cache"
    cache.mkdir()
    entry = cache / converted.name
    shutil.copyfile(converted, entry)
    if os.geteuid() == 0:
        os.chown(entry, NOBODY, NOBODY)
        entry.chmod(0o600)
    else:
        entry.chmod(0o000)
    return cache


def as_another_user(code: str, cache: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a Python child that cannot read ``cache``'s file, with ANFE_CACHE=cache."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "ANFE_CACHE": str(cache)},
        preexec_fn=_drop_dac_capabilities if os.geteuid() == 0 else None,
    )  # fmt: skip


UNREADABLE = """
import asyncio, sys
from anfe.app.errors import WorkerFailed
from anfe.app.pool import CpuPool
from anfe.centroids.errors import EncoderCacheUnreadable
from anfe.centroids.vision.encoders.onnx_encoder import OnnxEncoder, converted_model

def pool():
    asyncio.run(CpuPool(1).start())

for call in (converted_model, lambda: OnnxEncoder(threads=1), pool):
    try:
        call()
    except (EncoderCacheUnreadable, WorkerFailed) as exc:
        print(exc.code, exc.message)
    else:
        sys.exit("no error")
"""


def test_an_unreadable_cache_entry_is_a_clear_error_and_is_never_deleted(private_cache):
    """The conversion, the encoder (which replaces a damaged entry) and a detection worker of the
    service each refuse it with the same message; the file is still there, whole."""
    entry = next(private_cache.iterdir())
    size = entry.stat().st_size
    done = as_another_user(UNREADABLE, private_cache)
    assert done.returncode == 0, done.stdout + done.stderr
    convert, encoder, worker = done.stdout.splitlines()
    assert convert == encoder
    code, message = convert.split(" ", 1)
    assert code == "encoder_cache_unreadable"
    assert message.startswith(f"cannot read the converted face encoder {entry.name!r}")
    assert str(private_cache) in message  # the folder, and the two ways out
    assert f"chmod a+r {private_cache}/*.onnx" in message and "set ANFE_CACHE" in message
    assert worker == f"worker_failed a detection worker did not start: {message}"
    assert [(p.name, p.stat().st_size) for p in private_cache.iterdir()] == [(entry.name, size)]


def test_anfe_prepare_refuses_an_unreadable_cache_in_one_line(private_cache):
    code = "import sys; from anfe.cli import main; sys.exit(main(['prepare']))"
    done = as_another_user(code, private_cache)
    assert done.returncode == 6, done.stderr
    assert done.stderr.startswith("anfe: error: cannot read the converted face encoder")
    assert len(done.stderr.splitlines()) == 1
    assert len(list(private_cache.iterdir())) == 1
