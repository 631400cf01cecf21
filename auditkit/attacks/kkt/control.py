"""The start control: does the attack's objective single out the training set, whatever the search reached?

A search that finds nothing is evidence only when the weights do not hold the training set as solutions of
the attack's objective. The auditor can check exactly that, because it has the training set: short runs of
the attack started at the training samples (their multipliers fitted) and at as many non-members (labelled by
the model, multipliers fitted the same way). How far each start's candidate moves (NCC distance) is read
against the non-members': a start is *kept* when it moved less than all but ``FALSE_KEEP`` of the non-members
did (the threshold comes from the non-members alone) and stayed within ``KEPT_DISTANCE`` of its start (it is
still that image). Members kept significantly more often than non-members
(one-sided Fisher exact test) means the weights hold the training set and the search missed it; both kept
alike means the objective does not tell members from non-members, and a null result is evidence. Runs in
which nothing moved cannot tell either way.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from auditkit.attacks.kkt.network import victim_network
from auditkit.attacks.kkt.residual import kkt_residual
from auditkit.attacks.kkt.starts import predicted_labels
from auditkit.scoring.membership import SIGNIFICANCE, more_often
from auditkit.scoring.metrics import standardize
from auditkit.storage.safe_load import from_json_fields

STEPS = 500  # the control's steps per run (benchmarks/results/start_control.md measures the choice)
MOVED = 0.01  # median NCC distance of a run's candidates from their starts under which the run did not move
FALSE_KEEP = 0.05  # the share of non-members counted kept: the keep threshold is their moves' quantile
KEPT_DISTANCE = 0.1  # NCC distance 2 (1 - correlation): a start moved further (correlation under 0.95) is not kept


@dataclass(frozen=True)
class StartControl:
    """The attack started at the training samples and at as many non-members: how many of each it kept."""

    steps: int
    members: int
    members_kept: int
    nonmembers: int
    nonmembers_kept: int
    tolerance: float  # moved less than this: kept (the non-members' FALSE_KEEP quantile, KEPT_DISTANCE at most)
    members_moved: float  # median NCC distance of the members' run's candidates from their starts
    nonmembers_moved: float
    seconds: float

    @property
    def p_value(self) -> float:
        """One-sided Fisher exact test of 'members are kept more often than non-members'."""
        return more_often(self.members_kept, self.members, self.nonmembers_kept, self.nonmembers)

    @property
    def reading(self) -> str:
        """``holds`` (the weights single out the training set), ``alike`` (they do not: evidence) or ``still``
        (neither run moved: the control cannot tell)."""
        if self.p_value < SIGNIFICANCE:
            return "holds"
        if max(self.members_moved, self.nonmembers_moved) < MOVED:
            return "still"
        return "alike"

    def sentence(self) -> str:
        """What the control found, in plain words."""
        kept = (
            f"started at the training samples and at {self.nonmembers} non-members ({self.steps} steps each), the "
            f"attack kept {self.members_kept} of {self.members} training samples and {self.nonmembers_kept} of "
            f"{self.nonmembers} non-members"
        )
        if self.reading == "holds":
            return (
                f"{kept} (p = {self.p_value:.2g}): the weights hold {self.members_kept} of your samples as solutions "
                "of this attack; this search did not reach them"
            )
        if self.reading == "still":
            return f"{kept}, but neither run moved from its start, so the control cannot tell"
        return f"{kept}: the attack's objective does not single out the training set"

    def to_dict(self) -> dict:
        """The JSON form, with the derived test and reading."""
        return {**asdict(self), "p_value": self.p_value, "reading": self.reading}

    @classmethod
    def from_dict(cls, values: dict) -> StartControl:
        """Read back :meth:`to_dict` (the derived keys are recomputed; each field's type checked)."""
        found = from_json_fields(cls, values)
        if None in (found.tolerance, found.members_moved, found.nonmembers_moved, found.seconds):
            raise ValueError("start_control: a number is missing (null)")
        if not (0 <= found.members_kept <= found.members and 0 <= found.nonmembers_kept <= found.nonmembers):
            raise ValueError("start_control: a kept count outside its pool")
        return found


def moved(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """How far each run's candidate ended from its start: the NCC distance, (k,), in [0, 4].

    Args:
        starts: (k, d) the start images, in pixel space.
        ends: (k, d) where the run left each, in pixel space (NaN: it diverged, read as moved the most).
    """
    finite = np.isfinite(ends).all(1)
    distance = np.full(len(starts), 4.0)
    if finite.any():  # 2 (1 - correlation) of each start with its own end, as ncc_distance scores pairs
        before, after = (standardize(torch.as_tensor(rows[finite], dtype=torch.float64)) for rows in (starts, ends))
        distance[finite] = np.clip(2.0 - 2.0 * (before * after).sum(1).numpy(), 0.0, None)
    return distance


def run_start_control(
    attack,
    model,
    knowledge,
    train: tuple,
    nonmembers: np.ndarray,
    *,
    seed: int,
    device,
    dtype,
    steps: int = STEPS,
) -> StartControl | None:
    """The start control of ``attack`` (a KKT-family attack) on ``model``.

    Args:
        attack: the attack whose objective is checked; the control runs its recipe restart (one restart, no
            search, one pass) for ``steps`` steps from each start.
        model: the victim.
        knowledge: what the attack was given (the valid range, public data, the initial weights).
        train: the training inputs and labels (float64 tensors): the auditor's view.
        nonmembers: (P, d) held-out inputs; as many as the training samples are drawn by ``seed``.
        seed, device, dtype: as the attack's own run.
        steps: the steps of each run.

    Returns:
        The control, or None without non-members (nothing to compare with).
    """
    if nonmembers is None or not len(nonmembers) or steps < 1:
        return None
    started = time.perf_counter()
    x, y = (t.detach().to("cpu", torch.float64) for t in train)
    count = min(len(x), len(nonmembers))
    chosen = np.sort(np.random.default_rng(seed).choice(len(nonmembers), count, replace=False))
    others = torch.as_tensor(np.asarray(nonmembers)[chosen], dtype=torch.float64)
    layers = victim_network(model)
    other_labels = predicted_labels(layers, others)
    recipe = type(attack)(
        attack.config, steps=steps, restarts=1, search="off", passes=1, early_stop_step=0, refine_steps=0
    )
    objective = attack.objective(model, knowledge)
    distances = []
    for inputs, labels in ((x, y), (others, other_labels)):
        _, fitted = kkt_residual(objective, inputs, labels)
        lambdas = fitted * len(inputs)
        if layers.outputs > 1 and attack.config.multiclass_margins == "all":
            lambdas = lambdas[:, None].expand(-1, layers.outputs) / (layers.outputs - 1)
        output = recipe.run(model, knowledge, seed=seed, device=device, dtype=dtype, initial=(inputs, lambdas, labels))
        ends = output.candidates if len(output.candidates) == len(inputs) else np.full(inputs.shape, np.nan)
        distances.append(moved(knowledge.to_pixels(inputs.numpy()), knowledge.to_pixels(ends)))
    members, others_moved = distances
    tolerance = min(float(np.quantile(others_moved, FALSE_KEEP)), KEPT_DISTANCE)
    kept = [int((d < tolerance).sum()) for d in distances]
    seconds = time.perf_counter() - started
    medians = [float(np.median(d)) for d in distances]
    return StartControl(steps, len(x), kept[0], count, kept[1], tolerance, *medians, seconds)
