"""The command line as a user meets it (CPU tier)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from refit_core.cli import build_parser
from refit_core.trt.cuda import gpu_unavailable_reason


def run_cli(*args: str, env_extra=None):
    import os
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "refit_core", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_help_lists_every_subcommand():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("mnist", "train-mnist", "bidaf", "gate", "report"):
        assert command in proc.stdout


@pytest.mark.parametrize("command", ["mnist", "bidaf", "gate", "report"])
def test_subcommand_help(command):
    proc = run_cli(command, "--help")
    assert proc.returncode == 0 and "usage:" in proc.stdout


def test_parser_rejects_unknown_subcommand():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["nonsense"])


@pytest.mark.skipif(gpu_unavailable_reason() is None, reason="this machine has a GPU and TensorRT")
def test_mnist_without_gpu_says_what_is_missing_in_one_sentence(mnist_dir):
    proc = run_cli("mnist", "--data-dir", str(mnist_dir))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("refit_core: cannot run on this machine:")
    assert "TensorRT" in lines[0] or "pycuda" in lines[0] or "GPU" in lines[0]


@pytest.mark.skipif(gpu_unavailable_reason() is None, reason="this machine has a GPU and TensorRT")
def test_bidaf_without_gpu_says_what_is_missing():
    proc = run_cli("bidaf")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "cannot run on this machine" in proc.stderr


def test_mnist_without_data_dir_names_the_option_and_variable(tmp_path):
    proc = run_cli("mnist", env_extra={"REFIT_DATA_DIR": ""})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--data-dir" in proc.stderr and "REFIT_DATA_DIR" in proc.stderr


def test_mnist_with_missing_directory_names_it(tmp_path):
    missing = tmp_path / "nowhere"
    proc = run_cli("mnist", "--data-dir", str(missing))
    assert proc.returncode != 0 and str(missing) in proc.stderr and "Traceback" not in proc.stderr
