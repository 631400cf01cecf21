"""The contract every registered attack keeps, shown with a tiny second attack registered here: candidates are
non-member images (it knows nothing of the training set), so it must identify no training sample, and having
no premise to check it may never vouch for that low count."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from pydantic import Field

from auditkit import Auditor, RunResult
from auditkit.attacks import Attack, AttackConfig, AttackFacts, AttackOutput
from auditkit.attacks.registry import ATTACKS, attack_class, attack_config, attack_names, register_attack
from auditkit.data import toy_colors
from auditkit.errors import ConfigError
from auditkit.victims import build_mlp
from auditkit.victims.training import train_mlp


class NonMemberConfig(AttackConfig):
    """How many public images to hand back."""

    name: str = "nonmember_copies"
    count: int = Field(20, gt=0, le=10_000)


@dataclass(frozen=True, kw_only=True)
class NonMemberFacts(AttackFacts):
    """Which public images were handed back."""

    public_indices: list[int]


@register_attack
class NonMemberAttack(Attack):
    """Candidates = the first ``count`` public (non-member) images, labelled as the model labels them."""

    name = "nonmember_copies"
    config_type = NonMemberConfig
    facts_type = NonMemberFacts

    def run(self, model, knowledge, *, seed, device, dtype, progress=None) -> AttackOutput:
        public = knowledge.reference_inputs[: self.config.count]
        with torch.no_grad():
            out = model(torch.as_tensor(public, dtype=next(model.parameters()).dtype)).reshape(len(public), -1)
        labels = torch.sign(out[:, 0]) if out.shape[1] == 1 else out.argmax(1).double()
        facts = NonMemberFacts(
            name=self.name,
            candidates=len(public),
            seconds=0.0,
            device=str(device),
            dtype=str(dtype).removeprefix("torch."),
            seed=seed,
            public_indices=list(range(len(public))),
        )
        return AttackOutput(candidates=np.asarray(public, dtype=np.float64), labels=labels.numpy(), facts=facts)


CONTRACT_SETTINGS = {  # short: a contract
    "kkt": {"steps": 300, "restarts": 2},
    "owner": {"steps": 300, "restarts": 2},
    "nonmember_copies": {"count": 30},
    "span": {"programs": 20},
}


@pytest.fixture(scope="module")
def toy_victim():
    """A small red-vs-blue victim trained to zero error in about a second, and its initial weights."""
    data = toy_colors(n_per_class=5, test_per_class=20, seed=0, size=4)
    model = build_mlp(data.train_x.shape[1], [40, 40], seed=0, dtype=torch.float64)
    initial = build_mlp(data.train_x.shape[1], [40, 40], seed=0, dtype=torch.float64)
    log = train_mlp(model, torch.as_tensor(data.train_x), torch.as_tensor(data.train_y), lr=0.3, epochs=400)
    assert log.train_accuracy == 1.0
    return model, data, initial


def test_every_registered_attack_has_a_contract_setting():
    assert set(attack_names()) == set(CONTRACT_SETTINGS)


@pytest.mark.parametrize("name", sorted(CONTRACT_SETTINGS))
def test_an_attack_keeps_the_contract(name, toy_victim, tmp_path):
    model, data, initial = toy_victim
    attack = attack_class(name)(CONTRACT_SETTINGS[name])
    assert attack.config.name == name and attack_config(attack.config.model_dump()) == attack.config
    init = initial if attack.reads_initial else None  # the span attack reads them when given
    auditor = Auditor(attack, device="cpu", dtype="float64", seed=3)
    first, again = (auditor.audit(model, data, init=init) for _ in range(2))
    output_size = first.attack.candidates
    assert first.candidates.shape == (output_size, *data.image_shape) and output_size > 0
    assert len(first.frame) == len(data.train_x) and first.frame["identified"].dtype == bool
    for key in ("candidate_lambdas", "candidate_labels", "candidate_restart"):
        assert first.evidence[key].shape == (output_size,), key
    np.testing.assert_array_equal(first.candidates, again.candidates)  # one seed, one result
    assert type(first.attack) is ATTACKS[name].facts_type and first.summary().attack == name
    first.save(tmp_path / name)
    loaded = RunResult.load(tmp_path / name).victims[0]
    assert type(loaded.attack) is type(first.attack) and loaded.attack.to_dict() == first.attack.to_dict()
    assert loaded.summary().to_dict() == first.summary().to_dict()
    assert all(isinstance(line, str) and line for line in first.attack.describe())
    for key in type(first.attack).HEADLINE:
        assert key in first.summary().to_dict(), key


def test_non_member_candidates_identify_no_training_sample_and_vouch_for_nothing(toy_victim):
    model, data, _ = toy_victim
    result = Auditor(NonMemberAttack(count=30), device="cpu", dtype="float64").audit(model, data)
    summary = result.summary()
    assert summary.identified == 0 and summary.identified_fraction == 0.0
    assert summary.nonmembers_identified >= 25  # each copy identifies its own non-member (exact copies)
    assert summary.verdict == "inconclusive" and "states no premise" in summary.finding
    # candidates that settled on other images say nothing about the training set, whatever the premise says
    assert f"{summary.nonmembers_identified} of its 30 candidates settled on non-member images" in summary.finding


@pytest.mark.slow
def test_a_scenario_picks_its_attack_by_name(tmp_path):
    from auditkit import load_scenario, run_scenario

    scenario = load_scenario("toy_colors", {"attack": {"name": "nonmember_copies", "count": 12}})
    assert isinstance(scenario.attack, NonMemberConfig) and scenario.model_dump()["attack"]["count"] == 12
    run = run_scenario(scenario, tmp_path / "run")
    assert run.victims[0].summary().identified == 0 and run.victims[0].attack.public_indices == list(range(12))
    assert RunResult.load(tmp_path / "run").victims[0].attack.to_dict() == run.victims[0].attack.to_dict()
    registered = r"attack.name: unknown attack 'nope'; registered: kkt, nonmember_copies, owner"
    with pytest.raises(ConfigError, match=registered):
        load_scenario("toy_colors", {"attack": {"name": "nope"}})
    with pytest.raises(ConfigError, match=r"attack.count: Input should be greater than 0"):
        load_scenario("toy_colors", {"attack": {"name": "nonmember_copies", "count": 0}})


def test_an_attack_is_a_named_subclass_and_its_output_fills_what_it_does_not_say():
    with pytest.raises(TypeError):
        register_attack(dict)
    with pytest.raises(ValueError, match="attack 'kkt' is registered already"):

        @register_attack
        class Shadow(NonMemberAttack):
            name = "kkt"

    assert attack_class("kkt").__name__ == "KKTAttack"
    register_attack(NonMemberAttack)  # the same class again (its module imported twice): accepted

    @register_attack(force=True)
    class Replacement(NonMemberAttack):
        """Replaces the test attack, on purpose."""

    assert attack_class("nonmember_copies") is Replacement
    register_attack(NonMemberAttack, force=True)
    with pytest.raises(ConfigError, match="attack.name: 'nonmember_copies' is not the kkt attack's config"):
        ATTACKS["kkt"]({"name": "nonmember_copies"})
    facts = AttackFacts(name="x", candidates=2, seconds=0.0, device="cpu", dtype="float64")
    output = AttackOutput(np.zeros((2, 3)), np.ones(2), facts)
    assert np.isnan(output.lambdas).all() and (output.restart == 0).all() and output.loss_history.size == 0
    assert facts.concerns(1.0, True)[0].fatal  # an attack without a premise never vouches for a low count
