"""Deflation: the KKT search run in passes, each on what the earlier passes left of the weights.

After a pass, the candidates of its best restart (by the selection rule) that carry the largest multipliers are
frozen: their share of the stationarity sum (their own multipliers, the pass's smoothed ReLU) is subtracted from
the objective's target, and the next pass searches the remainder with fresh candidates. The result pools every
pass: a later pass's restarts carry the frozen candidates beside their own, so that their candidates and residuals
read against the whole target, as a single pass's would.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from auditkit.attacks.base import AttackOutput, ProgressCallback
from auditkit.attacks.kkt.kernel import (
    MLPLayers,
    Objective,
    candidate_lambdas,
    explained,
)
from auditkit.errors import UnsupportedModelError


@dataclass(frozen=True)
class BestRestart:
    """One pass's best restart as the search left it: candidates (m, d), raw multipliers ((m,) or (m, C)),
    labels (m,) and the alpha its smoothed ReLU used."""

    x: torch.Tensor
    lambdas: torch.Tensor
    labels: torch.Tensor
    alpha: torch.Tensor


@dataclass(frozen=True)
class Pass:
    """One search's output, its best restart, and its target's norm (what its relative residuals divide by)."""

    output: AttackOutput
    best: BestRestart | None  # None when every restart diverged
    target_norm: float


Search = Callable[[Objective, int, ProgressCallback | None], Pass]  # (objective, pass index, progress) -> Pass


def deflated_search(
    victim: Objective, passes: int, fraction: float, search: Search, progress: ProgressCallback | None, steps: int
) -> AttackOutput:
    """``passes`` searches, each after the first on the target less the candidates frozen so far.

    Args:
        victim: the whole objective (its target: the weights to explain).
        passes: how many searches.
        fraction: the share of the best restart's candidates frozen after each pass, largest multipliers first.
        search: runs one pass on an objective.
        progress: called as ``(step, loss)`` over all passes together (``steps`` a pass).
        steps: the steps of one pass.

    Returns:
        Every pass's pooled candidates; a later pass's restarts hold the frozen candidates too.
    """
    if not isinstance(victim.target, MLPLayers):
        raise UnsupportedModelError("attack.passes: deflation runs on MLP victims (Linear and ReLU layers) only")
    objective, frozen, done = victim, [], []
    for index in range(passes):
        shifted = None if progress is None else (lambda step, loss, at=index * steps: progress(at + step, loss))
        current = search(objective, index, shifted)
        done.append((current, list(frozen)))
        if current.best is None or index == passes - 1:
            break
        kept, share = _freeze(objective, current.best, fraction)
        frozen.append(kept)
        objective = dataclasses.replace(objective, target=_minus(objective.target, share))
    whole = victim.norm().item()
    return _pooled([(run, _stack(held), run.target_norm / whole) for run, held in done])


def _freeze(objective: Objective, best: BestRestart, fraction: float) -> tuple[tuple, list[torch.Tensor]]:
    """The best restart's candidates with the largest multipliers, (x, labels, total multipliers) as numpy, and
    their share of the stationarity sum (parameter-shaped, averaged over the objective's points)."""
    totals = candidate_lambdas(best.lambdas[None], best.labels)[0]
    m = len(best.labels)
    keep = torch.argsort(totals, descending=True)[: max(1, math.ceil(fraction * m))]
    x, lambdas, labels = best.x[keep][None], best.lambdas[keep][None], best.labels[keep]
    placed = objective.to(x.device, x.dtype)
    with torch.no_grad():
        share = [g[0] * len(keep) / m for g in explained(placed, x, lambdas, labels, best.alpha)]  # the search's 1/m
    as_numpy = (x[0].cpu().double().numpy(), labels.cpu().double().numpy(), totals[keep].cpu().double().numpy())
    return as_numpy, share


def _minus(target: MLPLayers, share: list[torch.Tensor]) -> MLPLayers:
    """``target - share``, layer by layer (``share`` in :attr:`MLPLayers.parameters` order)."""
    rest = iter(share)
    weights, biases = [], []
    for weight, bias in zip(target.weights, target.biases):
        weights.append(weight - next(rest).to(weight))
        biases.append(None if bias is None else bias - next(rest).to(bias))
    return MLPLayers(tuple(weights), tuple(biases))


def _stack(frozen: list[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    if not frozen:
        return None
    return tuple(np.concatenate(parts) for parts in zip(*frozen))


def _pooled(runs: list[tuple[Pass, tuple | None, float]]) -> AttackOutput:
    """One output from every pass: restarts renumbered pass by pass, each later pass's pooled restarts with the
    frozen candidates prepended, residuals and scores relative to the whole target."""
    first = runs[0][0].output
    restarts = first.facts.restarts
    candidates, labels, lambdas, restart, histories, steps_logged = [], [], [], [], [], []
    facts: dict[str, list] = {
        key: []
        for key in ("restart_scores", "final_loss", "relative_residual", "selected_restarts", "early_stopped_restarts")
    }
    settings: dict[str, list[float]] = {key: [] for key in first.facts.restart_settings}
    diverged, seconds, offset = [], 0.0, 0
    for index, (run, held, ratio) in enumerate(runs):
        output, base = run.output, index * restarts
        for r in np.unique(output.restart).tolist():
            mine = output.restart == r
            parts = [(output.candidates[mine], output.labels[mine], output.lambdas[mine])]
            if held is not None:
                parts.insert(0, held)
            for store, values in zip((candidates, labels, lambdas), zip(*parts)):
                store.append(np.concatenate(values))
            restart.append(np.full(sum(len(p[0]) for p in parts), base + r))
        own = output.facts
        scale = ratio if own.selection_rule == "kkt_residual" else 1.0
        facts["restart_scores"] += [s * scale for s in own.restart_scores]
        facts["final_loss"] += own.final_loss
        facts["relative_residual"] += [v * ratio for v in own.relative_residual]
        facts["selected_restarts"] += [base + r for r in own.selected_restarts]
        facts["early_stopped_restarts"] += [base + r for r in own.early_stopped_restarts]
        diverged += [{**d, "restart": base + d["restart"]} for d in own.diverged]
        for key in settings:
            settings[key] += own.restart_settings[key]
        histories.append(output.loss_history)
        steps_logged.append(output.history_steps + offset)
        offset += int(output.history_steps[-1]) + 1 if len(output.history_steps) else 0
        seconds += own.seconds
    history = np.full((sum(len(h) for h in histories), len(runs) * restarts), np.nan)
    row = 0
    for index, block in enumerate(histories):
        history[row : row + len(block), index * restarts : (index + 1) * restarts] = block
        row += len(block)
    combined = dataclasses.replace(
        first.facts,
        **facts,
        restarts=len(runs) * restarts,
        restart_settings=settings,
        diverged=diverged,
        candidates=int(sum(len(c) for c in candidates)),
        seconds=seconds,
        passes=len(runs),
    )
    return AttackOutput(
        candidates=np.concatenate(candidates),
        labels=np.concatenate(labels),
        lambdas=np.concatenate(lambdas),
        restart=np.concatenate(restart),
        loss_history=history,
        history_steps=np.concatenate(steps_logged),
        facts=combined,
    )
