"""The installed package never imports torch: the GPU kit has none, and what needs PyTorch
(training LeNet, exporting the zoo, regenerating the BiDAF stand-in) lives in tools/."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: imports every module of `package` (by walking it) with `import torch` made to fail
IMPORT_ALL = """
import importlib, pkgutil, sys
sys.modules["torch"] = None
sys.modules["torchvision"] = None
package = importlib.import_module(sys.argv[1])
failed = []
for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    try:
        importlib.import_module(info.name)
    except ImportError as exc:
        failed.append(f"{info.name}: {exc}")
print("\\n".join(failed) or "ok")
"""


def _import_all(package: str, root: Path) -> str:
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL, package], cwd=str(root), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_every_refit_core_module_imports_without_torch():
    assert _import_all("refit_core", ROOT) == "ok"


def test_the_check_fails_when_a_module_imports_torch(tmp_path):
    pkg = tmp_path / "fake_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "clean.py").write_text("import json\n")
    (pkg / "trains.py").write_text("import torch\n")
    assert _import_all("fake_pkg", tmp_path).startswith("fake_pkg.trains: ")
