"""PyTorch side of the model zoo (refit_core.models.zoo): build, calibrate and export each architecture.

Imported only to export; needs torch and torchvision (requirements.txt). Every model is made
in eval mode from a seed, calibrated so that its outputs are of order one and depend on the
input and on the weights, checked against ONNX Runtime after export, and written to ONNX with
the legacy TorchScript exporter (`dynamo=False`: it needs no onnxscript and keeps initializer
names from the module's parameters).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch
from torch import nn

from refit_core.models.zoo import ZooModel
from tools.zoo_export import MIN_INPUT_DEPENDENCE


#: ONNX Runtime must agree with PyTorch on the exported model within this (relative to max|out|).
EXPORT_RTOL = 1e-4


def _randomise_(module: nn.Module, gen: torch.Generator) -> None:
    """Give biases and norm affine parameters seeded non-constant values: zero or constant
    initialisations make the exporter merge identical initializers and make refit checks blind."""
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            with torch.no_grad():
                m.weight.copy_(1.0 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
        elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            with torch.no_grad():
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=gen))


def _calibrate_head_(head: nn.Linear, features: torch.Tensor) -> None:
    """Rescale the last Linear so its outputs over `features` have mean 0 and std 1 (over all
    outputs at once). Not per output: the MobileNet's pooled features move by a few percent
    between random images, and standardising each logit over inputs cancels their common part,
    which made TensorRT's TF32 error 95x larger (1.8e-2 of the row's largest value on 8.6.0,
    over the TF32 tolerance) for an input dependence of 4.5 instead of 0.05 standard deviations."""
    with torch.no_grad():
        out = head(features)
        head.weight.div_(out.std())
        head.bias.sub_(out.mean()).div_(out.std())
        out2 = head(features)
        head.bias.sub_(out2.mean())


def mobilenet_v3_small(model: ZooModel, gen: torch.Generator) -> nn.Module:
    """torchvision's MobileNetV3 with the first `blocks` blocks of mobilenet_v3_small's configuration,
    BatchNorm statistics measured on N(0, 1) images and the classifier rescaled to unit-variance
    logits (random initialisation alone gives logits ~1e-9)."""
    from torchvision.models import mobilenetv3
    settings, _ = mobilenetv3._mobilenet_v3_conf("mobilenet_v3_small")
    net = mobilenetv3.MobileNetV3(settings[:model.params["blocks"]], model.params["last_channel"],
                                  num_classes=model.params["num_classes"])
    _randomise_(net, gen)
    shape = model.input_shapes["image"]
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the calibration passes
    net.train()
    with torch.no_grad():
        for _ in range(8):
            net(torch.randn((16,) + tuple(shape[1:]), generator=gen))
    net.eval()
    with torch.no_grad():
        x = torch.randn((32,) + tuple(shape[1:]), generator=gen)
        feats = torch.flatten(net.avgpool(net.features(x)), 1)
        for layer in list(net.classifier)[:-1]:
            feats = layer(feats)
    _calibrate_head_(net.classifier[-1], feats)
    return net


class TokenEncoder(nn.Module):
    """nn.TransformerEncoder over float token embeddings, a LayerNorm and a per-token classifier."""

    def __init__(self, d_model: int, heads: int, ff: int, layers: int, classes: int) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout=0.0, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.encoder(tokens)))


def transformer_encoder(model: ZooModel, gen: torch.Generator) -> nn.Module:
    """A small encoder; nn.TransformerEncoder deep-copies one layer, so every layer is
    re-initialised on its own (else the exporter shares their identical weights)."""
    net = TokenEncoder(**model.params)
    for p in net.parameters():
        with torch.no_grad():
            if p.dim() > 1:
                bound = (6.0 / (p.shape[0] + p.shape[1])) ** 0.5
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * bound)
    _randomise_(net, gen)
    net.eval()
    shape = model.input_shapes["tokens"]
    with torch.no_grad():
        feats = net.norm(net.encoder(torch.randn((32,) + tuple(shape[1:]), generator=gen)))
    _calibrate_head_(net.head, feats)
    return net


def build(model: ZooModel) -> nn.Module:
    torch.manual_seed(model.seed)
    gen = torch.Generator().manual_seed(model.seed)
    return globals()[model.builder](model, gen).eval()


def export(model: ZooModel, path: Path, progress: Optional[Callable[[str], None]] = print) -> Dict[str, Any]:
    """Build `model`, export it to `path` (ONNX), check it with ONNX Runtime; return metadata."""
    import onnx
    import torchvision

    from refit_core.fileio import sha256_file
    from refit_core.models.ort_session import ort_session
    say = progress or (lambda s: None)
    t0 = time.perf_counter()
    say(f"zoo: building {model.name} (torch {torch.__version__}, seed {model.seed})")
    net = build(model)
    names = sorted(model.input_shapes)
    gen = torch.Generator().manual_seed(model.seed + 1)
    example = tuple(torch.randn(model.input_shapes[n], generator=gen) for n in names)
    say(f"zoo: exporting {model.name} to ONNX (opset {model.opset})")
    torch.onnx.export(net, example, str(path), input_names=names, output_names=["output"],
                      opset_version=model.opset, do_constant_folding=True, dynamo=False)
    onnx.checker.check_model(str(path))
    with torch.no_grad():
        want = net(*example).numpy()
    got = ort_session(path.read_bytes()).run(["output"], {n: t.numpy() for n, t in zip(names, example)})[0]
    err = float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-30))
    if not err <= EXPORT_RTOL:
        raise RuntimeError(f"zoo model {model.name}: ONNX Runtime differs from PyTorch by {err:.3g} (relative)")
    spread = float(np.std(want))
    if not spread > 0.1:
        raise RuntimeError(f"zoo model {model.name}: outputs are degenerate (std {spread:.3g})")
    with torch.no_grad():
        other = net(*(torch.randn(model.input_shapes[n], generator=gen) for n in names)).numpy()
    moves = float(np.max(np.abs(other - want)) / spread)
    if not moves >= MIN_INPUT_DEPENDENCE:
        raise RuntimeError(f"zoo model {model.name}: outputs hardly depend on the input (another input moves them "
                           f"by {moves:.3g} standard deviations, under {MIN_INPUT_DEPENDENCE})")
    say(f"zoo: {model.name} exported in {time.perf_counter() - t0:.1f} s "
        f"({path.stat().st_size / 1e6:.1f} MB, ONNX Runtime vs PyTorch {err:.1e}, output std {spread:.2f}, "
        f"another input moves them by {moves:.2g} std)")
    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "onnx": onnx.__version__,
            "size": path.stat().st_size, "sha256": sha256_file(path), "ort_vs_torch_rel": err,
            "output_std": spread, "input_dependence": moves}
