"""The engine_refit_mnist sample: MNIST reader (data), LeNet numpy reference (lenet), committed
weights (weights) and the flow (flow).

LeNet's interface: weight names and shapes as PyTorch names them, the network's input/output
tensor names, and the weights the sample refits.
"""
from __future__ import annotations

from typing import Dict, Tuple

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
#: what the sample zeroes at build time and then refits
MNIST_REFIT_TARGETS: Tuple[str, ...] = ("conv1.weight", "conv1.bias")
