"""Full-batch gradient descent for a small ReLU MLP without autograd: the 2-D victims' long training.

On a few dozen points each epoch is a handful of small matrix products, so autograd's graph and the
optimizer's bookkeeping cost as much as the arithmetic, an epoch at a time. Here each epoch is the forward and a
hand-written backward (the gradient of the mean logistic loss, plus L2 weight decay as ``torch.optim.SGD`` adds
it) on the weights in place. Its epoch time at width 200 is on the (f) section of benchmarks/results/findings
at commit b83d2b9 (against ``train_mlp``: that commit's message); at width 1,000 the two are not compared. Same steps as
``train_mlp(model, x, y, lr=..., epochs=..., weight_decay=...)`` (tests/test_benchmarks.py checks it).
"""

from __future__ import annotations

import torch
from torch import nn


def train_gd(
    model: nn.Sequential, x: torch.Tensor, labels: torch.Tensor, *, lr: float, epochs: int, weight_decay: float = 0.0
) -> None:
    """Train ``model`` (``Linear, ReLU, ..., Linear(., 1)``) on ``x`` and ``labels`` in {-1, +1} by full-batch
    GD on the logistic loss, in place."""
    linears = [module for module in model if isinstance(module, nn.Linear)]
    weights = [layer.weight.detach() for layer in linears]
    biases = [None if layer.bias is None else layer.bias.detach() for layer in linears]
    labels = labels.to(x.dtype)
    with torch.no_grad():
        for _ in range(epochs):
            inputs, pre_activations, h = [], [], x
            for weight, bias in zip(weights, biases):
                inputs.append(h)
                z = h @ weight.T if bias is None else torch.addmm(bias, h, weight.T)
                pre_activations.append(z)
                h = z.clamp_min(0) if len(inputs) < len(weights) else z  # no ReLU after the output layer
            output = pre_activations.pop().squeeze(-1)
            delta = (-labels * torch.sigmoid(-labels * output) / len(x)).unsqueeze(-1)  # d loss / d output
            for index in range(len(weights) - 1, -1, -1):
                weight, bias = weights[index], biases[index]
                gradient = delta.T @ inputs[index]
                bias_gradient = delta.sum(0) if bias is not None else None
                if index > 0:
                    delta = (delta @ weight) * (pre_activations[index - 1] > 0)
                weight -= lr * (gradient + weight_decay * weight if weight_decay else gradient)
                if bias is not None:
                    bias -= lr * (bias_gradient + weight_decay * bias if weight_decay else bias_gradient)
