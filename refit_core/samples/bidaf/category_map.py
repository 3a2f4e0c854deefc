"""One CategoryMapper's string -> int64 table (numpy only).

Lives in the text layer because preprocessing does the lookup; onnx_prep (which extracts
the tables from the graph) imports it from here, never the other way round.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from ...errors import DataError

__all__ = ["CategoryMap"]


@dataclass
class CategoryMap:
    """One CategoryMapper's string -> int64 table, so preprocessing can do its lookup.

    ``input_name`` is the original string graph input the node read; ``output_name`` is
    its int64 output, which is the prepared model's input.
    """

    cats_strings: List[str]
    cats_int64s: List[int]
    default_int64: int
    node_name: str
    input_name: Optional[str] = None
    output_name: Optional[str] = None
    _table: Dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.cats_strings = [str(s) for s in self.cats_strings]
        self.cats_int64s = [int(i) for i in self.cats_int64s]
        self.default_int64 = int(self.default_int64)
        if len(self.cats_strings) != len(self.cats_int64s):
            raise DataError(
                f"CategoryMapper {self.node_name!r}: {len(self.cats_strings)} strings but "
                f"{len(self.cats_int64s)} ids; the two lists must be of equal length")
        # first occurrence wins, as in onnxruntime's CategoryMapper
        table: Dict[str, int] = {}
        for s, i in zip(self.cats_strings, self.cats_int64s):
            table.setdefault(s, i)
        self._table = table

    def lookup(self, strings: np.ndarray) -> np.ndarray:
        """The int64 ids of ``strings`` (any shape); unknown strings get ``default_int64``."""
        arr = np.asarray(strings)
        get = self._table.get
        default = self.default_int64
        flat = [get(s.decode("utf-8") if isinstance(s, bytes) else str(s), default)
                for s in arr.reshape(-1).tolist()]
        return np.asarray(flat, dtype=np.int64).reshape(arr.shape)

    def to_json(self) -> str:
        """JSON text holding the table and the names it came from."""
        return json.dumps({
            "node_name": self.node_name,
            "input_name": self.input_name,
            "output_name": self.output_name,
            "default_int64": self.default_int64,
            "cats_strings": self.cats_strings,
            "cats_int64s": self.cats_int64s,
        }, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "CategoryMap":
        """Read back :meth:`to_json` (also accepts the sample's plain attribute dumps)."""
        try:
            obj = json.loads(text)
            return cls(cats_strings=obj["cats_strings"], cats_int64s=obj["cats_int64s"],
                       default_int64=obj["default_int64"],
                       node_name=obj.get("node_name") or "",
                       input_name=obj.get("input_name"), output_name=obj.get("output_name"))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"not a CategoryMapper table: {exc}") from exc
