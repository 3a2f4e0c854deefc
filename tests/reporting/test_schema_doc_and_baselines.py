"""docs/results-schema.md is generated from the record model; the committed baselines in results/
are of this suite (their passed tests still exist) and of this schema."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterable, List, Set

import pytest

from refit_core.reporting.record import schema_markdown
from refit_core.reporting.schema import load_results

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "results-schema.md"
BASELINES = sorted((ROOT / "results").glob("trt*.json"))


def test_the_committed_schema_doc_is_what_the_model_generates() -> None:
    assert DOC.read_text(encoding="utf-8") == schema_markdown(), (
        "docs/results-schema.md is out of date: run `python -m refit_core.reporting.record`")


def test_the_doc_names_every_field_of_a_case() -> None:
    from refit_core.reporting.record import Case
    text = schema_markdown()
    assert all(f"| `{name}` |" in text for name in Case.model_fields)


def suite_test_ids() -> Set[str]:
    """The ids pytest collects in this checkout (as the record keeps them: tests/<file>::<name>), in
    the full profile: a superset of the default's, so records of either profile are judged."""
    run = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:randomly",
                          "-p", "no:cacheprovider", "--refit-profile", "full", "tests"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    ids = {line.strip() for line in run.stdout.splitlines() if "::" in line}
    assert ids, f"collection found no tests:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    return ids


def stale_ids(passed: Iterable[str], suite: Set[str]) -> List[str]:
    """Passed pytest test ids of a record that the suite no longer has (`check::` ids are not pytest's)."""
    return sorted(t for t in passed if t.startswith("tests/") and t not in suite)


@pytest.fixture(scope="module")
def suite() -> Set[str]:
    return suite_test_ids()


def test_stale_ids_are_found(suite) -> None:
    """The check itself: a record naming a test this suite lacks is caught, one it has is not."""
    present = next(iter(sorted(suite)))
    assert stale_ids([present, "tests/gone.py::test_old[model-small_cnn]", "check::x::y"], suite) == \
        ["tests/gone.py::test_old[model-small_cnn]"]


@pytest.mark.parametrize("path", BASELINES, ids=[p.name for p in BASELINES])
def test_a_committed_baseline_is_of_this_suite(path: Path, suite) -> None:
    record = load_results(path)  # this schema, valid
    passed = [t for t, e in record.tests.items() if e.outcome == "passed"]
    assert passed, f"{path.name} holds no passed test"
    stale = stale_ids(passed, suite)
    assert not stale, (f"{path.name} passed {len(stale)} tests this suite no longer has (e.g. {stale[:3]}); "
                       "regenerate the baseline with the current suite")
