"""Victim models: the ReLU networks scenarios build (MLPs and CNNs), the wrappers training leaves around them, and
their margins."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from auditkit.environment import DEFAULT_DTYPE, resolve_dtype
from auditkit.errors import UnsupportedModelError

BiasMode = Literal["none", "first", "all"]
PoolMode = Literal["none", "max", "avg"]


@dataclass(frozen=True)
class ConvLayer:
    """One convolution of a CNN victim: ``channels`` out, a square ``kernel`` at ``stride``, then ReLU, then
    optionally a 2x2 pooling (``pool``, stride 2)."""

    channels: int
    kernel: int = 5
    stride: int = 1
    pool: PoolMode = "none"


def build_mlp(
    input_dim: int,
    hidden: list[int],
    bias: BiasMode = "none",
    init_scale: float | None = None,
    seed: int = 0,
    dtype: torch.dtype | str = DEFAULT_DTYPE,
    outputs: int = 1,
) -> nn.Sequential:
    """``Linear, ReLU, ..., Linear(., outputs)``: one output for a binary task, C for C classes.

    Args:
        input_dim: the input width (flat rows).
        hidden: the hidden layers' widths.
        bias: "none" gives a homogeneous net (the standard victim), "all" biases in every layer
            (non-homogeneous), "first" only in the first layer (the authors' released nets).
        init_scale: first-layer weights (and bias) drawn N(0, init_scale^2); other layers PyTorch's default.
        seed: the initialisation's seed (the global RNG is left as it was).
        dtype: the weights' precision.
        outputs: 1 for a binary task (labels -1/+1), C for C classes.

    Returns:
        The network, at its seeded initialisation.
    """
    widths = [input_dim, *hidden, outputs]
    return _seeded(lambda: _dense(widths, bias, first=True, dtype=resolve_dtype(dtype)), init_scale, seed)


def build_cnn(
    image_shape: tuple[int, ...],
    conv: list[ConvLayer],
    hidden: list[int],
    bias: BiasMode = "none",
    init_scale: float | None = None,
    seed: int = 0,
    dtype: torch.dtype | str = DEFAULT_DTYPE,
    outputs: int = 1,
) -> nn.Sequential:
    """``Unflatten, (Conv2d, ReLU[, pool]) x len(conv), Flatten, Linear, ReLU, ..., Linear(., outputs)``: a ReLU
    CNN that takes flat rows (the Unflatten restores ``image_shape``, (H, W) read as one channel), as every
    victim does. bias, init_scale and seed as :func:`build_mlp` (the first layer is the first convolution)."""
    shape = image_shape if len(image_shape) == 3 else (1, *image_shape)
    widths, _ = cnn_widths(shape, conv, hidden, outputs)
    dtype = resolve_dtype(dtype)

    def layers() -> nn.Sequential:
        modules: list[nn.Module] = [nn.Unflatten(1, tuple(shape))]
        channels = shape[0]
        for index, layer in enumerate(conv):
            has_bias = bias == "all" or (bias == "first" and index == 0)
            modules += [nn.Conv2d(channels, layer.channels, layer.kernel, layer.stride, bias=has_bias, dtype=dtype)]
            modules += [nn.ReLU()] + ([POOLS[layer.pool](2)] if layer.pool != "none" else [])
            channels = layer.channels
        dense = _dense([widths[len(conv)], *hidden, outputs], bias, first=False, dtype=dtype)
        return nn.Sequential(*modules, nn.Flatten(), *dense)

    return _seeded(layers, init_scale, seed)


POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def cnn_widths(
    image_shape: tuple[int, int, int], conv: list[ConvLayer], hidden: list[int], outputs: int
) -> tuple[list[int], int]:
    """Every layer's output width (flattened), input first, and the parameter count of a :func:`build_cnn`
    network (biases counted as if present: an upper estimate), by arithmetic alone (nothing allocated).

    Raises:
        ValueError: naming the layer whose kernel or pooling no longer fits the image it receives.
    """
    channels, height, width = image_shape
    widths, parameters = [channels * height * width], 0
    for index, layer in enumerate(conv):
        if layer.kernel > min(height, width):
            raise ValueError(f"conv.{index}.kernel: {layer.kernel} exceeds the {height}x{width} image it receives")
        height, width = (height - layer.kernel) // layer.stride + 1, (width - layer.kernel) // layer.stride + 1
        parameters += channels * layer.channels * layer.kernel**2 + layer.channels
        channels = layer.channels
        if layer.pool != "none":
            if min(height, width) < 2:
                raise ValueError(f"conv.{index}.pool: the {height}x{width} image it receives is too small to pool")
            height, width = height // 2, width // 2
        widths.append(channels * height * width)
    dense = [widths[-1], *hidden, outputs]
    parameters += sum(a * b + b for a, b in zip(dense[:-1], dense[1:]))
    return widths + dense[1:], parameters


def _dense(widths: list[int], bias: BiasMode, *, first: bool, dtype: torch.dtype) -> list[nn.Module]:
    """``Linear, ReLU, ..., Linear`` through ``widths``; ``first``: these are the network's first layers (for
    ``bias: first``)."""
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        has_bias = bias == "all" or (bias == "first" and first and index == 0)
        layers.append(nn.Linear(fan_in, fan_out, bias=has_bias, dtype=dtype))
        if index < len(widths) - 2:
            layers.append(nn.ReLU())
    return layers


def _seeded(build, init_scale: float | None, seed: int) -> nn.Sequential:
    """``build()`` with the global RNG seeded by ``seed`` (and restored after); the first layer with weights
    redrawn N(0, init_scale^2) when given."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        built = build()
        model = built if isinstance(built, nn.Module) else nn.Sequential(*built)
        if init_scale is not None:
            first = next(m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d))
            with torch.no_grad():
                first.weight.normal_(0.0, init_scale)
                if first.bias is not None:
                    first.bias.normal_(0.0, init_scale)
        return model
    finally:
        torch.random.set_rng_state(generator_state)


def unwrap(model: nn.Module) -> nn.Module:
    """Strip wrappers (Opacus GradSampleModule, DataParallel, torch.compile) that keep the net inside."""
    while True:
        inner = getattr(model, "_module", None) or getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def assigned_classes(outputs: torch.Tensor) -> torch.Tensor:
    """The class (n, C) outputs assign each row, in the labels' encoding (float64): -1/+1 for one output (the
    sign), 0..C-1 for C (the largest)."""
    outputs = outputs.reshape(len(outputs), -1).double()
    return torch.where(outputs[:, 0] > 0, 1.0, -1.0) if outputs.shape[1] == 1 else outputs.argmax(1).double()


def outputs_tensor(value) -> torch.Tensor:
    """A model's ``forward`` result when it is the outputs (a tensor); anything else (a tuple of logits and
    features, a dict) is one :class:`UnsupportedModelError` line saying what to give instead."""
    if isinstance(value, torch.Tensor):
        return value
    raise UnsupportedModelError(
        f"model: its forward returns a {type(value).__name__}, not a tensor of outputs: audit a module whose forward "
        "returns the outputs alone (wrap it: lambda x: model(x)[0], as an nn.Module)"
    )


def model_margins(model: nn.Module, x, labels) -> np.ndarray:
    """Each sample's margin under ``model`` (a float64 copy in eval mode, on the CPU): ``y Phi(x)`` for one
    output (labels -1/+1), ``Phi_y(x) - max_{k != y} Phi_k(x)`` for C outputs (labels 0..C-1); positive = correct.

    Args:
        model: the victim.
        x: inputs, (n, d) (array or tensor).
        labels: (n,), in the model's encoding.

    Returns:
        (n,) float64 margins.
    """
    net = copy.deepcopy(unwrap(model)).to("cpu", torch.float64).eval()
    inputs, y = (torch.as_tensor(np.asarray(a), dtype=torch.float64) for a in (x, labels))
    with torch.no_grad():
        out = outputs_tensor(net(inputs)).reshape(len(inputs), -1)
    if out.shape[1] == 1:
        return (out[:, 0] * y).numpy()
    own = out.gather(1, y.long()[:, None]).squeeze(1)
    others = out.scatter(1, y.long()[:, None], -torch.inf).max(1).values
    return (own - others).numpy()
