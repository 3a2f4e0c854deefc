"""The package installs, and another project gets the plugin from the install alone.

`pip install .` into a fresh virtual environment (it sees this machine's site-packages for
numpy, pytest and the rest, so nothing is downloaded; `--no-deps --no-build-isolation`), then
a project with no conftest and no path to this checkout runs pytest there: the fixtures,
options and markers must come from the `pytest11` entry point, and `refit-core` must be a
command. Slow: building and installing the wheel takes some seconds.
"""
from __future__ import annotations

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
    home = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(home)
    bindir = home / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    # setuptools writes build/ and *.egg-info next to pyproject.toml: install from a copy
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
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
    assert "gate" in proc.stdout
