"""`check` on real pretrained models from the registry (tools/real_models.json), in-process,
on the GPU: each gives the verdict the manifest expects (exit 0 with CHECK PASSED on the
weights it can refit, exit 1 naming the checks a TensorRT's faulty refit fails, or a
one-sentence refusal), and no false alarm from the tool's own
rules. A model whose verdict was not measured yet runs all the same: a traceback or a shape
false alarm fails, otherwise it skips with what check said. Runs where REFIT_REAL_MODELS_DIR holds the model; skips naming the file where not.
The default profile runs every model with --skip-builds (its builds without REFIT take minutes
on small models too: 212 s for the direction classifier on 8.6.0); --refit-profile full runs
those builds except for models whose REFIT build alone takes minutes (`slow_build`)."""
from __future__ import annotations

import pytest

from refit_core.cli import main
from refit_core.pytest_session import refit_session
from refit_core.reporting.schema import load_results
from refit_core.trt.compat import trt_version

from .real_models import expected_for, manifest_models, model_file

pytestmark = pytest.mark.gpu

MODELS = {m["id"]: m for m in manifest_models()}


def check_argv(entry, path, record, profile):
    argv = ["check", str(path)] + (["--shapes", *entry["shapes"]] if entry["shapes"] else [])
    argv += ["--rounds", "5", "--results", str(record)]
    return argv + (["--skip-builds"] if entry["slow_build"] or profile != "full" else [])


@pytest.mark.parametrize("model_id", sorted(MODELS))
def test_check_gives_the_expected_verdict_on_a_real_model(model_id, cuda_session, tmp_path, capsys, pytestconfig):
    entry = MODELS[model_id]
    path = model_file(entry)
    record = tmp_path / "check.json"
    code = main(check_argv(entry, path, record, refit_session(pytestconfig).profile))
    out, err = capsys.readouterr()
    print(out[-12000:], err[-3000:])
    assert "Traceback" not in out + err
    assert "differs from the engine's" not in out, "a shape false alarm from the tool's own rules"
    expected = expected_for(entry, trt_version())
    if expected["exit"] is None:
        said = [line for line in (out + err).splitlines() if line.startswith(("CHECK ", "refit_core: "))]
        version = ".".join(map(str, trt_version()))
        pytest.skip(f"{model_id}: no verdict judged right on TensorRT {version} yet in tools/real_models.json "
                    f"({expected['why']}); check said exit {code}: {said[-1] if said else 'nothing'}")
    assert code == expected["exit"], f"{model_id}: exit {code}, expected {expected['exit']}: {expected['why']}"
    if code == 0:
        assert "CHECK PASSED" in out
        cases = load_results(record).cases
        assert any(k.startswith("model-") for k in cases), cases.keys()
    elif code == 1:  # this TensorRT's refit gives wrong numbers: exactly the checks named fail
        assert f"CHECK FAILED: {', '.join(expected['failed'])}\n" in out, out[-2000:]
    else:
        lines = [line for line in err.splitlines() if line.startswith("refit_core: ")]
        assert len(lines) == 1 and expected["refusal"] in lines[0], err
