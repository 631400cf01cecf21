"""The owner's attack, registered as ``owner``: the KKT attack's search on what training added to theta_0.

Any first-order training from theta_0 that sums per-sample gradients (GD, minibatch SGD, momentum) gives
``theta_T - theta_0 = sum_t sum_i c_it grad f(theta_t; x_i)``; while the gradients change little along the
path, ``theta_T - c theta_0 ~= sum_i a_i grad f(theta*; x_i)`` with theta* theta_0 or the average of the
two ends, and c absorbing weight decay's shrinking of theta_0. The signs are fixed by the loss as in the
KKT problem (logistic: a_i = y_i lambda_i; cross-entropy: one non-negative multiplier per other class),
so the KKT attack's candidates, priors, restarts and selection run on that objective unchanged
(Loo et al., "Understanding Reconstruction Attacks with the Neural Tangent Kernel and Dataset Distillation",
ICLR 2024). DP-SGD's guarantee takes theta_0 as
public, so the DP ceilings bound this attacker too.
"""

from __future__ import annotations

from torch import nn

from auditkit.attacks.base import AttackerKnowledge
from auditkit.attacks.kkt.attack import KKTAttack
from auditkit.attacks.kkt.convergence import short_attack_warning
from auditkit.attacks.kkt.kernel import MLPLayers, Objective
from auditkit.attacks.kkt.network import victim_network
from auditkit.attacks.owner.config import OwnerConfig
from auditkit.attacks.owner.facts import OwnerFacts
from auditkit.attacks.registry import register_attack
from auditkit.errors import ConfigError

RECORDED_STEPS = 1500  # every recorded run converged by then (recipes_seed*.md at 2,000; tests/test_owner.py at 1,500)


@register_attack
class OwnerAttack(KKTAttack):
    """Reconstruct training inputs from theta_T - c theta_0, given the initial weights theta_0.

    Example:
        >>> attack = OwnerAttack(steps=2000, gradients_at="init")
        >>> attack.config.gradients_at
        'init'
    """

    name = "owner"
    config_type = OwnerConfig
    facts_type = OwnerFacts
    needs_initial = True
    reads_initial = True
    config: OwnerConfig

    def objective(self, model: nn.Module | MLPLayers, knowledge: AttackerKnowledge) -> Objective:
        """Target theta_T with theta_0's multiple free, gradients where ``gradients_at`` says."""
        if knowledge.initial is None:
            raise ConfigError(
                self.missing_initial("knowledge.initial", "AttackerKnowledge(initial=...), the Auditor's init=")
            )
        final = model if isinstance(model, MLPLayers) else victim_network(model)
        initial = victim_network(knowledge.initial)
        points = {"init": (initial,), "average": (initial, final), "final": (final,)}[self.config.gradients_at]
        return Objective(points, final, initial)

    def warning(self) -> str:
        """A warning when the steps are fewer than the owner's recorded runs needed to converge."""
        return short_attack_warning(self.config.steps, RECORDED_STEPS)

    def memory_bytes(self, n_train: int, widths: list[int], itemsize: int) -> int:
        """The KKT attack's, once per point the gradients are taken at."""
        return super().memory_bytes(n_train, widths, itemsize) * (2 if self.config.gradients_at == "average" else 1)
