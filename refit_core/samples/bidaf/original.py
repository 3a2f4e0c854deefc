"""The original bidaf-9.onnx the user downloaded: where under the data directory it is
looked for, and the MD5 that tells it from a truncated download or another model.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Tuple, Union

from ...config import DATA_DIR_ENV
from ...errors import DataError
from ...fileio import md5_file

__all__ = ["ORIGINAL_BIDAF_MD5", "ORIGINAL_BIDAF_LOCATIONS", "find_original_bidaf", "original_bidaf_candidates"]

#: MD5 of bidaf-9.onnx as the TensorRT sample's download.yml pins it.
ORIGINAL_BIDAF_MD5 = "cf11f1eceb4731f8dd39345467fe94a1"
#: Where, under the user's data directory, the original model is looked for (in order).
ORIGINAL_BIDAF_LOCATIONS: Tuple[str, ...] = (
    "bidaf/bidaf-original.onnx",
    "samples/python/engine_refit_onnx_bidaf/bidaf-original.onnx",
    "bidaf/bidaf-9.onnx",
)


def original_bidaf_candidates(data_dir: Optional[Union[str, Path]] = None) -> List[Path]:
    """The paths :func:`find_original_bidaf` looks at, in order ($REFIT_DATA_DIR by default)."""
    root = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if not root:
        return []
    base = Path(root).expanduser()
    return [base / rel for rel in ORIGINAL_BIDAF_LOCATIONS]


def find_original_bidaf(data_dir: Optional[Union[str, Path]] = None,
                        check_md5: bool = True) -> Optional[Path]:
    """The original bidaf-9.onnx under the user's data directory, or None when absent.

    Looks at :data:`ORIGINAL_BIDAF_LOCATIONS` under ``data_dir`` ($REFIT_DATA_DIR when
    None). With ``check_md5`` a file that is there but is not bidaf-9 (a truncated
    download, another model) raises DataError instead of being used silently.
    """
    for path in original_bidaf_candidates(data_dir):
        if path.is_file():
            if check_md5:
                got = md5_file(path)
                if got != ORIGINAL_BIDAF_MD5:
                    raise DataError(
                        f"{str(path)!r} is not the original bidaf-9.onnx: MD5 {got}, expected "
                        f"{ORIGINAL_BIDAF_MD5} (re-download it or remove it)")
            return path
    return None
