"""The defense seam: what a kind of defense is (its settings, how it is planned before anything trains, how it
trains a victim) and the training job it is handed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from auditkit.progress import Progress
from auditkit.results.facts import PrivacyFacts, TrainingLog
from auditkit.victims.training import train_mlp


@dataclass(frozen=True)
class Training:
    """What one victim's training needs: its scenario (one grid point), its defense's config, the data as tensors
    on the device, and the defense's plan (from :meth:`Defense.plan`)."""

    scenario: Any  # auditkit.config.schema.Scenario
    defense: Any  # auditkit.config.schema.DefenseConfig
    x: torch.Tensor
    y: torch.Tensor
    test: tuple[torch.Tensor, torch.Tensor]
    device: torch.device
    plan: PrivacyFacts | None

    @property
    def settings(self) -> BaseModel | None:
        """The defense's own settings, validated by its kind's ``settings_type`` (None for a kind without)."""
        return self.defense.kind_settings()


class Defense:
    """A kind of defense (``kind:`` in a scenario's ``defenses:`` entry); register one with
    :func:`auditkit.defenses.registry.register_defense`.

    A kind states its ``name``, a line for ``auditkit list``, and optionally ``settings_type`` (a pydantic model of
    its own settings, given under ``settings:`` in the scenario, validated with it); it trains a victim in
    :meth:`train` and may resolve a plan (DP-SGD's noise) before anything trains in :meth:`plan`.

    Example:
        >>> @register_defense  # doctest: +SKIP
        ... class ShortTraining(Defense):
        ...     name, description = "short", "the scenario's recipe for a tenth of its epochs"
        ...     def train(self, model, job, progress):
        ...         epochs = max(1, job.scenario.training_for(job.defense).epochs // 10)
        ...         return train_recipe(model, job, progress, epochs=epochs)
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    settings_type: ClassVar[type[BaseModel] | None] = None
    settings_key: ClassVar[str] = "settings"  # where a scenario gives its settings

    def plan(self, defense, n: int, field: str) -> PrivacyFacts | None:
        """What must be resolved before anything trains (None: nothing).

        Args:
            defense: the defense's config.
            n: the training set's size.
            field: how errors name the defense's settings (e.g. ``defenses.2.dp``).

        Returns:
            The planned mechanism (DP-SGD's), or None.
        """
        return None

    def per_sample_rows(self, defense, n: int) -> int:
        """How many samples' gradients training holds at once (DP-SGD's per-sample gradients; 0 for none), for
        the memory check before anything trains.

        Args:
            defense: the defense's config.
            n: the training set's size.

        Returns:
            A row count.
        """
        return 0

    def train(self, model: nn.Module, job: Training, progress: Progress) -> TrainingLog:
        """Train ``model`` in place.

        Args:
            model: the untrained victim, on the job's device.
            job: the scenario, the defense, the data and the plan.
            progress: where progress goes.

        Returns:
            The training log.
        """
        raise NotImplementedError


def train_recipe(model: nn.Module, job: Training, progress: Progress, **changes) -> TrainingLog:
    """Train ``model`` by the scenario's recipe with the defense's ``training:`` overrides (and ``changes`` over
    both, e.g. ``epochs=``): what the recipe kinds do, and what other kinds may start from.

    Args:
        model: the untrained victim.
        job: the training job.
        progress: where progress goes.
        **changes: recipe settings over the scenario's and the defense's.

    Returns:
        The training log.
    """
    training = job.scenario.training_for(job.defense)
    recipe = {**training.model_dump(exclude={"loss", "compile"}), **changes}
    with progress.task(f"[{job.defense.name}] training", recipe["epochs"], unit="epoch") as update:
        compiled = training.compiled_on(job.device)
        seed = job.scenario.seed
        return train_mlp(model, job.x, job.y, **recipe, seed=seed, test=job.test, progress=update, compile=compiled)
