"""Deflation (``attack.passes``): what a later pass explains is the weights less the frozen candidates' share."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import knowledge
from torch import nn

from auditkit import Auditor, ConfigError, KKTAttack, UnsupportedModelError
from auditkit.attacks import AttackerKnowledge
from auditkit.attacks.kkt.kernel import as_objective, extract_layers, stationarity_loss

STEPS, RESTARTS = 40, 2


@pytest.fixture(scope="module")
def deflated(small_victim):
    """Two passes of two restarts on the small victim, float64, the recipe alone (every restart one alpha)."""
    model, data = small_victim
    attack = KKTAttack(steps=STEPS, restarts=RESTARTS, search="off", passes=2, deflate_fraction=0.5, log_every=10)
    seen = []
    output = attack.run(
        extract_layers(model), knowledge(data), dtype=torch.float64, progress=lambda step, _: seen.append(step)
    )
    return model, data, attack, output, seen


def test_a_later_pass_explains_the_whole_weights_with_the_frozen_candidates(deflated):
    """Recomputed from the output: a second-pass restart's recorded residual is the stationarity residual of
    the whole weights at its candidates and the frozen ones together (their multipliers, the same 1/m)."""
    model, data, attack, output, _ = deflated
    layers = extract_layers(model).to("cpu", torch.float64)
    m = 2 * len(data.train_x)
    alpha = attack.config.alpha / output.facts.alpha_scale
    for restart in range(RESTARTS, 2 * RESTARTS):
        mine = output.restart == restart
        assert mine.sum() == m + math.ceil(0.5 * m)  # the frozen half of the first pass's best, then its own
        x = torch.as_tensor(output.candidates[mine])[None]
        lambdas = torch.as_tensor(output.lambdas[mine])[None] * mine.sum() / m  # the loss divides by its own count
        residual = stationarity_loss(layers, x, lambdas, torch.as_tensor(output.labels[mine]), alpha).sqrt()
        expected = (residual / as_objective(layers).norm()).item()
        assert output.facts.relative_residual[restart] == pytest.approx(expected, rel=1e-6)


def test_the_frozen_candidates_are_the_first_pass_best_restart_largest_multipliers(deflated):
    _, _, _, output, _ = deflated
    facts = output.facts
    first = int(np.argmax(facts.restart_scores[:RESTARTS]))
    own = output.restart == first
    frozen = np.argsort(-output.lambdas[own], kind="stable")[: math.ceil(0.5 * own.sum())]
    later = output.restart == RESTARTS
    np.testing.assert_allclose(
        np.sort(output.lambdas[later][: len(frozen)]), np.sort(output.lambdas[own][frozen]), rtol=1e-12
    )
    assert np.isin(output.candidates[later][: len(frozen)], output.candidates[own]).all()


def test_the_facts_count_every_pass(deflated):
    _, _, attack, output, seen = deflated
    facts = output.facts
    assert facts.passes == 2 and facts.restarts == 2 * RESTARTS == len(facts.final_loss)
    assert facts.selected_restarts == list(range(2 * RESTARTS))
    assert list(facts.table()["pass"]) == [0] * RESTARTS + [1] * RESTARTS
    assert output.loss_history.shape == (len(output.history_steps), 2 * RESTARTS)
    assert np.all(np.diff(output.history_steps) > 0)
    assert attack.steps == 2 * STEPS and seen == sorted(seen) and seen[-1] == 2 * STEPS


def test_one_pass_is_the_search_unchanged(small_victim):
    model, data = small_victim
    settings = {"steps": 20, "restarts": 2, "search": "off", "log_every": 5}
    one = KKTAttack(**settings).run(extract_layers(model), knowledge(data), dtype=torch.float64)
    also = KKTAttack(**settings, passes=1).run(extract_layers(model), knowledge(data), dtype=torch.float64)
    np.testing.assert_array_equal(one.candidates, also.candidates)
    assert one.facts.passes == 1 and "pass" not in one.facts.table()


def test_the_auditor_reads_a_deflated_attack(small_victim):
    """The verdict's premise reads the pooled passes: the attack residual is the best restart's of all four."""
    model, data = small_victim
    attack = KKTAttack(steps=STEPS, restarts=RESTARTS, search="off", passes=2, log_every=10)
    result = Auditor(attack, device="cpu", dtype="float64").audit(model, data)
    assert result.attack.passes == 2 and "2 deflation passes" in result.attack.describe()[0]
    assert result.attack.convergence.attack_residual <= min(result.attack.relative_residual) + 1e-9
    assert (
        len(result.candidates) == result.attack.candidates == RESTARTS * 40 + RESTARTS * (40 + 20)
    )  # m = 40; 20 frozen


def test_deflation_on_a_network_other_than_an_mlp_is_refused_in_one_line():
    network = nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)), nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(1352, 1)
    )
    attack = KKTAttack(steps=2, restarts=1, passes=2)
    lower, upper = np.zeros(784), np.ones(784)
    with pytest.raises(UnsupportedModelError, match="attack.passes"):
        attack.run(network.double(), AttackerKnowledge(4, lower, upper), dtype=torch.float64)


@pytest.mark.parametrize("settings", [{"passes": 0}, {"deflate_fraction": 0.0}, {"deflate_fraction": 1.5}])
def test_bad_deflation_settings_name_their_field(settings):
    with pytest.raises(ConfigError, match=f"attack.{next(iter(settings))}"):
        KKTAttack(**settings)
