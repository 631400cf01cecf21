"""Victim models: the ReLU MLPs scenarios build, the wrappers training leaves around them, and their margins."""

from __future__ import annotations

import copy
from typing import Literal

import numpy as np
import torch
from torch import nn

from auditkit.environment import DEFAULT_DTYPE, resolve_dtype

BiasMode = Literal["none", "first", "all"]


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

    bias: "none" gives a homogeneous net (the standard victim), "all" biases in every layer
    (non-homogeneous), "first" only in the first layer (the authors' released nets).
    init_scale: first-layer weights (and bias) drawn N(0, init_scale^2); other layers PyTorch's default.
    """
    dtype = resolve_dtype(dtype)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        widths = [input_dim, *hidden, outputs]
        layers: list[nn.Module] = []
        for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            has_bias = bias == "all" or (bias == "first" and index == 0)
            layers.append(nn.Linear(fan_in, fan_out, bias=has_bias, dtype=dtype))
            if index < len(widths) - 2:
                layers.append(nn.ReLU())
        model = nn.Sequential(*layers)
        if init_scale is not None:
            first = model[0]
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
        out = net(inputs).reshape(len(inputs), -1)
    if out.shape[1] == 1:
        return (out[:, 0] * y).numpy()
    own = out.gather(1, y.long()[:, None]).squeeze(1)
    others = out.scatter(1, y.long()[:, None], -torch.inf).max(1).values
    return (own - others).numpy()
