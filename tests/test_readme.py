"""Every command the README shows runs here, so the README cannot drift from the code (the way
onnx-graphsurgeon runs its examples in tests/test_examples.py).

The README's ```bash blocks are parsed; each block is one test whose commands run in order, each in
a bash subprocess started in a copy of this checkout (a temp directory), so whatever they write
(report/, records) lands there. The rules are generic, so a block added later is picked up as it is:

* `pip install ...` lines are not run: this environment is the one they would install.
* `export VAR=value` holds for the commands after it (that block and the later ones), unless VAR
  is already set where the tests run: the README names the user's folder, a test machine its own.
* A block whose first line is GPU_MARK needs a GPU: where there is none, its commands are not run
  and the test skips saying why, except its pytest commands, which are collected (below).
* A pytest command runs this suite: run in full it would run this test again (recursion) and take
  the tier's time. It is run with `--collect-only -q` instead, which proves that its options,
  paths and markers are valid; the output shown after it is not compared (collection prints
  none of it).
* A command exits 0 unless its comment says `exit N`.
* A ```text block right after a ```bash block is the output of that block's last command: each
  of its lines must appear in the output, `...` standing for any text, and a line of only `...`
  for lines left out.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from refit_core.pytest_session import in_ci
from refit_core.reporting.report import NO_CHARTS
from refit_core.samples.mnist.data import NO_MIRROR_REACHABLE
from refit_core.trt.cuda import gpu_unavailable_reason

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GPU_MARK = "# on a GPU machine"
MAX_README_LINES = 200
COMMAND_TIMEOUT_S = 900
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
COPY_IGNORE = shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache", ".hypothesis", ".benchmarks",
                                     "*.egg-info", "build", ".venv", "venv")


@dataclass
class Command:
    line: str  # as the README shows it, comment removed
    comment: str = ""

    @property
    def argv(self) -> List[str]:
        words = shlex.split(self.line)
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):  # VAR=value prefixes
            words = words[1:]
        return words

    @property
    def is_pip_install(self) -> bool:
        argv = self.argv
        return argv[:2] == ["pip", "install"] or argv[1:4] == ["-m", "pip", "install"]

    @property
    def is_pytest(self) -> bool:
        argv = self.argv
        return argv[:1] == ["pytest"] or (len(argv) > 2 and argv[0].startswith("python") and argv[1:3] == ["-m", "pytest"])

    @property
    def export(self) -> Optional[str]:
        """The variable an `export VAR=value` line sets."""
        found = re.match(r"^export\s+([A-Za-z_][A-Za-z0-9_]*)=", self.line)
        return found.group(1) if found else None

    @property
    def expected_exit(self) -> int:
        found = re.search(r"\bexit (\d+)\b", self.comment)
        return int(found.group(1)) if found else 0


@dataclass
class Block:
    index: int
    line_no: int
    commands: List[Command]
    gpu: bool
    shown_output: List[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        first = self.commands[0].line if self.commands else "(empty)"
        return f"line{self.line_no}:{first[:60]}"


def _commands(body: str) -> List[Command]:
    out: List[Command] = []
    pending = ""
    for raw in body.splitlines():
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        if not line or line.startswith("#"):
            continue
        comment = re.search(r"\s+#\s", line)
        code, note = (line[:comment.start()], line[comment.end():]) if comment else (line, "")
        out.append(Command(code.strip(), note.strip()))
    return out


def parse_readme(text: str) -> List[Block]:
    blocks: List[Block] = []
    previous_end, previous_bash = -1, None
    for match in FENCE.finditer(text):
        lang, body = match.group(1), match.group(2)
        if lang == "bash":
            first = body.strip().splitlines()[0] if body.strip() else ""
            previous_bash = Block(len(blocks), text[:match.start()].count("\n") + 1, _commands(body),
                                  first.strip().startswith(GPU_MARK))
            blocks.append(previous_bash)
        elif lang == "text" and previous_bash is not None and not text[previous_end:match.start()].strip():
            previous_bash.shown_output = [line.rstrip() for line in body.splitlines() if line.strip()]
        previous_end = match.end()
        if lang != "bash":
            previous_bash = None
    return blocks


def shown_lines_missing(shown: List[str], output: str) -> List[str]:
    """The shown lines that no line of `output` matches (`...`: any text)."""
    lines = [line.rstrip() for line in output.splitlines()]
    missing = []
    for want in shown:
        if want.strip() == "...":
            continue
        pattern = re.compile(".*".join(re.escape(part) for part in want.strip().split("...")))
        if not any(pattern.search(line) for line in lines):
            missing.append(want)
    return missing


BLOCKS = parse_readme(README.read_text())


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of this checkout: the README's commands run there and write there."""
    copy = tmp_path_factory.mktemp("readme") / "refit_core_checkout"
    shutil.copytree(ROOT, copy, ignore=COPY_IGNORE)
    return copy


def _exports_before(block: Block) -> List[str]:
    """The README's `export` lines before this block, as shell lines (skipping variables set here)."""
    lines = []
    for earlier in BLOCKS[:block.index]:
        lines += [c.line for c in earlier.commands if c.export and c.export not in os.environ]
    return lines


def _run(command: Command, exports: List[str], cwd: Path) -> subprocess.CompletedProcess:
    line = command.line + (" --collect-only -q" if command.is_pytest else "")
    script = "\n".join(["set -e", *exports, line])
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_S, env=_environment())


def _environment() -> dict:
    """This process's environment; where REFIT_DATA_DIR names a copy of MNIST, `fetch-mnist`
    downloads from it (a file:// mirror through the same urllib path, sha256 checks included)
    rather than from the internet, which CI does not reach."""
    env = dict(os.environ)
    data = env.get("REFIT_DATA_DIR")
    if data and "REFIT_MNIST_MIRRORS" not in env and Path(data).is_dir():
        env["REFIT_MNIST_MIRRORS"] = Path(data).resolve().as_uri() + "/"
    return env


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_block_runs(block: Block, checkout: Path) -> None:
    gpu_missing = gpu_unavailable_reason() if block.gpu else None
    exports = _exports_before(block)
    not_run: List[str] = []
    output = ""
    for command in block.commands:
        if command.is_pip_install:
            continue
        if command.export:
            if command.export not in os.environ:
                exports.append(command.line)
            continue
        if gpu_missing is not None and not command.is_pytest:
            not_run.append(command.line)
            continue
        proc = _run(command, exports, checkout)
        output = proc.stdout + proc.stderr
        if proc.returncode != command.expected_exit and NO_CHARTS in output and not in_ci():
            pytest.skip(f"README command {command.line!r} needs matplotlib (requirements.txt), not installed in "
                        "this Python")
        if proc.returncode != command.expected_exit and NO_MIRROR_REACHABLE in output and not in_ci():
            pytest.skip(f"README command {command.line!r} needs the internet, or REFIT_DATA_DIR naming a copy "
                        "of MNIST to serve as its mirror; neither is here (CI=true makes this a failure)")
        assert proc.returncode == command.expected_exit, \
            f"README command {command.line!r} exited {proc.returncode}, not {command.expected_exit}:\n{output[-3000:]}"
        if command.is_pytest:
            assert re.search(r"\d+ tests? collected|collected \d+ items?", output), output[-3000:]
    last = block.commands[-1] if block.commands else None
    if block.shown_output and last is not None and not last.is_pytest and last.line not in not_run:
        assert shown_lines_missing(block.shown_output, output) == [], \
            f"the README shows output of {last.line!r} that it does not print; it printed:\n{output[-3000:]}"
    if not_run:
        pytest.skip(f"README commands for a GPU machine, not run here ({gpu_missing}): {'; '.join(not_run)}")


def test_the_readme_reads_in_two_minutes() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines (at most {MAX_README_LINES})"


def test_the_first_two_commands_set_up_and_run_the_cpu_tier_and_ci_runs_them() -> None:
    """A fresh machine: install the CPU set, run the suite. .ci/run runs that very command, with CI=true."""
    first, second = [c for block in BLOCKS for c in block.commands][:2]
    assert first.is_pip_install and "requirements.txt" in first.argv, first.line
    assert second.is_pytest, second.line
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert second.line in [line.strip() for line in ci], f".ci/run does not run the README's {second.line!r}"
    assert any(re.match(r'^export CI="?\$\{CI:-true\}"?$', line.strip()) for line in ci)
    assert any("-r requirements.txt" in line for line in ci)


# ----- the parser itself: the rules above, on a made-up README ---------------------------------
SAMPLE = """
intro
```bash
pip install -r requirements.txt
python -m pytest
```

```text
ignored: the output of a pytest command
```
```bash
export DATA=$HOME/x   # your folder
python -m refit_core gate a.json \\
    b.json   # exit 1
```

```text
GATE FAILED: ... regressions
...
```
```bash
# on a GPU machine
pytest -m gpu
```
"""


def test_parser_reads_blocks_commands_outputs_and_marks() -> None:
    first, second, third = parse_readme(SAMPLE)
    assert [c.line for c in first.commands] == ["pip install -r requirements.txt", "python -m pytest"]
    assert first.commands[0].is_pip_install and first.commands[1].is_pytest and not first.gpu
    assert second.commands[0].export == "DATA"
    assert second.commands[1].line == "python -m refit_core gate a.json b.json"
    assert second.commands[1].expected_exit == 1 and second.commands[0].expected_exit == 0
    assert second.shown_output == ["GATE FAILED: ... regressions", "..."]
    assert third.gpu and third.commands[0].is_pytest and third.shown_output == []


def test_shown_output_must_appear() -> None:
    printed = "header\nGATE FAILED: 4 regressions: a, b\n"
    assert shown_lines_missing(["GATE FAILED: ... regressions", "..."], printed) == []
    assert shown_lines_missing(["GATE PASSED"], printed) == ["GATE PASSED"]
