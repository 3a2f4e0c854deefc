"""Which of an ONNX model's weights can be refitted, and under which name (the coverage map).

TensorRT's ONNX parser lists the refittable weights of a REFIT engine
(`Refitter.get_all_weights()`); many of them are the model's initializers under their own
names, but not all. Initializers that TensorRT folded into a constant (a BatchNorm folded
into its convolution, a reshape of a weight, exporter-made `onnx::Conv_NNN` tensors fed
through other nodes) or fused away are not listed at all, and the engine lists other
weights instead: `tmp_weight_N`, outputs of ONNX `Constant` nodes such as
`/Constant_output_0`, and weights nobody named (None on 8.5, "(Unnamed Layer* N) ..." on
8.6+). A user who refits by ONNX name cannot reach those, and needs to know which.

The classification here is pure (lists in, lists out, no TensorRT, no GPU), so every rule is
tested on the CPU with the lists real TensorRT versions return. Each float initializer is:

* ``by_name``        refittable under its own name;
* ``other_name``     not under its own name, but TensorRT lists a weight of its own that has
                     the same element count and dtype (TensorRT >= 10.0 says a weight's size:
                     `get_weights_prototype`); it may be reachable through that name;
* ``unmatched``      not under its own name, and TensorRT lists weights of its own whose size
                     this version cannot report (8.x: no `get_weights_prototype`), so whether
                     it survives under another name cannot be told;
* ``not_refittable`` not under its own name and no weight TensorRT lists can be it: folded
                     or fused away.

Weights TensorRT lists that are not initializer names are ``trt_only``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..trt import compat

BY_NAME = "by_name"
OTHER_NAME = "other_name"
UNMATCHED = "unmatched"
NOT_REFITTABLE = "not_refittable"
CATEGORIES = (BY_NAME, OTHER_NAME, UNMATCHED, NOT_REFITTABLE)

#: What the table and the record call each category.
CATEGORY_TEXT = {
    BY_NAME: "refittable by its ONNX name",
    OTHER_NAME: "only through another name",
    UNMATCHED: "not by its name; maybe another (this TensorRT cannot tell)",
    NOT_REFITTABLE: "not refittable (folded or fused away)",
}

#: Placeholder for a weight TensorRT lists without a name (same as reporting.weights).
UNNAMED = "<unnamed>"

#: (element count, dtype name) TensorRT reports for one of its weights.
Prototype = Tuple[int, str]


@dataclass(frozen=True)
class Initializer:
    """A float initializer of the model: name, numpy dtype name and shape."""

    name: str
    dtype: str
    shape: Tuple[int, ...]

    @property
    def count(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n


@dataclass(frozen=True)
class TrtWeight:
    """A refittable weight TensorRT lists that is not an initializer name.

    `kind`: "unnamed", "constant" (the output of an ONNX Constant node) or "generated"
    (`tmp_weight_N` and other names TensorRT made up)."""

    name: Optional[str]
    kind: str
    prototype: Optional[Prototype] = None

    @property
    def shown(self) -> str:
        return UNNAMED if self.kind == "unnamed" else str(self.name)


@dataclass
class Coverage:
    """The map: each float initializer's category, TensorRT's own weights, and the candidates
    (TensorRT-only weight names of equal size) for the `other_name` ones."""

    initializers: List[Initializer]
    category: Dict[str, str]
    candidates: Dict[str, List[str]] = field(default_factory=dict)
    trt_only: List[TrtWeight] = field(default_factory=list)
    prototypes_known: bool = False
    trt_weight_count: int = 0
    #: by-name weights TensorRT refits only together with weights of its own that no ONNX name
    #: reaches (EngineRefitter.blocked: found on the engine, not from the lists) -> those weights
    blocked: Dict[str, List[str]] = field(default_factory=dict)

    def names(self, category: str) -> List[str]:
        return [i.name for i in self.initializers if self.category[i.name] == category]

    def counts(self) -> Dict[str, int]:
        c = Counter(self.category.values())
        return {cat: c.get(cat, 0) for cat in CATEGORIES}

    def explanations(self) -> Dict[str, str]:
        """For every initializer that is not refittable by its name: why, and what to do
        (what `validate_weight(..., unreachable=...)` says when one is asked for)."""
        return {i.name: not_refittable_reason(i.name, self) for i in self.initializers
                if self.category[i.name] != BY_NAME}

    def to_record(self) -> Dict[str, Any]:
        """The `cases.<case>.coverage` entry of a results record (lists of names, counts)."""
        out: Dict[str, Any] = {cat: sorted(self.names(cat)) for cat in CATEGORIES}
        out["trt_only"] = sorted(w.shown for w in self.trt_only)
        out["other_name_candidates"] = [f"{n} -> {' | '.join(c)}" for n, c in sorted(self.candidates.items())]
        out["initializers"] = len(self.initializers)
        out["trt_weights"] = self.trt_weight_count
        out["prototypes_known"] = self.prototypes_known
        out["blocked_by_trt_only_partner"] = [f"{n} -> {' | '.join(p)}" for n, p in sorted(self.blocked.items())]
        return out


# --------------------------------------------------------------------------------------
# Reading the model (onnx, lazily)
# --------------------------------------------------------------------------------------
def onnx_float_initializer_info(model: Any) -> Tuple[List[Initializer], List[str]]:
    """(float initializers, outputs of float Constant nodes) of a ModelProto or a path.

    Reads names, types and dims only (no tensor data is decoded). Initializers of
    subgraphs (If/Loop bodies) are not included."""
    import onnx
    from onnx import helper
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    inits = []
    for init in model.graph.initializer:
        try:
            np_dtype = helper.tensor_dtype_to_np_dtype(init.data_type)
        except (KeyError, ValueError, TypeError):  # UNDEFINED, or a type numpy has no dtype for
            continue
        if np_dtype.kind == "f":
            inits.append(Initializer(init.name, str(np_dtype), tuple(int(d) for d in init.dims)))
    constants = [out for node in model.graph.node if node.op_type == "Constant" for out in node.output]
    return inits, constants


# --------------------------------------------------------------------------------------
# The classification (pure)
# --------------------------------------------------------------------------------------
def _trt_kind(name: Optional[str], constants: Iterable[str]) -> str:
    if compat.is_unnamed_weight(name):
        return "unnamed"
    if name in set(constants):
        return "constant"
    return "generated"


def classify(initializers: Sequence[Initializer], trt_names: Sequence[Optional[str]],
             prototypes: Optional[Mapping[str, Prototype]] = None,
             constants: Sequence[str] = ()) -> Coverage:
    """Classify each initializer against TensorRT's `get_all_weights()` list.

    `prototypes` (TensorRT >= 10.0 only, None on 8.x): TensorRT weight name -> (element
    count, dtype name), from `get_weights_prototype`. `constants`: outputs of the model's
    ONNX Constant nodes (so that "/Constant_output_0" is reported as a constant).
    """
    listed = Counter(str(n) for n in trt_names if not compat.is_unnamed_weight(n))
    init_names = {i.name for i in initializers}
    known = prototypes is not None
    protos = dict(prototypes or {})
    trt_only = [TrtWeight(n, _trt_kind(n, constants),
                          protos.get(str(n)) if n is not None else None)
                for n in trt_names if compat.is_unnamed_weight(n) or str(n) not in init_names]
    category: Dict[str, str] = {}
    candidates: Dict[str, List[str]] = {}
    for init in initializers:
        if init.name in listed:
            category[init.name] = BY_NAME
            continue
        if not trt_only:
            category[init.name] = NOT_REFITTABLE
            continue
        if known:
            match = [w.shown for w in trt_only if w.prototype is not None
                     and int(w.prototype[0]) == init.count and str(w.prototype[1]) == init.dtype]
            sizeless = [w for w in trt_only if w.prototype is None]
            if match:
                category[init.name] = OTHER_NAME
                candidates[init.name] = match
            elif sizeless:  # some of TensorRT's weights gave no prototype (unnamed ones)
                category[init.name] = UNMATCHED
            else:
                category[init.name] = NOT_REFITTABLE
        else:
            category[init.name] = UNMATCHED
    return Coverage(list(initializers), category, candidates, trt_only, known, len(trt_names))


def coverage_of_model(model: Any, trt_names: Sequence[Optional[str]],
                      prototypes: Optional[Mapping[str, Prototype]] = None) -> Coverage:
    """`classify` for an ONNX model (ModelProto or path)."""
    inits, constants = onnx_float_initializer_info(model)
    return classify(inits, trt_names, prototypes, constants)


# --------------------------------------------------------------------------------------
# Words for users
# --------------------------------------------------------------------------------------
KEEP_REFITTABLE_ADVICE = (
    "to keep a weight refittable under its ONNX name, export without constant folding "
    "(torch.onnx.export(..., do_constant_folding=False)) and keep it an initializer that feeds "
    "one Conv/Gemm/MatMul directly (no Reshape, Transpose, Cast, Mul or BatchNorm between them, "
    "not shared by two layers); TensorRT may still fuse it, so check the map again "
    "(python -m refit_core check MODEL.onnx)")


def not_refittable_reason(name: str, coverage: Coverage) -> str:
    """One sentence for a user who asked to refit initializer `name` and cannot."""
    cat = coverage.category.get(name)
    if cat == OTHER_NAME:
        cands = coverage.candidates.get(name, [])
        shown = ", ".join(repr(c) for c in cands[:3]) + (" ..." if len(cands) > 3 else "")
        return (f"is an initializer of the model, but TensorRT did not keep it as a weight under this name; "
                f"a weight TensorRT lists as {shown} has its size and may be it (after folding), so refit "
                f"that name with the folded values, or {KEEP_REFITTABLE_ADVICE}")
    if cat == UNMATCHED:
        return (f"is an initializer of the model, but TensorRT did not keep it as a weight under this name "
                f"(it was folded into another constant or fused away; TensorRT lists "
                f"{len(coverage.trt_only)} weights of its own, whose sizes TensorRT "
                f"{compat_version_hint()} cannot report); {KEEP_REFITTABLE_ADVICE}")
    if cat == NOT_REFITTABLE:
        return (f"is an initializer of the model, but TensorRT folded or fused it away when it built the "
                f"engine, so it cannot be refitted; {KEEP_REFITTABLE_ADVICE}")
    if cat == BY_NAME:
        return "is refittable under its own name"
    return "is not an initializer of the model"


def compat_version_hint() -> str:
    """"8.5.3.1" where TensorRT is importable, else "8.x" (the text must work on the CPU)."""
    try:
        return compat.trt_version_string()
    except Exception:  # TensorRT absent (CPU tests): the sentence still reads
        return "8.x"


def format_table(coverage: Coverage, width: int = 60) -> str:
    """The map as aligned text: one row per initializer, then TensorRT's own weights."""
    def cut(text: str) -> str:
        return text if len(text) <= width else text[: width - 3] + "..."

    rows: List[Tuple[str, str, str, str]] = []
    order = {cat: i for i, cat in enumerate(CATEGORIES)}
    for init in sorted(coverage.initializers, key=lambda i: (order[coverage.category[i.name]], i.name)):
        cat = coverage.category[init.name]
        note = CATEGORY_TEXT[cat]
        if cat == OTHER_NAME:
            note += ": " + ", ".join(coverage.candidates[init.name][:3])
        if init.name in coverage.blocked:
            note = "listed by name, but refitted only with TensorRT-only " + ", ".join(coverage.blocked[init.name][:3])
        rows.append((cut(init.name), "x".join(map(str, init.shape)) or "scalar", init.dtype, note))
    for w in coverage.trt_only:
        size = f"{w.prototype[0]} elements" if w.prototype else "size unknown"
        dtype = w.prototype[1] if w.prototype else "?"
        rows.append((cut(w.shown), size, dtype, f"TensorRT-only weight ({w.kind})"))
    head = ("weight", "shape", "dtype", "refit")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(3)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head[:3], widths)) + "  " + head[3]]
    lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 5)
    lines += ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows]
    c = coverage.counts()
    lines.append(f"{len(coverage.initializers)} float initializers: {c[BY_NAME]} by name, "
                 f"{c[OTHER_NAME]} only through another name, {c[UNMATCHED]} unmatched, "
                 f"{c[NOT_REFITTABLE]} not refittable; TensorRT lists {coverage.trt_weight_count} "
                 f"refittable weights, {len(coverage.trt_only)} of them not initializer names"
                 + (f"; {len(coverage.blocked)} of the by-name ones refit only with TensorRT-only weights"
                    if coverage.blocked else "")
                 + ("" if coverage.prototypes_known else
                    " (this TensorRT cannot report their sizes, so they are not matched)"))
    return "\n".join(lines)
