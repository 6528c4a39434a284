"""One installed name, rooms by job: the package layout that pyproject.toml installs and the imports
between the project's modules (no bare package names, no circles)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGES = {
    "anfe": "anfe",
    "anfe.app": "app",
    "anfe.bench": "bench",
    "anfe.centroids": "centroids",
    "anfe.scraper": "scraper",
}
BARE = ("app", "bench", "centroids", "scraper")


def project_modules() -> dict[str, Path]:
    """``{dotted name: file}`` of every module the wheel installs."""
    out = {}
    for name, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([name, *parts])] = path
    return out


def imports_of(path: Path, module: str) -> set[str]:
    """The project modules ``path`` imports, anywhere in it but under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def test_the_package_list_names_every_package_of_the_tree():
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    on_disk = {m for m, p in project_modules().items() if p.name == "__init__.py"}
    assert listed == on_disk


def test_no_module_imports_a_bare_folder_name():
    files = [
        *project_modules().values(),
        *(ROOT / "tests").rglob("*.py"),
        *(ROOT / "perf").rglob("*.py"),
    ]
    bad = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            bad += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in BARE]
    assert bad == []


def test_no_import_circle_among_the_projects_modules():
    modules = project_modules()
    graph = {
        m: {i for i in imports_of(p, m) if i in modules and i != m and not m.startswith(i + ".")}
        for m, p in modules.items()
    }
    # a package's __init__ runs before its modules: an import of anfe.x.y also imports anfe.x
    state: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                circles.append(stack[stack.index(n) :] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert circles == []


def test_the_model_imports_neither_the_service_nor_the_command_line():
    modules = project_modules()
    for m, p in modules.items():
        if m.startswith("anfe.centroids"):
            reached = {i for i in imports_of(p, m) if i.startswith("anfe.")}
            assert not any(
                i.startswith(
                    ("anfe.app", "anfe.cli", "anfe.commands", "anfe.bench", "anfe.scraper")
                )
                for i in reached
            ), m


@pytest.mark.slow
def test_the_wheel_holds_only_anfe_at_its_top(tmp_path):
    source = tmp_path / "source"  # a copy: pip builds in the tree it is given (build/, egg-info)
    source.mkdir()
    for name in ("pyproject.toml", "README.md", *(f for f in PACKAGES.values())):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(
            ROOT / name,
            source / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if (ROOT / name).is_dir() else {}),
        )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    [wheel] = tmp_path.glob("anfe-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"anfe", next(t for t in tops if t.endswith(".dist-info"))}
    names = zipfile.ZipFile(wheel).namelist()
    assert "anfe/centroids/data/g_5000.json" in names and "anfe/app/static/index.html" in names


def test_bare_names_do_not_import_outside_the_repository_and_anfe_does(tmp_path):
    bare = subprocess.run(
        [sys.executable, "-c", "import app"], cwd=tmp_path, capture_output=True, text=True
    )
    assert bare.returncode != 0 and "No module named 'app'" in bare.stderr
    ok = subprocess.run(
        [
            sys.executable,
            "-c",
            "import anfe.app, anfe.centroids, anfe.scraper, anfe.bench; "
            "import anfe.app.main; print(anfe.app.main.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert Path(ok.stdout.strip()).is_relative_to(ROOT / "app") or "site-packages" in ok.stdout


def test_import_anfe_loads_no_model_and_touches_no_hook(tmp_path):
    code = (
        "import sys; hook = sys.excepthook; import anfe; "
        "assert sys.excepthook is hook; "
        "assert not any(m in sys.modules for m in ('dlib', 'face_recognition', 'onnxruntime', "
        "'anfe.api', 'anfe.centroids.vision.faces')), sorted(m for m in sys.modules if 'anfe' in m); "
        "print(anfe.predict.__module__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "anfe.api"


# the rooms of anfe.centroids from the ground up: a room imports only rooms below it
ROOMS = ["errors", "cpus", "vectors", "imaging", "vision", "model", "storage", "answers", "predict",
         "builder"]  # fmt: skip


def test_a_lower_room_of_the_model_never_imports_a_higher_one():
    modules = project_modules()

    def rank(m: str) -> int:
        return ROOMS.index(m.split(".")[2])

    up = [
        f"{m} -> {i}"
        for m, p in modules.items()
        if m.count(".") >= 2 and m.startswith("anfe.centroids.")
        for i in imports_of(p, m)
        if i in modules
        and i.startswith("anfe.centroids.")
        and i.count(".") >= 2
        and rank(i) > rank(m)
    ]
    assert up == []


def test_the_models_math_runs_without_dlib_onnxruntime_or_photos(tmp_path):
    code = (
        "import sys\n"
        "for name in ('dlib', 'face_recognition', 'onnxruntime', 'PIL'):\n"
        "    sys.modules[name] = None  # as if not installed\n"
        "import numpy as np\n"
        "from anfe.centroids import answers\n"
        "from anfe.centroids.model.centroid_set import CentroidSet\n"
        "rng = np.random.default_rng(0)\n"
        "f, m = rng.normal(0.1, 0.05, (40, 128)), rng.normal(-0.1, 0.05, (40, 128))\n"
        "cs = CentroidSet.from_embeddings('g_40', f, m)\n"
        "preds = cs.classify(np.vstack([f[:3], m[:3]]))\n"
        "print(' '.join(answers.classification(preds, i)['gender'] for i in range(6)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["female"] * 3 + ["male"] * 3
