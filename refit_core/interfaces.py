"""The two samples' model interfaces, in one place (no imports: every layer may read it).

LeNet (engine_refit_mnist): weight names and shapes as PyTorch names them, the network's
input/output tensor names, and the weights the sample refits.
BiDAF (engine_refit_onnx_bidaf, bidaf-9.onnx interface): input/output names, characters
per word, and the two weights the sample refits.
"""
from __future__ import annotations

from typing import Dict, Tuple

# ---- LeNet ---------------------------------------------------------------------------
LENET_SHAPES: Dict[str, Tuple[int, ...]] = {
    "conv1.weight": (20, 1, 5, 5),
    "conv1.bias": (20,),
    "conv2.weight": (50, 20, 5, 5),
    "conv2.bias": (50,),
    "fc1.weight": (500, 800),
    "fc1.bias": (500,),
    "fc2.weight": (10, 500),
    "fc2.bias": (10,),
}
LENET_WEIGHT_NAMES: Tuple[str, ...] = tuple(LENET_SHAPES)
#: PyTorch layer prefix -> layers whose kernel and bias are refitted together
LENET_LAYERS: Tuple[str, ...] = ("conv1", "conv2", "fc1", "fc2")
LENET_INPUT = "input"
LENET_OUTPUT = "logits"
LENET_IMAGE_SHAPE: Tuple[int, int, int] = (1, 28, 28)
LENET_CLASSES = 10
#: what the sample zeroes at build time and then refits
MNIST_REFIT_TARGETS: Tuple[str, ...] = ("conv1.weight", "conv1.bias")

# ---- BiDAF ---------------------------------------------------------------------------
BIDAF_SIDES: Tuple[str, str] = ("context", "query")
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
