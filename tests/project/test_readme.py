"""The README's samples work as written, from the repository root."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()
MADE_BY_THE_SAMPLES = {
    "/tmp/notes.jpg",
    "/tmp/truncated.jpg",
    "photo.jpg",
}  # photo.jpg: a placeholder


def test_python_sample_prints_what_the_readme_says(real_data):
    section = README.split("## Use from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    expected = [line[2:] for line in code.splitlines() if line.startswith("# ")]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == expected


def test_every_file_a_curl_sample_sends_exists_from_the_repository_root(real_data):
    commands = " ".join(re.findall(r"^curl .*(?:\n .*)*", README, re.M))
    sent = re.findall(r"@([^\s'\"]+)", commands) + re.findall(r"base64 -w0 ([^\s)]+)", commands)
    assert len(sent) >= 8
    for path in sent:
        assert path in MADE_BY_THE_SAMPLES or (ROOT / path).is_file(), path
    assert "Run\nthe `curl` commands from the repository root" in README


def test_no_install_from_a_registry_where_anfe_is_not_published():
    assert not re.search(r"pip install ['\"]?anfe\b", README)
    assert "pip install -c constraints.txt '.[dask]'" in README


def test_the_samples_write_no_file_into_the_repository():
    """Files the shell samples make (`> file`) go to /tmp, not into the folder they run from."""
    blocks = "\n".join(re.findall(r"```sh\n(.*?)```", README, re.S))
    written = re.findall(r"^[^#\n]*?[^2&]> *([^\s|;&]+)", blocks, re.M)
    assert written, "no sample writes a file: the check checks nothing"
    assert [w for w in written if not w.startswith("/tmp/")] == []


def test_quick_start_folders_exist_and_make_serve_takes_a_port(real_data):
    section = README.split("## Quick start from the command line", 1)[1].split("\n## ", 1)[0]
    folders = re.findall(r"anfe predict (\S+/) ", section)
    assert folders and all((ROOT / f).is_dir() for f in folders), folders
    makefile = (ROOT / "Makefile").read_text()
    assert "--port $(PORT)" in makefile and "make serve PORT=8080" in README
