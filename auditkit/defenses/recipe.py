"""The recipe kinds: no defense (the scenario's recipe) and a recipe variant (its ``training:`` overrides, e.g.
weight decay or an optimiser people use)."""

from __future__ import annotations

from torch import nn

from auditkit.defenses.base import Defense, Training, train_recipe
from auditkit.defenses.registry import register_defense
from auditkit.progress import Progress
from auditkit.results.facts import TrainingLog


@register_defense
class NoDefense(Defense):
    """The scenario's recipe, with the defense's ``training:`` overrides if any: the undefended victim."""

    name = "none"
    description = "the scenario's training recipe"

    def train(self, model: nn.Module, job: Training, progress: Progress) -> TrainingLog:
        """Train by the recipe (:func:`auditkit.defenses.base.train_recipe`)."""
        return train_recipe(model, job, progress)


@register_defense
class RecipeDefense(NoDefense):
    """A training recipe as the defense (weight decay, another optimiser): its ``training:`` overrides."""

    name = "recipe"
    description = "the scenario's recipe with the defense's training: overrides"
