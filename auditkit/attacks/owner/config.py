"""The owner's attack's validated configuration: the KKT attack's settings, and where the gradients are taken."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from auditkit.attacks.kkt.config import KKTConfig

GRADIENT_POINTS = {
    "init": "the gradients at the initial weights theta_0 (the lazy, linearised regime)",
    "average": "the average of the gradients at theta_0 and at the trained weights theta_T (the trapezoid rule "
    "of the training path)",
    "final": "the gradients at the trained weights theta_T, the initial weights' share projected out",
}


class OwnerConfig(KKTConfig):
    """The KKT attack's settings (candidates, priors, restarts, sweep, selection) on the owner's objective.

    gradients_at: where the margin gradients are taken (``GRADIENT_POINTS``); the target is always
    ``theta_T - c theta_0`` with c fitted.
    """

    name: Literal["owner"] = "owner"
    gradients_at: Literal[tuple(GRADIENT_POINTS)] = Field(
        "average", description="init, average or final: where the candidates' margin gradients are taken"
    )
