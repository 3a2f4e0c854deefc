"""The engine_refit_onnx_bidaf sample: tokenizer and preprocessing (tokenize, preprocess,
category_map), the generated reading-comprehension set (data), graph surgery (surgery), the
prepared model's files and their cache (prepare, prepared), the user's original bidaf-9.onnx
(original), ONNX Runtime references (ort_reference, reference) and the flow (flow).

The model is the BiDAF stand-in: a small, trained Bi-Directional Attention Flow model whose ONNX
file (committed in refit_core/assets/) has the interface and the graph patterns of the ONNX model
zoo's bidaf-9.onnx. The interface below: input/output names, characters per word, and the two
weights the sample refits.
"""
from __future__ import annotations

from typing import Tuple

from ...models.assets import ASSETS_DIR

STANDIN_ONNX = ASSETS_DIR / "bidaf_standin.onnx"
STANDIN_METADATA = ASSETS_DIR / "bidaf_standin.json"

#: characters kept per token (the fourth dimension of the *_char inputs)
BIDAF_CHARS_PER_WORD = 16
BIDAF_INPUTS: Tuple[str, ...] = ("context_word", "context_char", "query_word", "query_char")
BIDAF_OUTPUTS: Tuple[str, str] = ("start_pos", "end_pos")
#: extra outputs of the *prepared* model (graph surgery adds them): the [1, c] start and end
#: pointer scores that the ArgMax of start_pos / end_pos reads, so TensorRT and ONNX Runtime
#: can be compared on numbers, not only on the arg-max span
BIDAF_SCORE_OUTPUTS: Tuple[str, str] = ("start_scores", "end_scores")
#: the weights NVIDIA's sample refits (ones_like fakes, then the real values)
BIDAF_SAMPLE_WEIGHTS: Tuple[str, str] = ("Parameter576_B_0", "W_0")
