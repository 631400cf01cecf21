"""The defense seam: a new kind of defense is one module and ``@register_defense`` (shown with a kind registered
here, run through a scenario), its settings validated by the kind that owns them, a taken name refused."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field

from auditkit import load_scenario, run_scenario
from auditkit.defenses.base import Defense, train_recipe
from auditkit.defenses.registry import DEFENSES, defense_kind, defense_names, register_defense
from auditkit.errors import ScenarioError
from auditkit.progress import Progress

TOY = {
    "data": {"dataset": "toy_colors", "n_per_class": 5, "test_per_class": 20, "image_size": 4},
    "victim": {"hidden": [16], "training": {"epochs": 50}},
    "attack": {"steps": 10, "restarts": 1, "log_every": 5},
    "beside": [],
    "device": "cpu",
}


class ShortSettings(BaseModel):
    """What share of the recipe's epochs to train."""

    model_config = ConfigDict(extra="forbid", strict=True)
    share: float = Field(0.5, gt=0, le=1)


@pytest.fixture
def short_training():
    """A kind of defense registered for one test: the scenario's recipe, cut to a share of its epochs."""

    @register_defense
    class ShortTraining(Defense):
        """The recipe for ``share`` of its epochs (early stopping as a defense)."""

        name, description, settings_type = "short_training", "the recipe, stopped early", ShortSettings

        def train(self, model, job, progress):
            epochs = max(1, round(job.scenario.training_for(job.defense).epochs * job.settings.share))
            return train_recipe(model, job, progress, epochs=epochs)

    yield ShortTraining
    DEFENSES.pop("short_training")


def test_a_new_kind_of_defense_is_one_class_and_runs_through_a_scenario(short_training, tmp_path):
    short = {"name": "short", "kind": "short_training", "settings": {"share": 0.2}}
    scenario = load_scenario("toy_colors", {**TOY, "defenses": ["none", short]})
    run = run_scenario(scenario, tmp_path, progress=Progress(enabled=False))
    assert run["short"].victim.training.epochs == 10 and run["none"].victim.training.epochs == 50
    assert run["short"].summary().n == 10 and "short_training" in defense_names()


@pytest.mark.parametrize(
    "defense, expected",
    [
        ({"name": "x", "kind": "nope"}, "defenses.1.kind: unknown defense kind 'nope'; registered: dp_sgd, none"),
        ({"name": "x", "kind": "short_training", "settings": {"share": 2}}, "settings.share: Input should be less"),
        ({"name": "x", "kind": "short_training", "settings": {"shares": 0.1}}, "settings.shares: unknown field"),
        ({"name": "x", "kind": "recipe", "settings": {"share": 0.1}}, "settings: kind 'recipe' takes no settings"),
    ],
    ids=["unknown kind", "a setting out of range", "an unknown setting", "settings for a kind without"],
)
def test_a_defense_the_kinds_cannot_read_is_one_line_naming_the_field(short_training, defense, expected):
    with pytest.raises(ScenarioError, match=expected.replace("(", r"\(")) as raised:
        load_scenario("toy_colors", {**TOY, "defenses": ["none", defense]})
    assert "\n" not in str(raised.value)


def test_a_taken_kind_is_refused_unless_forced(short_training):
    with pytest.raises(ValueError, match="defense kind 'dp_sgd' is registered already"):

        @register_defense
        class Shadow(short_training):
            name = "dp_sgd"

    assert type(defense_kind("dp_sgd")).__name__ == "DPSGDDefense"
    register_defense(short_training)  # the same class again (its module imported twice): accepted
    with pytest.raises(TypeError):
        register_defense(dict)


@pytest.mark.parametrize("kind", ["none", "recipe", "dp_sgd"])
def test_every_built_in_kind_keeps_the_contract(kind, tmp_path):
    """Each kind trains a victim whose log says how (a DP kind: its plan's epsilon), through a scenario."""
    defense = {"name": "d", "kind": kind}
    if kind == "dp_sgd":
        defense["dp"] = {"noise_multiplier": 1.0, "batch_size": 5, "epochs": 2}
    run = run_scenario(
        load_scenario("toy_colors", {**TOY, "defenses": [defense]}), tmp_path, progress=Progress(enabled=False)
    )
    training = run["d"].victim.training
    assert training.epochs > 0 and (training.privacy is not None) == (kind == "dp_sgd")
