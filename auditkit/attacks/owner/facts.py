"""The owner's attack's part of a result: the KKT attack's restarts and convergence, judged against its own
premise, the linearisation residual (how much of what training added to theta_0 the training samples'
gradients explain).

Its thresholds come from measured victims (MNIST parity, 784-500-500-1, ``benchmarks/results/recipes.md``).
The premise does not need zero training error: the linearisation holds or fails whatever the fit.
"""

from __future__ import annotations

from typing import ClassVar

from auditkit.attacks.kkt.facts import KKTFacts
from auditkit.scoring.verdict import Concern

CONCLUSIVE_RESIDUAL = 0.3
WEAK_RESIDUAL = 0.6


class OwnerFacts(KKTFacts):
    """How the owner's attack ran and its premise for this victim: training's linearisation at theta_0."""

    GLOSSARY: ClassVar[dict[str, str]] = {
        "linearisation residual": "how much of what training added to the initial weights (theta_T - c theta_0, "
        "c fitted) the training samples' margin gradients leave unexplained, multipliers fitted (0 = all of it "
        "explained, 1 = none): the owner's attack's premise",
        "attack residual": "the linearisation residual the attack's best restart's candidates leave (multipliers "
        "refitted, exact ReLU), beside the victim's at its true training set: the attack converged when it is no "
        "larger and its loss no longer falls fast; otherwise a low count is not evidence of safety",
        "restart": "one independent run of the attack's optimisation; their candidates are pooled",
    }
    HEADLINE: ClassVar[tuple[str, ...]] = (
        "victim_linearisation_residual",
        "attack_linearisation_residual",
        "attack_convergence",
        "attack_relative_residual",
    )
    PREMISE: ClassVar[str] = "linearisation residual"
    KEY: ClassVar[str] = "linearisation"
    CONCLUSIVE: ClassVar[float] = CONCLUSIVE_RESIDUAL
    WEAK: ClassVar[float] = WEAK_RESIDUAL
    WHERE: ClassVar[str] = "their linearisation at the initial weights"
    NEEDS_FIT: ClassVar[bool] = False
    NEXT_STEP: ClassVar[str] = (
        "Adam's or AdamW's rescaling of each weight is out of this attack's reach: the span attack beside it reads "
        "membership from the same initial weights; a model trained with DP-SGD is bounded by its ceiling instead"
    )

    def victim_concerns(self, train_accuracy: float, centred: bool) -> list[Concern]:
        """The linearisation premise; raw pixels were not measured for this attack (weak, not fatal)."""
        found = super().victim_concerns(train_accuracy, True)
        if not centred:
            reason = "the inputs are not centred (their training mean is not 0): the owner's attack was not measured "
            reason += "there, so counts "
            found.append(Concern(reason + "may under-state the leakage", False))
        return found
