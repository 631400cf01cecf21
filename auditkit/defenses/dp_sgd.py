"""DP-SGD with Opacus as a kind of defense: its settings (``dp:``), its plan (the noise the accountant needs for
the budget, resolved before anything trains) and its training."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field, model_validator
from torch import nn

from auditkit.defenses.base import Defense, Training
from auditkit.defenses.registry import register_defense
from auditkit.errors import STRICT
from auditkit.progress import Progress
from auditkit.results.facts import Accountant, PrivacyFacts, TrainingLog
from auditkit.victims.dp import plan_dp, train_dp_sgd


class DPConfig(BaseModel):
    """DP-SGD with Opacus: give target_epsilon (sigma found by the accountant) or noise_multiplier."""

    model_config = STRICT

    target_epsilon: float | None = Field(None, gt=0, le=1e4)
    noise_multiplier: float | None = Field(None, ge=0, le=1e4)
    delta: float = Field(1e-5, ge=1e-20, lt=1)
    max_grad_norm: float = Field(1.0, gt=0, le=1e6)
    batch_size: int = Field(25, gt=0, description="expected Poisson batch size: sampling rate q = batch_size / n")
    epochs: int = Field(100, gt=0, le=1_000_000)
    lr: float = Field(0.5, gt=0, le=1e3)
    accountant: Accountant = "rdp"

    @model_validator(mode="after")
    def _one_budget(self) -> DPConfig:
        if (self.target_epsilon is None) == (self.noise_multiplier is None):
            raise ValueError("give exactly one of 'target_epsilon' or 'noise_multiplier'")
        return self


@register_defense
class DPSGDDefense(Defense):
    """DP-SGD (Opacus: Poisson sampling, per-sample clipping, Gaussian noise) with the recipe's weight decay."""

    name = "dp_sgd"
    description = "DP-SGD with Opacus (settings under dp:)"
    settings_type: ClassVar[type[BaseModel]] = DPConfig
    settings_key = "dp"

    def plan(self, defense, n: int, field: str) -> PrivacyFacts:
        """The noise multiplier the budget needs (or the budget the noise gives), and the steps."""
        return plan_dp(n, **defense.dp.model_dump(exclude={"lr"}), field=field)

    def per_sample_rows(self, defense, n: int) -> int:
        """A Poisson batch's per-sample gradients (twice the expected batch: an upper estimate)."""
        return min(n, 2 * defense.dp.batch_size)

    def train(self, model: nn.Module, job: Training, progress: Progress) -> TrainingLog:
        """Train with Opacus for the planned epochs, the recipe's weight decay applied."""
        decay, plan = job.scenario.training_for(job.defense).weight_decay, job.plan
        plan = plan if plan is not None else self.plan(job.defense, len(job.x), "defense.dp")
        with progress.task(f"[{job.defense.name}] DP-SGD training", plan.epochs, unit="epoch") as update:
            settings = {"lr": job.defense.dp.lr, "weight_decay": decay, "seed": job.scenario.seed, "test": job.test}
            return train_dp_sgd(model, job.x, job.y, plan, **settings, progress=update)
