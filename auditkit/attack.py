"""What a reconstruction attack is given and what it returns: the Auditor talks to any attack through this.

An attack runs on a victim's layers and what the attacker knows (how many samples were trained on,
the valid input range, public data of the same distribution, and, for the auditor's own selection
rule only, the training inputs) and returns candidate inputs with their multipliers and labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from auditkit.kernel import MLPLayers
from auditkit.results import AttackFacts

ProgressCallback = Callable[[int, float], None]  # (step, current loss)


@dataclass(frozen=True)
class AttackerKnowledge:
    """What the attack may use besides the weights. Arrays are flat rows in the victim's input space."""

    n_train: int
    lower: np.ndarray  # smallest valid input per dimension
    upper: np.ndarray  # largest valid input per dimension
    reference_inputs: np.ndarray | None = None  # public (non-member) data of the same distribution
    ground_truth: np.ndarray | None = None  # the training inputs: the auditor's view, never an outsider's
    pixel_offset: np.ndarray | None = None  # added to an input to get its pixels (e.g. the training mean)


@dataclass
class AttackOutput:
    """Candidates of the selected restarts, pooled, with the facts of how the attack ran."""

    candidates: np.ndarray  # (K, d), in the victim's input space
    lambdas: np.ndarray  # (K,)
    labels: np.ndarray  # (K,) in {-1, +1}
    restart: np.ndarray  # (K,) restart index of each candidate
    loss_history: np.ndarray  # (log points, R) total loss, NaN once a restart stopped
    history_steps: np.ndarray  # (log points,)
    facts: AttackFacts


class ReconstructionAttack(Protocol):
    """The interface the Auditor uses; a second attack is a new module implementing it."""

    name: str

    @property
    def steps(self) -> int:
        """Optimisation steps per restart (the length of the progress bar)."""

    def run(
        self,
        layers: MLPLayers,
        knowledge: AttackerKnowledge,
        *,
        seed: int,
        device: torch.device | str,
        dtype: torch.dtype,
        progress: ProgressCallback | None = None,
    ) -> AttackOutput: ...
