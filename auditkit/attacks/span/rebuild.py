"""Training inputs rebuilt inside the first layer's row space, by linear programs that never read the training set.

The training inputs are points of ``{h in rowspace : lower <= h <= upper}`` at which most coordinates sit on
the box (a digit has ~600 of its 784 pixels exactly 0): highly degenerate vertices of that polytope. A linear
program whose cost rewards the coordinates a public template leaves dark and penalises those it lights
(``1 - 2 t`` for the template ``t`` scaled to [0, 1]) ends at a vertex shaped like the template: each public
input of the same distribution steers one program towards a different training input. Past the templates,
each is reused shifted by up to two pixels each way (an image), or with fresh random positive weights per
coordinate (any other input).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.linalg import null_space
from scipy.optimize import linprog

SHIFT = 2  # pixels a reused template moves at most, each way


def template_costs(
    templates: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    programs: int,
    seed: int,
    image_shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """(programs, d) the programs' costs in input space: ``1 - 2 t`` per template ``t`` (scaled to [0, 1] by the
    valid range), in the templates' order, then again shifted by up to ``SHIFT`` pixels each way (when the
    inputs are images of ``image_shape``) or weighted by random weights in [0.5, 1.5], drawn from ``seed``."""
    span = np.where(upper > lower, upper - lower, 1.0)
    scaled = np.clip((templates - lower) / span, 0.0, 1.0)
    rows = np.arange(programs) % len(scaled)
    chosen = scaled[rows]
    reused = np.arange(programs) >= len(scaled)
    rng = np.random.default_rng(seed)
    if image_shape is not None and len(image_shape) in (2, 3):
        for index in np.flatnonzero(reused):
            moves = rng.integers(-SHIFT, SHIFT + 1, 2)
            chosen[index] = _shifted(chosen[index].reshape(image_shape), moves).reshape(-1)
        return 1.0 - 2.0 * chosen
    weights = np.ones_like(chosen)
    weights[reused] = rng.uniform(0.5, 1.5, (int(reused.sum()), chosen.shape[1]))
    return (1.0 - 2.0 * chosen) * weights


def _shifted(image: np.ndarray, moves: np.ndarray) -> np.ndarray:
    """``image`` moved by ``moves`` (rows, columns) along its last two axes, the uncovered border dark (0)."""
    moved = np.zeros_like(image)
    height, width = image.shape[-2:]
    down, right = int(moves[0]), int(moves[1])
    target = (slice(max(down, 0), height + min(down, 0)), slice(max(right, 0), width + min(right, 0)))
    source = (slice(max(-down, 0), height + min(-down, 0)), slice(max(-right, 0), width + min(-right, 0)))
    moved[..., target[0], target[1]] = image[..., source[0], source[1]]
    return moved


def rebuild_inputs(
    basis: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    costs: np.ndarray,
    slack: float,
    progress: Callable[[int, float], None] | None = None,
) -> np.ndarray:
    """(K, d) the vertices the programs reach, in input space (a program that fails adds none).

    Args:
        basis: (k, d) an orthonormal basis of the first layer's row space (inputs are ``basis.T @ a``).
        lower, upper: (d,) the valid input range.
        costs: (P, d) one program's cost per row (:func:`template_costs`).
        slack: how far outside the range a vertex may reach (the weights' rounding).
        progress: called as ``(program, vertices found)`` after each program.

    Returns:
        The solutions, in the programs' order.
    """
    found: list[np.ndarray] = []
    complement = null_space(basis).T if 2 * len(basis) > basis.shape[1] else None
    for index, cost in enumerate(costs):
        vertex = _vertex(basis, complement, lower - slack, upper + slack, cost)
        if vertex is not None:
            found.append(vertex)
        if progress is not None:
            progress(index + 1, float(len(found)))
    return np.array(found).reshape(len(found), basis.shape[1])


def _vertex(
    basis: np.ndarray, complement: np.ndarray | None, lower: np.ndarray, upper: np.ndarray, cost: np.ndarray
) -> np.ndarray | None:
    """The input minimising ``cost`` in the row space within the box (None when the program fails). A row space
    of more than half the width is written as its ``complement``'s equations, the box as bounds (three times
    faster at 500 of 784 dimensions); a smaller one by its coordinates, the box as inequalities."""
    if complement is not None:
        solution = linprog(
            cost,
            A_eq=complement,
            b_eq=np.zeros(len(complement)),
            bounds=list(zip(lower, upper, strict=True)),
            method="highs",
        )
        return solution.x if solution.status == 0 else None
    columns = basis.T
    solution = linprog(
        columns.T @ cost,
        A_ub=np.vstack([columns, -columns]),
        b_ub=np.concatenate([upper, -lower]),
        bounds=[(None, None)] * len(basis),
        method="highs",
    )
    return columns @ solution.x if solution.status == 0 else None
