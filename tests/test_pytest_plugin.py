"""The pytest plugin, loaded into throwaway projects with pytester (CPU tier).

These check the plugin's own mechanics: markers for any project, stable test ids whatever
directory pytest starts in, the --refit-baseline forms and the rootdir guard, and that a
baseline without a GPU run ends with exit 2. No TensorRT is involved or claimed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from refit_core.pytest_session import rootdir_hijacked

PROJECT = Path(__file__).resolve().parents[1]
IDS_CONFTEST = """
import json
from refit_core.pytest_session import refit_session
def pytest_sessionfinish(session):
    ids = sorted(refit_session(session.config).stable_ids.values())
    print("STABLE_IDS=" + json.dumps(ids))
"""


@pytest.fixture
def project(pytester, monkeypatch):
    """A small project that loads the plugin with -p, as an installed entry point would."""
    monkeypatch.setenv("PYTHONPATH", str(PROJECT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.delenv("REFIT_DATA_DIR", raising=False)
    monkeypatch.delenv("CI", raising=False)
    pytester.makeini("[pytest]\ntestpaths = tests\naddopts = --strict-markers -p refit_core.pytest_plugin\n")
    tests = pytester.mkpydir("tests")
    (tests / "test_a.py").write_text(
        "import pytest\n"
        "def test_cpu():\n    pass\n"
        "@pytest.mark.gpu\ndef test_on_gpu():\n    pass\n"
        "@pytest.mark.parametrize('x', ['a/b', 'tests/c'])\ndef test_param(x):\n    pass\n")
    (pytester.path / "conftest.py").write_text(IDS_CONFTEST)
    return pytester


def _ids_in(lines):
    found = [line.split("STABLE_IDS=", 1)[1] for line in lines if "STABLE_IDS=" in line]
    assert found, "\n".join(lines[-30:])
    return json.loads(found[-1])


def _ids(result):
    return _ids_in(result.outlines)


def test_markers_are_registered_for_any_project(project):
    result = project.runpytest_subprocess()
    result.assert_outcomes(passed=3, skipped=1)
    assert "not found in `markers`" not in result.stdout.str()


def test_gpu_tests_skip_naming_what_is_missing(project):
    result = project.runpytest_subprocess("-rs")
    result.stdout.fnmatch_lines(["*SKIPPED*GPU tier: *"])


def test_test_ids_do_not_depend_on_where_pytest_starts(project):
    here = _ids(project.runpytest_subprocess())
    parent = project.path.parent
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "refit_core.pytest_plugin",
                           f"--rootdir={parent}", "-c", str(project.path / "tox.ini"),
                           str(project.path / "tests")], cwd=parent, capture_output=True, text=True,
                          env=dict(os.environ))
    there = _ids_in(proc.stdout.splitlines() + proc.stderr.splitlines())
    assert here == there == ["tests/test_a.py::test_cpu", "tests/test_a.py::test_on_gpu",
                             "tests/test_a.py::test_param[a/b]", "tests/test_a.py::test_param[tests/c]"]


def test_baseline_without_a_gpu_run_exits_2_with_one_sentence(project, tmp_path):
    base = tmp_path / "elsewhere" / "base.json"
    base.parent.mkdir()
    base.write_text("{}")
    result = project.runpytest_subprocess(f"--refit-baseline={base}")
    assert result.ret == 2
    result.stdout.fnmatch_lines(["refit_core: --refit-baseline was given, but no GPU test ran (*): there is no "
                                 "evidence to compare with the baseline"])
    from refit_core.trt.cuda import gpu_unavailable_reason
    assert gpu_unavailable_reason() in result.stdout.str()  # what is missing here: TensorRT, or the driver


def test_baseline_outside_the_project_as_a_separate_argument_is_refused(project, tmp_path):
    base = tmp_path / "elsewhere" / "base.json"
    base.parent.mkdir()
    base.write_text("{}")
    # -p on the command line loads the plugin before pytest's final parse, as an installed entry point does
    result = project.runpytest_subprocess("-p", "refit_core.pytest_plugin", "--refit-baseline", str(base))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*refit_core: pytest took its rootdir (*) from the path {base} given after "
                                 f"--refit-baseline, so the project's configuration was not read; "
                                 f"write the option as --refit-baseline={base} (with '=')*"])
    assert "passed" not in result.stdout.str()


def test_baseline_inside_the_project_works_in_both_forms(project):
    (project.path / "results").mkdir()
    (project.path / "results" / "base.json").write_text("{}")
    for args in (["--refit-baseline", "results/base.json"], ["--refit-baseline=results/base.json"]):
        result = project.runpytest_subprocess(*args)
        assert result.ret == 2, result.stdout.str()  # no GPU here: nothing to compare
        assert _ids(result)[0] == "tests/test_a.py::test_cpu"
        assert "rootdir: " + str(project.path) in result.stdout.str()


@pytest.mark.parametrize("form,test_path", [("equals", True), ("separate", True), ("equals", False),
                                            ("separate", False)])
def test_this_suite_keeps_its_configuration_or_refuses(tmp_path, form, test_path):
    """Run on refit_core's own tree as a user would (plugin loaded by conftest.py), with a
    baseline outside the project. Whenever it runs, the rootdir, pytest.ini and the ids are
    the project's; the one form pytest cannot be kept from misreading (a separate argument
    and no test path) must refuse to run."""
    base = tmp_path / "x" / "base.json"
    base.parent.mkdir()
    base.write_text("{}")
    opt = ["--refit-baseline", str(base)] if form == "separate" else [f"--refit-baseline={base}"]
    paths = ["tests/trt/test_compat_cpu.py"] if test_path else []
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *opt,
                           *paths], cwd=PROJECT, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    if form == "separate" and not test_path:
        assert proc.returncode == pytest.ExitCode.USAGE_ERROR, out
        assert "rootdir: " in out and f"rootdir: {PROJECT}\n" not in out, out  # the rootdir moved away
        assert "tests collected" not in out
    else:  # configuration intact; no GPU here, so the baseline has nothing to be compared with: exit 2
        assert proc.returncode == 2, out
        assert "no GPU test ran" in out
        assert "tests/trt/test_compat_cpu.py::" in out and "PytestUnknownMarkWarning" not in out


@pytest.mark.parametrize("rootpath,inipath,invocation,anchors,values,moved", [
    ("/tmp/x", None, "/proj", ["/proj"], ["/tmp/x/b.json"], "/tmp/x/b.json"),
    ("/proj", "/proj/pytest.ini", "/proj", ["/proj/tests"], ["/proj/results/b.json"], None),
    ("/proj", "/proj/pytest.ini", "/tmp", ["/proj/tests"], ["/proj/results/b.json"], None),
    ("/work", None, "/work/main", ["/work/main"], ["/work/other/b.json"], "/work/other/b.json"),
    ("/other", "/other/pytest.ini", "/proj", ["/proj"], ["/other/b.json"], "/other/b.json"),
    ("/proj", None, "/proj", ["/proj"], ["/proj/results/b.json"], None),
    ("/proj", "/proj/pytest.ini", "/proj", ["/proj"], [], None),
])
def test_rootdir_guard_rule(rootpath, inipath, invocation, anchors, values, moved):
    got = rootdir_hijacked(Path(rootpath), Path(inipath) if inipath else None, Path(invocation),
                           [Path(a) for a in anchors], [Path(v) for v in values])
    assert got == (Path(moved) if moved else None)


def test_modules_that_skip_or_fail_to_import_are_recorded_with_the_reason(project):
    tests = project.path / "tests"
    (tests / "test_skips.py").write_text("import pytest\npytest.importorskip('no_such_module_here')\n")
    (tests / "test_broken.py").write_text("import no_such_module_either\n")
    (project.path / "conftest.py").write_text(
        "import json\nfrom refit_core.pytest_session import refit_session\n"
        "def pytest_sessionfinish(session):\n"
        "    print('REC=' + json.dumps(refit_session(session.config).get_recorder().to_dict()['tests']))\n")
    result = project.runpytest_subprocess()
    line = [l for l in result.outlines if "REC=" in l][-1]
    tests_record = json.loads(line.split("REC=", 1)[1])
    assert tests_record["tests/test_skips.py"] == {
        "outcome": "skipped", "reason": "could not import 'no_such_module_here': No module named 'no_such_module_here'"}
    assert tests_record["tests/test_broken.py"]["outcome"] == "failed"
    assert "no_such_module_either" in tests_record["tests/test_broken.py"]["reason"]


def test_benchmark_json_names_the_suite_commit(project, tmp_path, monkeypatch):
    monkeypatch.setenv("REFIT_SUITE_GIT_COMMIT", "f" * 40)
    monkeypatch.setenv("REFIT_SUITE_GIT_DIRTY", "false")
    (project.path / "tests" / "test_bench.py").write_text(
        "def test_b(benchmark):\n    benchmark.pedantic(lambda: None, rounds=2)\n")
    out = tmp_path / "bench.json"
    result = project.runpytest_subprocess(f"--benchmark-json={out}", "tests/test_bench.py")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    info = json.loads(out.read_text())["refit_core"]
    assert info["git_commit"] == "f" * 40 and info["git_dirty"] is False and len(info["source_sha256"]) == 64


# ---- profiles: which GPU tests run, what is built ahead, what the record says ------------------
#: the registered cases the default profile keeps: every FP32 case, MNIST for FP16 and TF32
DEFAULT_PROFILE_CASES = {"mnist", "bidaf-standin", "bidaf-original", "tiny-mlp", "mobilenet-v3-small",
                         "transformer-encoder", "mnist-fp16", "mnist-tf32"}
PROFILE_TESTS = """
import pytest
pytestmark = pytest.mark.gpu
def test_case(case_engine):
    pass
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_precision(precision):
    pass
@pytest.mark.full_profile
def test_slow_benchmark():
    pass
def test_plain():
    pass
"""
SELECTION_CONFTEST = """
import json
from refit_core.pytest_session import refit_session
def pytest_sessionfinish(session):
    state = refit_session(session.config)
    print("SELECTED=" + json.dumps({"ids": [i.nodeid for i in session.items], "needed": state.needed_cases}))
"""


@pytest.fixture
def profiled(project):
    (project.path / "tests" / "test_profiles.py").write_text(PROFILE_TESTS)
    (project.path / "conftest.py").write_text(SELECTION_CONFTEST)
    return project


def _selected(result):
    found = [line.split("SELECTED=", 1)[1] for line in result.outlines if line.startswith("SELECTED=")]
    assert found, "\n".join(result.outlines[-30:])
    return json.loads(found[-1])


def _case_ids(ids):
    return {i.split("[", 1)[1].rstrip("]") for i in ids if "test_case[" in i}


def test_the_default_profile_keeps_fp32_and_one_case_per_precision(profiled):
    from refit_core.cases import registry
    result = profiled.runpytest_subprocess("--collect-only", "-q", "-m", "gpu", "tests/test_profiles.py")
    ids = _selected(result)["ids"]
    assert _case_ids(ids) == DEFAULT_PROFILE_CASES
    assert "tests/test_profiles.py::test_precision[fp32]" in ids
    assert "tests/test_profiles.py::test_precision[fp16]" not in ids
    assert "tests/test_profiles.py::test_slow_benchmark" not in ids
    assert "tests/test_profiles.py::test_plain" in ids
    left = len(registry.names()) - len(DEFAULT_PROFILE_CASES) + 2  # the FP16 precision test, the slow one
    result.stdout.fnmatch_lines([f"refit_core: profile default: {left} GPU test(s) deselected, "
                                 "left to --refit-profile full"])


@pytest.mark.parametrize("args, env", [(["--refit-profile", "full"], None), ([], "full")])
def test_the_full_profile_runs_the_whole_matrix(profiled, monkeypatch, args, env):
    from refit_core.cases import registry
    if env:
        monkeypatch.setenv("REFIT_PROFILE", env)
    result = profiled.runpytest_subprocess("--collect-only", "-q", "-m", "gpu", *args, "tests/test_profiles.py")
    ids = _selected(result)["ids"]
    assert _case_ids(ids) == set(registry.names())
    assert len(ids) == len(registry.names()) + 4
    result.stdout.fnmatch_lines(["refit_core: profile full: the whole case x precision matrix and the slow builds"])


@pytest.mark.parametrize("args, env, said", [
    (["--refit-profile=fast"], None, "--refit-profile 'fast' is not a profile; choose one of default, full"),
    ([], "everything", "$REFIT_PROFILE 'everything' is not a profile; choose one of default, full")])
def test_an_unknown_profile_is_a_usage_error(profiled, monkeypatch, args, env, said):
    if env:
        monkeypatch.setenv("REFIT_PROFILE", env)
    result = profiled.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ERROR: refit_core: {said}" in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_the_builds_ahead_cover_only_the_selected_tests_cases(profiled):
    """needed_cases (what the builds ahead build) follows the final selection: the profile's,
    then -k's."""
    default = _selected(profiled.runpytest_subprocess("--collect-only", "-q", "-m", "gpu"))["needed"]
    assert set(default) == DEFAULT_PROFILE_CASES
    narrowed = _selected(profiled.runpytest_subprocess("--collect-only", "-q", "-m", "gpu", "-k", "tiny"))["needed"]
    assert narrowed == ["tiny-mlp"]
    full = _selected(profiled.runpytest_subprocess("--collect-only", "-q", "--refit-profile=full", "-k", "tiny"))
    assert set(full["needed"]) == {"tiny-mlp", "tiny-mlp-fp16", "tiny-mlp-tf32"}


RECORD_CONFTEST = """
import pytest
import refit_core.pytest_plugin as plugin
from refit_core.pytest_session import refit_session

def _provenance(state):  # what provenance_of reads from TensorRT, which this machine lacks
    return {"suite_version": "0", "git_commit": None, "git_dirty": None, "source_sha256": "0" * 64,
            "command_line": ["pytest"], "hypothesis_profile": "ci", "tensorrt_build": {},
            "tactic_setting": "default", "started": state.started}

plugin.provenance_of = _provenance

@pytest.fixture(autouse=True)
def _as_if_on_a_gpu(request):
    refit_session(request.config).gpu_used = True
"""
RECORD_TESTS = """
import time
import pytest
def test_case(refit_case):
    time.sleep(0.05)
def test_bench(benchmark):
    benchmark.pedantic(lambda: time.sleep(0.05), rounds=1)
def test_other():
    pass
"""


def test_the_record_gets_the_profile_and_where_the_time_went(project, tmp_path):
    (project.path / "conftest.py").write_text(RECORD_CONFTEST)
    (project.path / "tests" / "test_a.py").write_text(RECORD_TESTS)
    out = tmp_path / "record.json"
    result = project.runpytest_subprocess(f"--refit-results={out}", "-k", "tiny-mlp-fp16 or bench or other")
    result.assert_outcomes(passed=3)
    profile, phases = _profile_and_phases(json.loads(out.read_text()))
    assert profile == "default"  # tiny-mlp-fp16 is not a GPU test here: kept
    assert set(phases) == {"builds_ahead", "case.tiny-mlp-fp16", "benchmarks", "other_tests", "total"}
    assert phases["case.tiny-mlp-fp16"] >= 0.05 and phases["benchmarks"] >= 0.05
    assert phases["total"] >= phases["case.tiny-mlp-fp16"] + phases["benchmarks"]
    result.stdout.fnmatch_lines(["*refit_core: where the time went (profile default)*",
                                 "case.tiny-mlp-fp16 * s", "total * s"])
    full = project.runpytest_subprocess(f"--refit-results={out}", "--refit-profile=full", "-k", "other")
    full.stdout.fnmatch_lines(["refit_core: --refit-profile full took * s"])
    assert _profile_and_phases(json.loads(out.read_text()))[0] == "full"


def _profile_and_phases(record):
    """The record's profile and phases: top-level sections where the recorder has them (branch
    `record`), else under `extra` (this branch's minimal recorder methods)."""
    if "profile" in record:
        return record["profile"], record["phases"]
    return record["extra"]["profile"], record["extra"]["phases"]


# --------------------------------------------------------------------------------------
# The plugin as its peers behave: options, markers, fixtures, --benchmark-only
# --------------------------------------------------------------------------------------
def _refit_core_help_options(text):
    """The option lines of the refit_core group in `pytest --help`: each one's first flag."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("refit_core (TensorRT refit verification)"))
    flags = []
    for line in lines[start + 1:]:
        if line and not line.startswith(" "):
            break  # the next group
        if line.startswith("  -"):
            flags.append(line.split()[0].split("=")[0].rstrip(","))
    return flags


def test_every_plugin_option_is_refit_prefixed(project):
    result = project.runpytest_subprocess("--help")
    flags = _refit_core_help_options(result.stdout.str())
    assert "--refit-data-dir" in flags and len(flags) > 5, flags
    assert [f for f in flags if not f.startswith("--refit-")] == []


@pytest.mark.parametrize("spelling", ["--refit-data-dir", "--data-dir"])
def test_the_data_dir_option_and_its_former_name(project, spelling):
    (project.path / "tests" / "test_opt.py").write_text(
        "def test_opt(pytestconfig):\n    assert pytestconfig.getoption('--refit-data-dir') == 'D'\n")
    result = project.runpytest_subprocess(f"{spelling}=D", "tests/test_opt.py")
    result.assert_outcomes(passed=1)


def test_markers_are_listed_once_in_this_suite():
    """pytest.ini and the plugin each registering `gpu` made `pytest --markers` list it twice."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "--markers", "-p", "no:cacheprovider"], cwd=PROJECT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for marker in ("gpu", "slow", "serial", "trt_feature"):
        listed = [line for line in proc.stdout.splitlines() if line.startswith(f"@pytest.mark.{marker}")]
        assert len(listed) == 1, (marker, listed)


def test_every_plugin_fixture_has_a_docstring(project):
    import refit_core.pytest_fixtures as fixtures_module
    result = project.runpytest_subprocess("--fixtures")
    lines = result.stdout.str().splitlines()
    names = [name for name, value in vars(fixtures_module).items()  # pytest < 8.4 | >= 8.4
             if hasattr(value, "_pytestfixturefunction") or type(value).__name__ == "FixtureFunctionDefinition"]
    assert "case_engine" in names and "trt_logger" in names, names
    undocumented = []
    for name in names:
        at = [i for i, line in enumerate(lines) if line.startswith(f"{name} [") or line.split(" ")[0] == name]
        assert at, f"pytest --fixtures does not show {name}"
        if "no docstring available" in lines[at[0] + 1]:
            undocumented.append(name)
    assert undocumented == []


def test_benchmark_only_deselects_the_rest_in_one_line(project):
    (project.path / "tests" / "test_bench.py").write_text(
        "def test_b(benchmark):\n    benchmark.pedantic(lambda: None, rounds=2)\n")
    result = project.runpytest_subprocess("--benchmark-only", "-ra", "--benchmark-disable-gc")
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "Skipping non-benchmark" not in out
    result.assert_outcomes(passed=1, deselected=4)
    assert out.count("refit_core: --benchmark-only: deselected 4 test(s) that use no benchmark fixture") == 1


def test_the_build_jobs_default_is_one_fact(project, monkeypatch):
    """The code's default, the --help text and the docs say the same (one constant)."""
    from refit_core.cases import prewarm
    assert prewarm.default_jobs() == prewarm.DEFAULT_JOBS
    assert prewarm.DEFAULT_JOBS_TEXT.startswith(f"{prewarm.DEFAULT_JOBS},")
    help_text = " ".join(project.runpytest_subprocess("--help").stdout.str().split())
    assert f"(default: {prewarm.DEFAULT_JOBS_TEXT};" in help_text
    docs = " ".join((PROJECT / "docs" / "options.md").read_text().split())
    assert f"`--refit-build-jobs` | {prewarm.DEFAULT_JOBS_TEXT}" in docs


def test_every_plugin_option_is_documented(project):
    """docs/options.md, the one page of options, names every option the plugin adds."""
    flags = _refit_core_help_options(project.runpytest_subprocess("--help").stdout.str())
    docs = (PROJECT / "docs" / "options.md").read_text()
    from dataclasses import fields
    from refit_core.reporting.tolerances import Tolerances
    tolerances = [f"--refit-gate-{f.metadata['flag']}" for f in fields(Tolerances)]
    undocumented = [f for f in flags if f"`{f}`" not in docs and f not in tolerances]
    assert undocumented == [], f"options not in docs/options.md: {undocumented}"
    assert "`--refit-gate-*` tolerances" in docs
