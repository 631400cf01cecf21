"""One search step's losses (stationarity, the box prior, the multipliers' floor) and their gradients, run eagerly
or compiled (``attack.compile``): torch.compile fuses the step's many small kernels, and on a GPU its
"reduce-overhead" mode replays the step and its backward as CUDA graphs, one launch instead of hundreds. On the
CPU the restarts go through in chunks small enough for the allocator to reuse their memory (:func:`take_step`)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from auditkit.attacks.kkt.kernel import MLPLayers, Objective, candidate_lambdas, stationarity_loss
from auditkit.errors import UnsupportedModelError

StepLosses = Callable[..., tuple[torch.Tensor, torch.Tensor]]
# On the CPU, the most bytes one of a chunk's (restarts, m, width) intermediates may take. glibc serves every
# allocation past its largest mmap threshold (32 MiB) with fresh pages, so a step over bigger tensors spends
# most of its time in page faults; well below it memory is reused, and the smaller chunks measured faster
# (benchmarks/results/scale_variants.md, section 11).
CPU_CHUNK_BYTES = 4 * 2**20


def step_losses(
    objective: Objective,
    x: torch.Tensor,
    lam: torch.Tensor,
    labels: torch.Tensor,
    alpha: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    lambda_min: torch.Tensor | None,
    prior_weight: float,
    lambda_weight: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-restart (losses, stationarity), shape (R,) each: the stationarity residual plus ``prior_weight`` times
    the squared excess of x over [lower, upper], plus ``lambda_weight`` times the squared shortfall of each
    candidate's multipliers below ``lambda_min`` ((R,); None: signed multipliers, no floor)."""
    stationarity = stationarity_loss(objective, x, lam, labels, alpha)
    prior = (torch.relu(x - upper).pow(2) + torch.relu(lower - x).pow(2)).sum((1, 2))
    losses = stationarity + prior_weight * prior
    if lambda_min is not None:
        shortfall = torch.relu(lambda_min[:, None] - candidate_lambdas(lam, labels))
        losses = losses + lambda_weight * shortfall.pow(2).sum(1)
    return losses, stationarity


def losses_function(compiled: bool, objective: Objective, device: torch.device | str) -> StepLosses:
    """:func:`step_losses`, or its compiled form (``compiled``; MLP victims: the closed-form kernel). On a GPU
    each call first marks a new step, so that the previous replay's outputs, already consumed, are reused."""
    if not compiled:
        return step_losses
    if not isinstance(objective.target, MLPLayers):
        raise UnsupportedModelError("attack.compile: the compiled step runs on MLP victims (Linear and ReLU) only")
    graphs = torch.device(device).type == "cuda"
    fused = torch.compile(step_losses, mode="reduce-overhead" if graphs else None)
    if not graphs:
        return fused

    def replayed(*args) -> tuple[torch.Tensor, torch.Tensor]:
        torch.compiler.cudagraph_mark_step_begin()
        return fused(*args)

    return replayed


def restart_chunks(tensor: torch.Tensor, bytes_per_restart: int) -> list[slice]:
    """Consecutive slices of ``tensor``'s restarts (its first dimension): one for all of them on a GPU (its caching
    allocator reuses memory, and one launch for all is what makes it fast); on the CPU as many restarts a slice as
    keep it within CPU_CHUNK_BYTES at ``bytes_per_restart`` each, at least one."""
    size = len(tensor)
    if tensor.device.type == "cpu":
        size = max(1, min(size, CPU_CHUNK_BYTES // bytes_per_restart))
    return [slice(start, start + size) for start in range(0, len(tensor), size)]


def step_chunks(objective: Objective, x: torch.Tensor) -> list[slice]:
    """The step's chunks of x's (R, m, d) restarts, sized by the widest (restarts, m, width) intermediate; one for
    non-MLP victims (their loss already runs one restart at a time)."""
    if not isinstance(objective.at, MLPLayers):
        return [slice(0, len(x))]
    widest = max(x.shape[2], *(weight.shape[0] for weight in objective.at.weights))
    return restart_chunks(x, x.shape[1] * widest * x.element_size())


def take_step(
    compute: StepLosses,
    objective: Objective,
    x: torch.Tensor,
    lam: torch.Tensor,
    labels: torch.Tensor,
    *args,
    active: torch.Tensor,
    backward: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-restart (losses, stationarity) of ``compute`` (:func:`losses_function`; ``args``: alpha (R,),
    lower, upper, lambda_min (R,) or None, prior_weight, lambda_weight), detached; with ``backward``, the
    gradient of the ``active`` restarts' summed losses is written into ``x.grad`` and ``lam.grad`` (their buffers
    reused from the last step). The restarts go through in :func:`step_chunks`, each its own graph, freed before
    the next."""
    alpha, lower, upper, floor, *weights = args
    losses, stationarity = [], []
    if backward:  # every chunk writes its part
        for leaf in (x, lam):
            leaf.grad = leaf.grad if leaf.grad is not None and leaf.grad.shape == leaf.shape else torch.empty_like(leaf)
    for part in step_chunks(objective, x):
        leaves = x[part].detach().requires_grad_(backward), lam[part].detach().requires_grad_(backward)
        part_floor = None if floor is None else floor[part]
        loss, residual = compute(objective, *leaves, labels, alpha[part], lower, upper, part_floor, *weights)
        if backward:
            chosen = torch.where(active[part], loss, torch.zeros_like(loss)).sum()
            for leaf, found in zip((x, lam), torch.autograd.grad(chosen, leaves)):
                leaf.grad[part] = found
        losses.append(loss.detach())
        stationarity.append(residual.detach())
    return torch.cat(losses), torch.cat(stationarity)
