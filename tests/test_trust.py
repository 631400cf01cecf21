"""No false all-clear: a null result needs a converged attack; every input path keeps the user's sample identities."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import kkt_facts, kkt_verdict
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from auditkit import Auditor, KKTAttack
from auditkit.attacks.kkt.control import StartControl
from auditkit.attacks.kkt.convergence import (
    CONVERGED_RATIO,
    CONVERGED_RESIDUAL,
    FALLING,
    STALLED_RATIO,
    Convergence,
    loss_fall,
)
from auditkit.attacks.kkt.facts import KKTFacts
from auditkit.scoring.membership import MembershipTest
from auditkit.testing import assert_leaks, assert_leaks_at_most, audit

NOTHING = MembershipTest(50, 0, 4950, 6)  # nothing identified beyond chance


@pytest.mark.parametrize(
    "attack, loss, level",
    [
        (0.05, 0.01, "converged"),
        (0.1, 0.01, "converged"),  # exactly the victim's residual
        (0.1, FALLING + 0.1, "unsettled"),  # close, but the loss still falls fast
        (0.15, 0.01, "unsettled"),
        (0.25, 0.01, "not_converged"),
        (0.04, 0.01, "converged"),  # under CONVERGED_RESIDUAL: converged, however small the victim's residual
        (0.04, FALLING + 0.1, "unsettled"),  # under the floor but 4x the victim's, loss still falling
        (0.03, FALLING + 0.2, "converged"),  # under the floor and the victim's: a falling loss adds nothing
        (math.nan, 0.0, "not_converged"),  # no candidates
        (1.0, 0.0, "not_converged"),  # explains nothing: never "converged", even beside a victim at 1.00
    ],
)
def test_convergence_levels_follow_the_ratio_and_the_late_loss_fall(attack, loss, level):
    assert CONVERGED_RATIO == 1.0 and STALLED_RATIO == 2.0 and CONVERGED_RESIDUAL == 0.05  # the cases' places
    victim = 0.01 if attack == 0.04 else 1.0 if attack == 1.0 else 0.1
    assert Convergence(attack, victim, loss, 100).level == level


def test_an_unconverged_attack_makes_a_null_result_inconclusive():
    victim_ok = kkt_verdict(0.094, 1.0, NOTHING)
    assert victim_ok.level == "conclusive"  # the victim's premise alone would vouch for it
    stalled = kkt_verdict(0.094, 1.0, NOTHING, convergence=Convergence(0.52, 0.094, 0.9, 50))
    assert stalled.level == "inconclusive"
    assert "the attack did not converge (residual 0.52 against the victim's 0.09 after 50 steps)" in stalled.finding
    assert "NOT evidence" in stalled.finding and "finds little" not in stalled.finding
    near = kkt_verdict(0.094, 1.0, NOTHING, convergence=Convergence(0.15, 0.094, 0.1, 1000))
    assert near.level == "weak" and "has not fully converged" in near.finding
    done = kkt_verdict(0.094, 1.0, NOTHING, convergence=Convergence(0.05, 0.094, 0.1, 8000))
    assert done.level == "conclusive" and "finds no leakage beyond chance" in done.finding


def test_faint_matches_leave_the_pictures_to_judge_and_never_contradict_them():
    leak = MembershipTest(50, 12, 4950, 3)
    faint = kkt_verdict(0.1, 1.0, leak, recognisable=2).finding
    assert "12 of 50 training samples were reconstructed and identified" in faint
    assert "By SSIM only 2 of the matches resemble their sample" in faint and "not recognisable" not in faint
    assert "By SSIM" not in kkt_verdict(0.1, 1.0, leak, recognisable=3).finding  # a quarter: nothing to add


def test_a_null_result_is_evidence_only_when_the_start_control_backs_it():
    nothing = MembershipTest(50, 0, 4950, 8)
    holds = StartControl(500, 50, 36, 50, 3, 0.06, 0.02, 0.23, 18.0)
    missed = kkt_verdict(0.05, 1.0, nothing, control=holds)
    assert missed.level == "inconclusive" and "NOT evidence" in missed.finding
    assert "the weights hold 36 of your samples as solutions of this attack; this search did not reach them" in (
        missed.finding
    )
    alike = kkt_verdict(0.05, 1.0, nothing)
    assert alike.level == "conclusive" and "does not single out the training set" in alike.finding
    assert "not a guarantee against others" in alike.finding
    still = StartControl(500, 50, 1, 50, 2, 0.0, 0.001, 0.002, 1.0)
    assert still.reading == "still" and kkt_verdict(0.05, 1.0, nothing, control=still).level == "weak"
    assert kkt_verdict(0.05, 1.0, nothing, control=None).level == "weak"  # no control: never an all-clear
    leak = MembershipTest(50, 30, 4950, 3)  # a found leak needs no control
    assert kkt_verdict(0.05, 1.0, leak, control=None).level == "conclusive"


def test_the_start_control_survives_a_round_trip_and_refuses_impossible_counts():
    control = StartControl(500, 50, 36, 50, 3, 0.06, 0.02, 0.23, 18.0)
    facts = kkt_facts(0.1, start_control=control)
    assert KKTFacts.from_dict(facts.to_dict()).start_control == control
    assert facts.to_dict()["start_control"]["reading"] == "holds"
    with pytest.raises(ValueError, match="kept count outside"):
        StartControl.from_dict({**control.to_dict(), "members_kept": 51})


def test_loss_fall_reads_the_last_fifth_of_the_logged_steps():
    steps = np.arange(0, 1001, 50)
    losses = np.stack([np.linspace(2.0, 1.0, len(steps)), np.full(len(steps), 3.0)], 1)
    assert loss_fall(losses, steps, 0) == pytest.approx((1.2 - 1.0) / 1.2)  # from step 800 to 1000
    assert loss_fall(losses, steps, 1) == 0.0
    assert math.isnan(loss_fall(losses[:1], steps[:1], 0))


def test_a_short_attack_on_a_leaking_model_is_not_conclusive_and_fails_the_defense_check(small_victim):
    model, data = small_victim
    result = audit(model, data, attack=KKTAttack(steps=50, restarts=1), device="cpu", dtype="float64")
    summary = result.summary()
    assert summary.premise["attack_convergence"] == "not_converged" and summary.verdict == "inconclusive"
    assert summary.premise["attack_kkt_residual"] > STALLED_RATIO * summary.premise["victim_kkt_residual"]
    assert "the attack did not converge" in summary.finding
    with pytest.raises(AssertionError, match="(?s)proves nothing.*did not converge"):
        assert_leaks_at_most(result, at_most=data.train_x.shape[0])
    assert_leaks_at_most(result, at_most=data.train_x.shape[0], allow_inconclusive=True)
    with pytest.raises(AssertionError, match="expected >= 21"):
        assert_leaks(result, at_least=21)


def _dataset(data) -> TensorDataset:
    return TensorDataset(torch.as_tensor(data.train_x), torch.as_tensor(data.train_y))


def test_a_shuffled_loader_and_opacus_poisson_loader_keep_every_identity(small_victim):
    from opacus.data_loader import DPDataLoader

    model, data = small_victim
    auditor = Auditor(KKTAttack(steps=1, restarts=1), device="cpu", dtype="float64")
    dataset = _dataset(data)
    outputs = model(dataset.tensors[0]).squeeze(-1).detach()
    expected = (dataset.tensors[1] * outputs).numpy()
    generator = torch.Generator().manual_seed(0)
    shuffled = DataLoader(dataset, batch_size=6, shuffle=True, generator=generator)
    assert next(iter(shuffled))[1].shape == (6,)  # the loader really shuffles batches
    poisson_loader = DPDataLoader.from_data_loader(DataLoader(dataset, batch_size=6))
    for train in (dataset, shuffled, poisson_loader):
        frame = auditor.audit(model, train=train, mean=data.mean).frame
        assert len(frame) == len(dataset)
        np.testing.assert_array_equal(frame["source_index"], np.arange(len(dataset)))
        np.testing.assert_allclose(frame["margin"], expected, rtol=1e-12)  # row i is the user's item i
        np.testing.assert_array_equal(frame["label"], data.train_y.astype(int))
    poisson = auditor.audit(
        model, train=DPDataLoader.from_data_loader(DataLoader(dataset, batch_size=6)), mean=data.mean
    )
    assert any("UniformWithReplacementSampler" in note and "every item once" in note for note in poisson.data_notes)


class _Custom(nn.Module):
    """How people write an MLP: layers as attributes, F.relu and dropout in forward, a nested Sequential."""

    def __init__(self, twin: nn.Sequential) -> None:
        super().__init__()
        self.first, self.drop = twin[0], nn.Dropout(0.3)
        self.rest = nn.Sequential(nn.Identity(), twin[2], nn.ReLU(), twin[4])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(x.size(0), -1)
        return self.rest(self.drop(F.relu(self.first(x))))


def test_a_custom_module_with_functional_relu_and_dropout_audits_like_its_sequential_twin(small_victim):
    model, data = small_victim
    attack = KKTAttack(steps=30, restarts=1)
    twin = Auditor(attack, device="cpu", dtype="float64").audit(model, data)
    custom = Auditor(attack, device="cpu", dtype="float64").audit(_Custom(model), data)
    np.testing.assert_array_equal(custom.candidates, twin.candidates)
    pd.testing.assert_frame_equal(custom.frame, twin.frame)
    assert custom.summary().finding == twin.summary().finding


@pytest.mark.parametrize(
    "layers, message",
    [
        ([nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1)], "layer '1' \\(Tanh\\) is not supported"),
        ([nn.Linear(4, 3), nn.Linear(3, 1)], "applies Linear, Linear"),
        ([nn.Linear(4, 3), nn.ReLU()], "applies Linear, ReLU"),
    ],
)
def test_what_is_not_a_relu_mlp_is_named(layers, message):
    from auditkit.attacks.kkt.kernel import extract_layers
    from auditkit.errors import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match=message):
        extract_layers(nn.Sequential(*layers))


def test_layers_are_read_in_the_order_forward_applies_them():
    from auditkit.attacks.kkt.kernel import extract_layers

    class Reversed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.last, self.first = nn.Linear(3, 1), nn.Linear(4, 3)  # defined last-first

        def forward(self, x):
            return self.last(torch.relu(self.first(x)))

    net = Reversed()
    layers = extract_layers(net)
    assert layers.weights[0] is net.first.weight and layers.weights[1] is net.last.weight


def test_the_lower_of_the_attacks_own_and_the_refitted_residual_is_read():
    from auditkit.attacks.kkt.convergence import measure
    from auditkit.attacks.kkt.kernel import MLPLayers

    generator = torch.Generator().manual_seed(0)
    weights = tuple(torch.randn(shape, generator=generator, dtype=torch.float64) for shape in ((6, 4), (1, 6)))
    layers = MLPLayers(weights, (None, None))
    candidates = torch.randn(8, 4, generator=generator, dtype=torch.float64).numpy()
    found = candidates, np.array([1.0, -1.0] * 4), np.array([0] * 4 + [1] * 4)
    history = np.array([[2.0, 2.0], [1.0, 1.0]]), np.array([0, 10])
    bounds = -np.full(4, 9.0), np.full(4, 9.0)
    refitted = measure(layers, found, [math.nan, math.nan], history, bounds, 0.1, 10)
    assert 0 < refitted.attack_residual < 1  # diverged own readings: the refit alone
    own = measure(layers, found, [refitted.attack_residual / 2, 0.9], history, bounds, 0.1, 10)
    assert own.attack_residual == refitted.attack_residual / 2 and own.loss_fall == 0.5


def test_a_search_that_misses_what_the_weights_hold_is_never_an_all_clear(small_victim):
    model, data = small_victim
    result = Auditor(KKTAttack(steps=0, restarts=1), device="cpu", seed=0).audit(model, data)  # finds nothing
    control = result.attack.start_control
    assert control is not None and control.reading == "holds", control
    summary = result.summary()
    assert summary.verdict == "inconclusive" and "this search did not reach them" in summary.finding
