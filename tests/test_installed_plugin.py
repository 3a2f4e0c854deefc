"""The package installs, and another project gets the plugin from the install alone.

`pip install .` into a fresh virtual environment (it sees this machine's site-packages for
numpy, pytest and the rest, so nothing is downloaded; `--no-deps --no-build-isolation`), then
a project with no conftest and no path to this checkout runs pytest there: the fixtures,
options and markers must come from the `pytest11` entry point, and `refit-core` must be a
command. Slow: building and installing the wheel takes some seconds.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(args, cwd, env=None, timeout=300):
    return subprocess.run([str(a) for a in args], cwd=str(cwd), env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, bin dir, environment) of a venv with this checkout installed as a package."""
    if importlib.util.find_spec("pip") is None:
        pytest.skip(f"pip is not installed in this Python ({sys.executable}): nothing installs the package")
    home = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(home)
    bindir = home / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    # setuptools writes build/ and *.egg-info next to pyproject.toml: install from a copy
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "refit_core", source / "refit_core",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    proc = _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-build-isolation",
                 "--no-index", "-q", source], cwd=source, env=env)
    if proc.returncode != 0 and "no such option: --python" in proc.stderr:  # pip < 22.3
        pytest.skip("this pip cannot install into another environment (--python needs pip >= 22.3)")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return python, bindir, env


@pytest.fixture
def other_project(tmp_path):
    """A project that knows nothing of this checkout: a test file and nothing else."""
    (tmp_path / "test_theirs.py").write_text(
        "import pytest\n"
        "def test_the_plugin_gives_fixtures(case_resources, pytestconfig):\n"
        "    assert pytestconfig.getoption('--refit-data-dir') == 'somewhere'\n"
        "    assert case_resources.cache_root is not None\n"
        "@pytest.mark.gpu\n"
        "def test_on_gpu():\n"
        "    pass\n")
    return tmp_path


def test_refit_core_imports_from_the_install_not_the_checkout(installed, tmp_path):
    python, _, env = installed
    proc = _run([python, "-c", "import refit_core, sys; print(refit_core.__file__)"], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    where = Path(proc.stdout.strip()).resolve()
    assert ROOT not in where.parents, f"refit_core came from the checkout ({where}), not the install"
    assert (where.parent / "assets" / "bidaf_standin.onnx").is_file(), "the package data was not installed"


def test_another_project_gets_the_plugin_from_the_entry_point(installed, other_project):
    python, _, env = installed
    proc = _run([python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--strict-markers",
                 "--data-dir=somewhere", "--refit-results", other_project / "out.json"], cwd=other_project, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 passed" in out and "1 skipped" in out, out
    assert "GPU tier" in out, "the gpu test did not skip with the plugin's reason:\n" + out


def test_without_the_entry_point_the_same_project_fails(installed, other_project):
    """The check above proves something: with plugin autoloading off, the fixtures are gone."""
    python, _, env = installed
    proc = _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=other_project,
                env=dict(env, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert proc.returncode != 0
    assert "fixture 'case_resources' not found" in proc.stdout + proc.stderr


def test_the_command_is_installed(installed, tmp_path):
    _, bindir, env = installed
    proc = _run([bindir / "refit-core", "--help"], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "gate" in proc.stdout and proc.stdout.startswith("usage: refit-core "), proc.stdout[:200]
    from refit_core import __version__
    proc = _run([bindir / "refit-core", "--version"], cwd=tmp_path, env=env)
    assert (proc.returncode, proc.stdout.strip()) == (0, f"refit-core {__version__}"), proc.stderr


# --------------------------------------------------------------------------------------
# What the package declares
# --------------------------------------------------------------------------------------
def _canonical(requirement: str) -> str:
    import re
    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _project():
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11's tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements(name):
    lines = (ROOT / name).read_text().splitlines()
    return {_canonical(line.split("#")[0]): line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()}


def _third_party_imports():
    """Top-level modules the package imports (lazy imports included), outside the standard library."""
    import ast
    found = {}
    for path in sorted((ROOT / "refit_core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top != "refit_core" and top not in sys.stdlib_module_names:
                    found.setdefault(top, path.relative_to(ROOT).as_posix())
    return found


def test_pyproject_declares_everything_the_package_imports():
    project = _project()
    declared = {_canonical(r) for r in project["dependencies"]}
    for extra in project.get("optional-dependencies", {}).values():
        declared |= {_canonical(r) for r in extra}
    imports = _third_party_imports()
    assert {"numpy", "matplotlib", "tensorrt", "pycuda"} <= set(imports), imports
    missing = {m: where for m, where in imports.items() if m.replace("_", "-") not in declared}
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"


def test_extras_licence_and_pins():
    project = _project()
    extras = project["optional-dependencies"]
    assert {_canonical(r) for r in extras["gpu"]} == {"tensorrt", "pycuda"}
    assert {_canonical(r) for r in extras["report"]} == {"matplotlib"}
    assert {"pydantic", "filelock"} <= {_canonical(r) for r in project["dependencies"]}
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text() and "Version 2.0" in (ROOT / "LICENSE").read_text()
    cpu = _requirements("requirements.txt")
    assert cpu["pydantic"] == "pydantic==2.11.7" and cpu["filelock"] == "filelock==3.16.1"
    # the CPU set pins every dependency and the CPU extras; the GPU set is the gpu extra, in the same words
    wanted = [_canonical(r) for r in project["dependencies"] + extras["report"] + extras["train"]]
    assert [name for name in wanted if name not in cpu] == []
    assert sorted(_requirements("requirements-gpu.txt").values()) == sorted(extras["gpu"])
