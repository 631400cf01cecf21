"""Victim models: ReLU MLPs trained to (near) zero training error by full-batch gradient descent."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from auditkit.environment import DEFAULT_DTYPE, resolve_dtype
from auditkit.results import PrivacyFacts, TrainingLog

BiasMode = Literal["none", "first", "all"]


def build_mlp(
    input_dim: int,
    hidden: list[int],
    bias: BiasMode = "none",
    init_scale: float | None = None,
    seed: int = 0,
    dtype: torch.dtype | str = DEFAULT_DTYPE,
) -> nn.Sequential:
    """``Linear, ReLU, ..., Linear(., 1)``.

    bias: "none" gives a homogeneous net (the standard victim), "all" biases in every layer
    (non-homogeneous), "first" only in the first layer (the authors' released nets).
    init_scale: first-layer weights (and bias) drawn N(0, init_scale^2); other layers PyTorch's default.
    """
    dtype = resolve_dtype(dtype)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        widths = [input_dim, *hidden, 1]
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


def logistic_loss(output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on logits with labels in {-1, +1}: mean log(1 + exp(-y Phi))."""
    return F.softplus(-labels * output).mean()


def accuracy(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> float:
    if len(x) == 0:
        return math.nan
    with torch.no_grad():
        return (torch.sign(model(x).squeeze(-1)) == labels).double().mean().item()


def train_gd(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    lr: float,
    epochs: int,
    weight_decay: float = 0.0,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    progress: Callable[[int, float], None] | None = None,
    log_every: int = 100,
    compile: bool = False,
) -> TrainingLog:
    """Full-batch gradient descent on the logistic loss (weight decay as an L2 term in the gradient).

    compile: run the step through torch.compile (with CUDA graphs on a GPU, where kernel launches
    dominate a small full-batch step); costs a one-off compilation (3-8 s measured on a 2-core CPU).
    """
    start = time.perf_counter()
    step = gd_step(model, lr=lr, weight_decay=weight_decay, compile=compile)
    for epoch in range(1, epochs + 1):
        loss = step(x, labels)
        if progress is not None and (epoch % log_every == 0 or epoch == epochs):
            progress(epoch, loss.item())
    recipe = {"optimizer": "gd", "lr": lr, "weight_decay": weight_decay, "compiled": compile}
    return finish_training(model, x, labels, test, epochs, start, recipe)


def gd_step(
    model: nn.Module, *, lr: float, weight_decay: float = 0.0, compile: bool = False
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A function doing one full-batch GD step on ``model`` and returning the loss before it."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)

    def objective(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return logistic_loss(model(x).squeeze(-1), labels)

    update = optimizer.step
    graphs = compile and next(model.parameters()).device.type == "cuda"
    if compile:
        objective = torch.compile(objective, mode="reduce-overhead" if graphs else None)
        update = torch.compile(optimizer.step)

    def step(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if graphs:  # a new iteration: the previous replay's outputs (loss, grads) are consumed
            torch.compiler.cudagraph_mark_step_begin()
        optimizer.zero_grad(set_to_none=True)
        loss = objective(x, labels)
        loss.backward()
        update()
        return loss

    return step


def finish_training(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    test: tuple[torch.Tensor, torch.Tensor] | None,
    epochs: int,
    start: float,
    recipe: dict,
    privacy: PrivacyFacts | None = None,
) -> TrainingLog:
    """Final loss and accuracies of a trained victim, with the time since ``start``."""
    with torch.no_grad():
        final_loss = logistic_loss(model(x).squeeze(-1), labels).item()
    return TrainingLog(
        train_accuracy=accuracy(model, x, labels),
        test_accuracy=accuracy(model, *test) if test is not None else math.nan,
        final_loss=final_loss,
        epochs=epochs,
        seconds=time.perf_counter() - start,
        recipe=recipe,
        privacy=privacy,
    )
