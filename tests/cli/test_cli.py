"""The command line as a user meets it (CPU tier)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from refit_core.cli import build_parser
from refit_core.trt.cuda import gpu_unavailable_reason

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env_extra=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "refit_core", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_help_lists_every_subcommand():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("mnist", "fetch-mnist", "bidaf", "gate", "report", "prepare", "check", "selfcheck"):
        assert command in proc.stdout
    for moved in ("train-mnist", "zoo-export", "bidaf-splits"):  # python -m tools.<name> regenerates assets
        assert moved not in proc.stdout


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


def test_version_names_the_distribution_and_its_version():
    from refit_core import __version__
    proc = run_cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"refit-core {__version__}"


def test_a_reader_that_goes_away_gets_no_traceback():
    """`refit-core gate A B | head`: the reader closes the pipe before the table is written."""
    from refit_core.cli import SIGPIPE_EXIT
    record = sorted((ROOT / "results").glob("trt*.json"))[0]  # a committed GPU-tier record, gated against itself
    proc = subprocess.Popen([sys.executable, "-m", "refit_core", "gate", str(record), str(record)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # before the interpreter has started: every write meets a closed pipe
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == SIGPIPE_EXIT, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_usage_names_the_program_as_invoked(tmp_path):
    """`python -m refit_core` says so; the console script (any file named refit-core) says refit-core."""
    proc = run_cli("gate", "--help")
    assert proc.stdout.startswith("usage: python -m refit_core gate "), proc.stdout[:200]
    script = tmp_path / "refit-core"
    script.write_text("import sys\nfrom refit_core.cli import main\nsys.exit(main())\n")
    proc = subprocess.run([sys.executable, str(script), "gate", "--help"], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                              p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: refit-core gate "), proc.stdout[:200]
    assert "python -m refit_core" not in proc.stdout


@pytest.mark.parametrize("argv,shapes", [
    (["check", "--shapes", "input:1x3", "m.onnx"], {"input": (1, 3)}),
    (["check", "--shapes", "input:1x3", "mask:1x8", "m.onnx", "--precision", "fp16"],
     {"input": (1, 3), "mask": (1, 8)}),
    (["check", "m.onnx", "--shapes", "input:1x3"], {"input": (1, 3)}),
])
def test_check_finds_the_model_before_or_after_shapes(argv, shapes):
    """argparse leaves a model named after --shapes among the shapes; check.plan.model_and_shapes takes it out."""
    from refit_core.check.plan import model_and_shapes
    assert model_and_shapes(build_parser().parse_args(argv)) == (Path("m.onnx"), shapes)


@pytest.mark.parametrize("argv,field,expected", [
    (["report", "a.json", "--out", "D", "b.json"], "results", ["a.json", "b.json"]),
    (["gate", "--differences-only", "A", "--allow-missing", "p", "B"], "candidate", "B"),
    (["selfcheck", "-j", "2", "--", "-x", "--data-dir=D"], "pytest_args", ["-x", "--data-dir=D"]),
])
def test_options_in_any_order(argv, field, expected):
    assert getattr(build_parser().parse_args(argv), field) == expected


def test_check_with_shapes_before_the_model_reaches_the_model(tmp_path):
    """The command a user types: the model named after --shapes is the model checked."""
    missing = tmp_path / "nowhere.onnx"
    proc = run_cli("check", "--shapes", "input:1x3x8x8", str(missing))
    assert proc.returncode == 2, proc.stderr
    assert "arguments are required" not in proc.stderr and str(missing) in proc.stderr


def test_a_bad_option_still_names_itself():
    proc = run_cli("check", "--precision", "fp7", "m.onnx")
    assert proc.returncode == 2 and "invalid choice: 'fp7'" in proc.stderr and "Traceback" not in proc.stderr
