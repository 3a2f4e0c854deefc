"""Without a GPU the GPU tier says, in one sentence, what is missing (CPU tier)."""
from __future__ import annotations

import pytest

from refit_core.trt.cuda import gpu_unavailable_reason


def test_reason_names_what_is_missing():
    reason = gpu_unavailable_reason()
    if reason is None:
        pytest.skip("this machine has TensorRT, pycuda and a GPU")
    assert reason.split(" ")[0] in ("TensorRT", "pycuda", "no")
    assert "\n" not in reason
