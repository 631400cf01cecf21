"""A dense layer's row space: its singular spectrum, the rank at the spectral gap, and whether it is a proper
subspace spanned by the training inputs.

Every gradient step adds ``delta(x) h(x)^T`` to a dense layer's weights ``W``, so the rows of ``W_T - c W_0``
lie in the span of the layer's inputs ``h(x_i)`` at the training samples (GD, SGD, momentum, coupled weight
decay; ``W_T`` alone after long weight-decayed training or at a KKT point). With ``n`` training samples the
row space then has at most ``n`` dimensions; when that is fewer than the layer's inputs, it names the
training set's subspace. The spectrum is computed in float64 on the CPU whatever the attack's device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import nn

INIT_MULTIPLE_RANGE = (0.0, 1.5)  # c in W_T - c W_0: 1 without weight decay, (1 - lr wd)^T with it


@dataclass(frozen=True)
class LayerSpan:
    """One dense layer's row space, as read from its weights.

    ``rank`` is where consecutive singular values fall furthest apart among the first ``n + 1`` (``gap`` the
    ratio there): the capacity picture, never what is projected on. The membership test projects on the top
    ``dimension = n`` directions (all of them when fewer), which hold every training input whatever the rank:
    a largest gap can sit after a dominant direction (raw pixels' mean) far above where the members end.
    ``tail`` is the share of the squared singular values beyond ``n``: near 0 when training kept the rows in
    the span of n inputs. ``reason`` says why the layer cannot be read ('' when it can).
    """

    name: str
    inputs: int
    outputs: int
    rank: int
    gap: float
    dimension: int
    tail: float
    init_multiple: float | None  # c of W_T - c W_0 (None: no initial weights given)
    reason: str

    @property
    def applicable(self) -> bool:
        """Whether the layer's row space is a proper subspace spanned by at most n inputs."""
        return not self.reason


def dense_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The model's ``nn.Linear`` layers with their names, in the order the model registers them."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def read_span(
    name: str, weight: torch.Tensor, initial: torch.Tensor | None, n: int, max_tail: float
) -> tuple[LayerSpan, np.ndarray]:
    """The row space of one layer's weights for ``n`` training samples, and its basis.

    Args:
        name: the layer's name in the model.
        weight: its trained weights (outputs, inputs).
        initial: its weights when training started, or None; with them the row space is that of
            ``W_T - c W_0``, c fitted to leave the least energy beyond n directions.
        n: the number of training samples.
        max_tail: the share of energy beyond n above which the layer is not read.

    Returns:
        The layer's span and a (dimension, inputs) orthonormal basis of its row space (float64).
    """
    trained = weight.detach().to("cpu", torch.float64).numpy()
    outputs, inputs = trained.shape
    multiple = None
    if initial is not None:
        start = initial.detach().to("cpu", torch.float64).numpy()
        multiple = _fitted_multiple(trained, start, n)
        trained = trained - multiple * start
    _, values, rows = np.linalg.svd(trained, full_matrices=False)
    energy = values**2
    total = float(energy.sum())
    tail = float(energy[n:].sum() / total) if total > 0 else 1.0
    rank, gap = _gap(values, n)
    dimension = min(n, len(values))
    reason = _unreadable(outputs, inputs, n, dimension, tail, max_tail, total, initial is not None)
    span = LayerSpan(name, inputs, outputs, rank, gap, dimension, tail, multiple, reason)
    return span, rows[:dimension]


def _fitted_multiple(trained: np.ndarray, start: np.ndarray, n: int) -> float:
    """The c in [0, 1.5] that leaves ``trained - c start`` the least energy beyond n singular directions (0 and 1,
    the common cases, taken exactly when they leave the least)."""

    def tail(multiple: float) -> float:
        values = np.linalg.svd(trained - multiple * start, compute_uv=False)
        return float((values[n:] ** 2).sum() / max((values**2).sum(), np.finfo(float).tiny))

    fitted = minimize_scalar(tail, bounds=INIT_MULTIPLE_RANGE, method="bounded", options={"xatol": 1e-4}).x
    return float(min((0.0, 1.0, fitted), key=tail))  # the ends exactly: W_0 decayed away, or kept whole


def _gap(values: np.ndarray, n: int) -> tuple[int, float]:
    """The rank (1 to min(n, len - 1)) after which consecutive singular values fall furthest apart, and the ratio."""
    head = values[: min(n, len(values) - 1) + 1]
    if len(head) < 2 or head[0] == 0:
        return len(head), math.nan
    with np.errstate(divide="ignore"):
        ratios = head[:-1] / head[1:]
    rank = int(np.argmax(ratios)) + 1
    return rank, float(ratios[rank - 1])


def _unreadable(
    outputs: int, inputs: int, n: int, dimension: int, tail: float, max_tail: float, total: float, initial: bool
) -> str:
    """Why a layer's row space cannot single out the training inputs ('' when it can)."""
    if total == 0:
        return "its weights are all zero"
    if outputs <= n:
        return f"its {outputs} output rows are no more than the {n} training samples, so its row space says nothing"
    if dimension >= inputs:
        return f"{n} training inputs span all of its {inputs} input dimensions"
    if tail > max_tail:
        causes = "noise such as DP-SGD's, or Adam's rescaling" + (
            "" if initial else "; or the weights training started from, not given: give them (--init, init=)"
        )
        return (
            f"{tail:.0%} of its weights' energy lies beyond {n} directions: training did not keep its rows in the "
            f"span of the training inputs ({causes})"
        )
    return ""
