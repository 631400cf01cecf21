"""The attack on small real victims: fixed point at the truth, divergence handling, selection, strength."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import knowledge

from auditkit import Auditor, ConfigError, KKTAttack
from auditkit.attacks import AttackerKnowledge, KKTConfig
from auditkit.attacks.kkt.kernel import extract_layers
from auditkit.attacks.kkt.optimizer import lr_factor
from auditkit.attacks.kkt.residual import kkt_residual
from auditkit.scoring.metrics import match, ncc_distance
from auditkit.testing import assert_leaks


def test_attack_started_at_the_training_set_stays_there(small_victim):
    model, data = small_victim
    layers = extract_layers(model)
    x, y = torch.as_tensor(data.train_x), torch.as_tensor(data.train_y)
    _, fitted = kkt_residual(layers, x, y)
    attack = KKTAttack(steps=300, restarts=1, lambda_min=0.0, alpha=40.0)
    output = attack.run(layers, knowledge(data), dtype=torch.float64, initial=(x, fitted * len(x), y))
    scores = match(data.to_pixels(data.train_x), data.to_pixels(output.candidates), data.to_pixels(data.pool_x))
    assert (scores["candidate"] == np.arange(len(x))).all()
    assert scores["identified"].all()
    # measured: median SSIM 0.80 after 300 steps (from 1.0); the victim is near, not at, a KKT point
    assert np.median(scores["ssim"]) > 0.7


def test_divergence_is_reported_not_raised(small_victim):
    model, data = small_victim
    attack = KKTAttack(steps=20, restarts=2, search="off", lr_x=100.0, alpha=40.0, log_every=5)
    result = Auditor(attack, device="cpu", dtype="float32").audit(model, data)
    assert {d["restart"] for d in result.attack.diverged} == {0, 1}
    summary = result.summary()
    assert summary.identified == 0
    assert "diverged" in summary.warning


def test_public_starts_that_never_move_identify_no_member(small_victim):
    """init public: each candidate starts at a pool image the victim assigns to its class; unmoved, it is
    nearest to that non-member, so the headline count cannot credit the start image to a member."""
    model, data = small_victim
    unmoved = KKTAttack(steps=0, restarts=2, search="off", init="public")
    output = unmoved.run(extract_layers(model), knowledge(data), dtype=torch.float64)
    reference = torch.as_tensor(data.pool_x[:256])
    candidates = torch.as_tensor(output.candidates)
    assert (torch.cdist(candidates, reference).min(1).values < 1).all()  # the image plus N(0, 0.01^2) noise
    assert (torch.sign(model(candidates)[:, 0]) == torch.as_tensor(output.labels)).float().mean() > 0.95
    summary = Auditor(unmoved, device="cpu").audit(model, data).summary()
    assert summary.identified == 0 and summary.nonmembers_identified > 10


@pytest.mark.slow
def test_public_starts_on_a_model_trained_on_other_data_identify_at_most_one(small_victim, mnist):
    """The control the metric guard needs: the victim never saw the 50 claimed digits; public starts and
    3,000 steps must not turn into identified "members" (bound: at most 1 of 50)."""
    model, data = small_victim
    images, digits = mnist
    others = np.setdiff1d(np.arange(len(images)), data.train_index)
    claimed = np.random.default_rng(1).choice(others, 50, replace=False)
    pool = np.setdiff1d(others, claimed)[::8][:500]
    auditor = Auditor(KKTAttack(steps=3000, restarts=1, search="off", init="public"), device="cpu", dtype="float64")
    centred = {"train": (images[claimed] - data.mean, digits[claimed] % 2), "nonmembers": images[pool] - data.mean}
    result = auditor.audit(model, mean=data.mean, **centred)
    assert result.summary().identified <= 1, result.summary()


def test_public_starts_need_public_data(small_victim):
    model, data = small_victim
    with pytest.raises(ConfigError, match="attack.init: 'public' needs public data"):
        KKTAttack(steps=1, init="public").run(extract_layers(model), AttackerKnowledge(20, data.lower, data.upper))


@pytest.mark.slow
def test_attack_strength_on_a_small_real_victim(small_victim_audit):
    """Regression guard. Measured (20 MNIST digits, 784-200-200-1, 3000 steps, float32, attack seeds
    0, 1, 2): identified 20, 20, 20 of 20 (raw SSIM > 0.4: 20 vs 15 for the mean image)."""
    assert_leaks(small_victim_audit, at_least=16)


def test_random_search_early_stop_and_selection(small_victim):
    model, data = small_victim
    attack = KKTAttack(steps=40, restarts=6, search="random", early_stop_step=20, early_stop_keep=0.5, select_top=2)
    output = attack.run(extract_layers(model), knowledge(data), dtype=torch.float32, seed=3)
    facts = output.facts
    for key, (low, high) in attack.config.search_ranges.items():
        first, *drawn = facts.restart_settings[key]
        assert first == getattr(attack.config, key)  # restart 0 runs the configured recipe
        assert len(set(drawn)) == 5 and all(low <= v <= high for v in drawn)
    assert len(facts.early_stopped_restarts) == 3
    assert len(facts.selected_restarts) == 2 and not set(facts.selected_restarts) & set(facts.early_stopped_restarts)
    assert len(output.candidates) == 2 * 2 * len(data.train_x)
    survivors = [r for r in range(6) if r not in facts.early_stopped_restarts]
    best = sorted(survivors, key=lambda r: -facts.restart_scores[r])[:2]
    assert sorted(best) == facts.selected_restarts
    assert np.isnan(output.loss_history[-1][facts.early_stopped_restarts]).all()
    # the default rule scores a restart by the KKT residual its candidates leave (multipliers refitted)
    lower, upper = torch.as_tensor(data.lower).flatten(), torch.as_tensor(data.upper).flatten()
    for restart in facts.selected_restarts:
        mine = output.restart == restart
        candidates = torch.as_tensor(output.candidates[mine]).clamp(lower, upper)
        residual, _ = kkt_residual(extract_layers(model), candidates, torch.as_tensor(output.labels[mine]))
        assert facts.restart_scores[restart] == pytest.approx(-residual, rel=1e-6)


def test_ground_truth_selection_ranks_by_the_training_set(small_victim):
    """The Auditor hands the training set to the attack: each restart's score is minus the mean NCC
    distance of the 10 training images its candidates come closest to (recomputed here)."""
    model, data = small_victim
    attack = KKTAttack(steps=30, restarts=3, search="random", select="ground_truth", select_top=3)
    result = Auditor(attack, device="cpu", dtype="float64").audit(model, data)
    facts = result.attack
    assert facts.selection_rule == "ground_truth" and facts.selected_restarts == [0, 1, 2]
    restarts = result.evidence["candidate_restart"]
    train_images = data.to_pixels(data.train_x)
    for restart in range(3):
        distance = ncc_distance(result.candidates[restarts == restart], train_images)  # (m, n)
        expected = -np.sort(distance.min(0))[:10].mean()
        assert facts.restart_scores[restart] == pytest.approx(expected, rel=1e-6)


def test_ground_truth_selection_without_a_training_set_fails_loudly(small_victim):
    model, data = small_victim
    attack = KKTAttack(steps=5, restarts=2, select="ground_truth")
    with pytest.raises(ConfigError, match="attack.select: 'ground_truth'"):
        attack.run(extract_layers(model), knowledge(data))


@pytest.mark.parametrize(
    "settings, field",
    [
        ({"steps": -1}, "attack.steps"),
        ({"restarts": 0}, "attack.restarts"),
        ({"optimizer": "lbfgs"}, "attack.optimizer"),
        ({"lr_x": 0}, "attack.lr_x"),
        ({"search_ranges": {"alpha": [5, 1]}}, "attack.search_ranges"),
        ({"stpes": 10}, "attack.stpes: unknown field"),
    ],
)
def test_python_api_validates_like_the_yaml(settings, field):
    with pytest.raises(ConfigError, match=field):
        KKTAttack(**settings)
    with pytest.raises(ConfigError, match=field):
        KKTAttack(KKTConfig(), **settings)


def test_a_loss_grown_a_millionfold_counts_as_diverged(small_victim):
    """float64 keeps the blown-up loss finite; it is flagged all the same, and nothing is pooled."""
    model, data = small_victim
    attack = KKTAttack(steps=3, restarts=1, search="off", lr_x=100.0, log_every=1)
    output = attack.run(extract_layers(model), knowledge(data), dtype=torch.float64)
    assert output.facts.diverged and np.isfinite(output.loss_history[:, 0][: output.facts.diverged[0]["step"]]).all()
    assert len(output.candidates) == 0


def test_cosine_schedule_decays_both_learning_rates_to_lr_final(small_victim):
    model, data = small_victim
    cosine = KKTConfig(steps=100, lr_schedule="cosine", lr_final=0.05)
    factors = [lr_factor(cosine, step) for step in range(101)]
    assert factors[0] == 1.0 and factors[-1] == pytest.approx(0.05) and np.all(np.diff(factors) < 0)
    layers, seen = extract_layers(model), knowledge(data)

    def run(**settings):
        attack = KKTAttack(steps=30, restarts=1, search="off", **settings)
        output = attack.run(layers, seen, dtype=torch.float64)
        return output.candidates, output.lambdas

    constant = run()
    np.testing.assert_array_equal(run(lr_schedule="cosine", lr_final=1.0)[0], constant[0])  # no decay: same path
    decayed = run(lr_schedule="cosine", lr_final=0.05)
    assert not np.allclose(decayed[0], constant[0]) and not np.allclose(decayed[1], constant[1])


def test_float64_refinement_runs_the_last_steps_in_float64(small_victim):
    model, data = small_victim
    layers, seen = extract_layers(model).to("cpu", torch.float32), knowledge(data)  # float32-exact weights
    x, lam = torch.randn(2, 40, 784, generator=torch.Generator().manual_seed(0)).mul(0.01), torch.rand(2, 40)
    start = (x[0].float().double(), lam[0].float().double(), torch.cat([torch.ones(20), -torch.ones(20)]))

    def run(dtype, **settings):
        attack = KKTAttack(steps=30, restarts=1, search="off", alpha_relative=False, log_every=1, **settings)
        return attack.run(layers, seen, dtype=dtype, initial=start)

    plain32, plain64 = run(torch.float32), run(torch.float64)
    whole = run(torch.float32, refine_steps=30)  # promoted before the first step: float64's path bit for bit
    assert whole.facts.dtype == "float32"
    np.testing.assert_array_equal(whole.candidates, plain64.candidates)
    assert not np.array_equal(plain32.candidates, plain64.candidates)
    last = run(torch.float32, refine_steps=10)  # steps 0-19 in float32, 20-30 in float64, Adam's state carried
    np.testing.assert_array_equal(last.loss_history[:20], plain32.loss_history[:20])
    assert not np.array_equal(last.loss_history[20:], plain32.loss_history[20:])
    np.testing.assert_array_equal(run(torch.float64, refine_steps=10).candidates, plain64.candidates)  # no-op
