"""The command lines of `check` and `prepare`, their exit statuses, and everything refused
before a GPU is touched (one sentence, exit 2): what is left is the Plan the GPU run follows
(gpu_run), with the model `prepare` wrote."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..trt.engine import PRECISIONS
from ..errors import RefitCoreError

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2


class CheckUnusable(RefitCoreError):
    """`check` cannot run: the model, its shapes or this machine (one sentence, exit 2)."""


# --------------------------------------------------------------------------------------
# Arguments and the checks that need no GPU
# --------------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def add_shapes_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shapes", nargs="+", action="append", default=[], metavar="NAME:DIMS",
                   help="fixed shapes of dynamic inputs, trtexec style: --shapes input:1x3x224x224 mask:1x128 "
                        "(or comma-separated; every dynamic dim of the input is set, whatever its symbol); "
                        "before or after MODEL")


def add_check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="the ONNX model file")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="build precision (fp32: TF32 off; tf32: TF32 allowed; fp16: BuilderFlag.FP16); default fp32")
    add_shapes_argument(p)
    p.add_argument("--save-prepared", metavar="PATH",
                   help="keep the prepared model check builds (shapes fixed, Constant weights as initializers)")
    p.add_argument("--results", metavar="PATH", help="write a results record (JSON) the gate understands")
    p.add_argument("--rounds", type=_positive_int, default=20,
                   help="timed refits and timed inferences per engine, after warm-up (default 20)")
    p.add_argument("--skip-builds", action="store_true",
                   help="skip the two extra builds (the rebuild timing and refit-vs-fresh-build check, "
                        "and the engine without REFIT for the refit tax)")
    p.add_argument("--builder-optimization-level", type=int, choices=range(0, 6), metavar="N", default=None,
                   help="TensorRT's builder optimization level 0-5 for every build (TensorRT 8.6+; "
                        "default: TensorRT's own, 3); lower builds faster, maybe slower engines")
    p.add_argument("--allow-fp16-range", action="store_true",
                   help="fp16: refit weights even when FP16 cannot hold their values (refused by default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the probe inputs and perturbations (default 0)")
    p.add_argument("--verbose", action="store_true", help="echo TensorRT's warnings too")


def add_prepare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="the ONNX model file")
    add_shapes_argument(p)
    p.add_argument("-o", "--output", required=True, metavar="PREPARED.onnx", help="where to write the prepared model")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs ONNX Runtime compares on (default 0)")


def model_and_shapes(args: argparse.Namespace) -> Tuple[Path, Dict[str, Tuple[int, ...]]]:
    """MODEL and the parsed --shapes, MODEL before or after them: `--shapes x:1x3 m.onnx` leaves
    m.onnx among the shape values (nargs="+"), where it is the one value that is not NAME:DIMS."""
    from ..onnx_prep.source import ModelInputError, is_shape_item, parse_shapes
    items = [s for group in (args.shapes or []) for s in (group if isinstance(group, list) else [group])]
    strays = [s for s in items if not is_shape_item(s)]
    model = args.model
    if model is None and len(strays) == 1:
        model = strays[0]
        items.remove(model)
    elif strays:
        raise ModelInputError(f"--shapes {strays[0]!r} is not NAME:DIMS with DIMS like 1x3x224x224")
    if model is None:
        raise ModelInputError("give the ONNX model file: python -m refit_core " + str(getattr(args, "command", "check"))
                              + " MODEL.onnx [--shapes NAME:DIMS ...]")
    return Path(model).expanduser(), parse_shapes(items)


@dataclass
class Plan:
    """What the GPU part runs: the model, its case, and the options (all checked already)."""

    model: Path
    case: Any  # cases.onnx_model.OnnxModelCase
    key: str   # the case key in the record: "<case name>-<precision>"
    precision: str
    rounds: int
    results: Optional[Path]
    skip_builds: bool
    verbose: bool
    command_line: List[str] = field(default_factory=list)
    #: the prepared model the case builds (onnx_prep.generic), and what preparing it said
    prepared: Optional[Path] = None
    prepare: Any = None
    optimization_level: Optional[int] = None
    _tmp: Any = None

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def plan_from_args(args: argparse.Namespace) -> Plan:
    """Everything about the model and options that can be refused without a GPU; then the
    prepare step (onnx_prep.generic), whose model the case builds."""
    import tempfile
    from ..cases.onnx_model import OnnxModelCase
    from ..cases.user_model import ModelInputError, case_name_for, input_shapes_for, refuse_weights_not_float32
    from ..onnx_prep.generic import prepare_file
    try:
        path, shapes = model_and_shapes(args)
        if not path.is_file():
            raise ModelInputError(f"model file {path} does not exist")
        path = path.resolve()
        input_shapes_for(path, shapes, shapes_option="--shapes")  # inputs a probe can feed, every --shapes fits
    except ModelInputError as exc:
        raise CheckUnusable(str(exc)) from None
    results = Path(args.results).expanduser() if args.results else None
    if results is not None and results.is_dir():
        raise CheckUnusable(f"--results {results} is a directory; give a file name such as {results / 'check.json'}")
    saved = Path(args.save_prepared).expanduser() if getattr(args, "save_prepared", None) else None
    if saved is not None and (saved.is_dir() or saved.resolve() == path):
        raise CheckUnusable(f"--save-prepared {saved} is {'a directory' if saved.is_dir() else 'the model itself'}; "
                            "give a new file name such as prepared.onnx")
    tmp = None
    if saved is None:
        tmp = tempfile.TemporaryDirectory(prefix="refit-check-prepared-")
        saved = Path(tmp.name) / path.name
    try:
        result = prepare_file(path, shapes, saved, seed=int(args.seed))
        refuse_weights_not_float32(saved, path.name)
    except ModelInputError as exc:
        if tmp is not None:
            tmp.cleanup()
        raise CheckUnusable(str(exc)) from None
    prepared = saved.resolve()
    name = case_name_for(path)
    case = OnnxModelCase(name, lambda _directory: prepared, result.prepared.shapes, seed=int(args.seed),
                         precision=args.precision, allow_fp16_range=bool(args.allow_fp16_range),
                         optimization_level=getattr(args, "builder_optimization_level", None))
    argv = getattr(args, "argv", None) or sys.argv[1:]
    return Plan(path, case, f"{name}-{args.precision}", args.precision, int(args.rounds), results,
                bool(args.skip_builds), bool(args.verbose), ["python", "-m", "refit_core"] + [str(a) for a in argv],
                prepared, result, getattr(args, "builder_optimization_level", None), tmp)


def run_prepare(args: argparse.Namespace) -> int:
    """The `prepare` subcommand: write the model check builds, proven with ONNX Runtime."""
    from ..onnx_prep.generic import prepare_file
    path, shapes = model_and_shapes(args)
    out = Path(args.output).expanduser()
    if out.is_dir() or (out.exists() and path.exists() and out.resolve() == path.resolve()):
        raise CheckUnusable(f"-o {out} is {'a directory' if out.is_dir() else 'the model itself'}; "
                            "give a new file name such as prepared.onnx")
    prepare_file(path, shapes, out, seed=int(args.seed))
    return EXIT_OK
