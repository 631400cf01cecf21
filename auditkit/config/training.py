"""A victim's training recipe in a scenario (``victim.training``, and what a defense's ``training:`` overrides):
the optimiser, its settings, and whether the step is compiled."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, Field, model_validator

from auditkit.errors import STRICT
from auditkit.victims.training import OptimizerName, Schedule


class TrainingConfig(BaseModel):
    """How a victim is trained: full-batch GD (the default, the paper's setting) or the optimizers people
    use on shuffled minibatches. Only long weight-decayed training reaches a KKT point (benchmarks/recipes.py)."""

    model_config = STRICT

    optimizer: OptimizerName = Field(
        "gd", description="gd: full-batch gradient descent; sgd (with momentum), adam, adamw: minibatches"
    )
    loss: Literal["bce", "ce"] = Field("bce", description="bce: one output, labels -1/+1; ce: C outputs (multiclass)")
    lr: float = Field(0.3, gt=0, le=1e3)
    epochs: int = Field(6000, gt=0, le=100_000_000)
    weight_decay: float = Field(0.0, ge=0, le=1e3, description="L2 in the gradient; adamw: decoupled")
    batch_size: int | None = Field(None, gt=0, description="sgd/adam/adamw minibatch size; null = full batch")
    momentum: float = Field(0.0, ge=0, lt=1, description="sgd only")
    schedule: Schedule = Field("constant", description="cosine: lr decays to 0 over training")
    compile: bool | Literal["auto"] = Field(
        "auto",
        description="torch.compile the full-batch step; auto = on a GPU only, constant schedule (CPU gains 2-3 %)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        if self.optimizer == "gd" and self.batch_size is not None:
            raise ValueError("optimizer 'gd' is full-batch; use optimizer 'sgd' with a batch_size for minibatches")
        if self.momentum and self.optimizer != "sgd":
            raise ValueError(f"momentum applies to optimizer 'sgd' only, not '{self.optimizer}'")
        if self.compile is True and (self.batch_size is not None or self.schedule != "constant"):
            raise ValueError("compile: true needs full-batch training with a constant schedule")
        return self

    def compiled_on(self, device: torch.device) -> bool:
        """Whether the step runs through torch.compile on ``device``."""
        full_batch_constant = self.batch_size is None and self.schedule == "constant"
        return self.compile is True or (self.compile == "auto" and device.type == "cuda" and full_batch_constant)
