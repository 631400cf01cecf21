"""DP-SGD victims (Opacus) and the reconstruction ceilings beside them."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from auditkit import KKTAttack
from auditkit.cli import main
from auditkit.scoring.bounds import dp_sgd_bound, gdp_bound
from auditkit.testing import assert_leaks, assert_leaks_at_most
from auditkit.victims.dp import DPConfigError, accountant_epsilon, bounded, plan_dp, train_dp_sgd
from auditkit.victims.models import build_mlp
from auditkit.victims.training import logistic_loss

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT  # scenarios/, attacks/, defenses/ at the top of the repository


@pytest.mark.parametrize("sigma, steps", [(10.0, 100), (2.0, 50), (1.0, 4)])
@pytest.mark.parametrize("kappa", [1e-3, 1e-2, 0.1, 0.5])
def test_bound_matches_closed_form_at_full_batch(sigma, steps, kappa):
    closed = gdp_bound(kappa, steps**0.5 / sigma)
    assert dp_sgd_bound(kappa, sigma, 1.0, steps) == pytest.approx(closed, abs=1e-4)


@pytest.mark.parametrize("kappa, published", [(1e-3, 0.079), (1e-2, 0.256), (0.1, 0.65)])
def test_bound_matches_published_values(kappa, published):
    """dp-bounds.md: n = 500, batch 50, 100 epochs, sigma = 2 (epsilon 8.3 at delta 1e-5)."""
    assert dp_sgd_bound(kappa, 2.0, 50 / 500, 1000) == pytest.approx(published, abs=0.005)


def test_bound_without_noise_is_vacuous():
    assert dp_sgd_bound(1e-3, 0.0, 0.5, 100) == 1.0


@pytest.mark.slow
def test_impossible_settings_fail_before_training():
    with pytest.raises(DPConfigError, match="batch_size: 80 is larger than the 50"):
        plan_dp(50, batch_size=80, epochs=10, max_grad_norm=1.0, delta=1e-5, target_epsilon=8.0)
    with pytest.raises(DPConfigError, match="target_epsilon: 1e-09 cannot be reached"):
        plan_dp(50, batch_size=25, epochs=10, max_grad_norm=1.0, delta=1e-5, target_epsilon=1e-9)


def test_cli_rejects_bad_dp_settings_in_one_line(tmp_path, monkeypatch):
    """In-process (click's runner): each case fails in one line with exit code 2 before any training."""
    for folder in ("attacks", "defenses", "scenarios"):
        shutil.copytree(PRESETS / folder, tmp_path / folder)
    cases = {
        "target_epsilon: -1": "defenses.1.dp.target_epsilon: Input should be greater than 0",
        "target_epsilon: 8, delta: 1.5": "defenses.1.dp.delta: Input should be less than 1",
        "target_epsilon: 8, batch_size: 500": "defenses.1.dp.batch_size: 500 is larger than the 50",
        "target_epsilon: 1.0e-9": "defenses.1.dp.target_epsilon: 1e-09 cannot be reached",
        "batch_size: 5": "defenses.1.dp: give exactly one of 'target_epsilon' or 'noise_multiplier'",
    }
    monkeypatch.setenv("AUDITKIT_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "scenarios" / "bad.yaml"
    for settings, expected in cases.items():
        path.write_text(f"extends: mnist_quick\ndefenses: [none, {{name: dp, kind: dp_sgd, dp: {{{settings}}}}}]\n")
        result = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "out")])
        assert result.exit_code == 2, (result.output, result.exception)
        assert expected in result.output
        assert "Traceback" not in result.output and "training  step" not in result.output
    assert not (tmp_path / "cache" / "victims").exists()


def _dp_twin(small_victim, target_epsilon: float):
    _, data = small_victim
    model = build_mlp(784, [200, 200], "none", seed=0, dtype=torch.float64)
    x, y = torch.as_tensor(data.train_x), torch.as_tensor(data.train_y)
    plan = plan_dp(len(x), batch_size=10, epochs=60, max_grad_norm=1.0, delta=1e-5, target_epsilon=target_epsilon)
    log = train_dp_sgd(
        model,
        x,
        y,
        plan,
        lr=0.5,
        weight_decay=0.01,
        seed=0,
        test=(torch.as_tensor(data.test_x), torch.as_tensor(data.test_y)),
    )
    return model, plan, log


@pytest.mark.slow
def test_recorded_epsilon_is_the_accountants(small_victim):
    model, plan, log = _dp_twin(small_victim, target_epsilon=8.0)
    privacy = log.privacy
    assert privacy.steps == plan.steps
    expected = accountant_epsilon("rdp", privacy.noise_multiplier, privacy.sample_rate, privacy.steps, 1e-5)
    assert privacy.epsilon == pytest.approx(expected, rel=1e-9)
    assert privacy.epsilon == pytest.approx(8.0, rel=0.02)
    assert not any(key.startswith("_module") for key in model.state_dict())


def test_epsilon_is_computed_at_the_configured_delta():
    """A delta other than the usual 1e-5 must reach both the plan and the trained victim's record."""
    delta = 1e-3
    plan = plan_dp(8, batch_size=4, epochs=2, max_grad_norm=1.0, delta=delta, noise_multiplier=1.5)
    at_delta = accountant_epsilon("rdp", 1.5, 0.5, plan.steps, delta)
    assert plan.epsilon == pytest.approx(at_delta, rel=1e-9)
    assert at_delta < accountant_epsilon("rdp", 1.5, 0.5, plan.steps, 1e-5) - 0.1
    x = torch.randn(8, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([1.0, -1.0] * 4, dtype=torch.float64)
    log = train_dp_sgd(build_mlp(5, [4], seed=0, dtype=torch.float64), x, y, plan, lr=0.1, seed=0)
    assert log.privacy.delta == delta
    assert log.privacy.epsilon == pytest.approx(at_delta, rel=1e-9)


def test_accountant_time_limit_returns_at_the_limit():
    start = time.perf_counter()
    with pytest.raises(TimeoutError, match="within 0.3s"):
        bounded(lambda: time.sleep(5), seconds=0.3)
    assert time.perf_counter() - start < 1.5
    assert bounded(lambda: 7, seconds=1) == 7
    with pytest.raises(ZeroDivisionError):
        bounded(lambda: 1 / 0, seconds=1)


@pytest.mark.slow
def test_small_epsilon_victim_leaks_nothing_identifiable_while_its_twin_does(small_victim, small_victim_audit):
    """Measured (20 MNIST digits, 784-200-200-1, 3000 steps): undefended twin 20/20 identified;
    DP-SGD at epsilon 1 (q = 0.5, 120 steps): 0/20, seeds 0-2."""
    _, data = small_victim
    assert_leaks(small_victim_audit, at_least=16)
    private, _, _ = _dp_twin(small_victim, target_epsilon=1.0)
    attack = KKTAttack(steps=3000, restarts=1, alpha=40.0)
    result = assert_leaks_at_most(private, data, attack, at_most=0, allow_inconclusive=True)
    assert result.summary().verdict != "conclusive"  # the DP victim is far from a KKT point: the ceiling speaks
    with pytest.raises(AssertionError, match="proves nothing"):
        assert_leaks_at_most(result, at_most=0)


def _tiny_dp(n: int, batch_size: int, epochs: int, sigma: float, clip: float, x: torch.Tensor, lr: float = 0.1):
    plan = plan_dp(n, batch_size=batch_size, epochs=epochs, max_grad_norm=clip, delta=1e-3, noise_multiplier=sigma)
    model = build_mlp(x.shape[1], [50], seed=0, dtype=torch.float64)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    y = torch.tensor([1.0, -1.0] * (n // 2), dtype=torch.float64)
    log = train_dp_sgd(model, x, y, plan, lr=lr, seed=0)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    return plan, log, model, after - before


def test_dp_victims_get_the_planned_noise_even_in_empty_batches():
    """Zero inputs give zero gradients, so every step moves the weights by noise alone: after T steps
    each weight moved N(0, T (lr sigma C / B)^2). At q = 1/4, n = 4, a third of the Poisson batches are
    empty; skipping their noise would shrink the spread to about 0.83 of the plan."""
    plan, log, _, moved = _tiny_dp(4, 1, 40, sigma=2.0, clip=0.5, x=torch.zeros(4, 5, dtype=torch.float64))
    assert log.privacy.steps == plan.steps == 160
    planned = plan.steps**0.5 * 0.1 * 2.0 * 0.5 / 1
    assert 0.9 < float(moved.std()) / planned < 1.1


def test_dp_sgd_without_noise_is_clipped_sgd():
    """noise_multiplier 0 at q = 1 (every sample in the one batch): one step is
    -lr * sum_i clip(g_i, C) / n, with per-sample gradients computed here by hand."""
    n, clip, lr = 6, 0.01, 0.5
    x = torch.randn(n, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    reference = build_mlp(5, [50], seed=0, dtype=torch.float64)
    y = torch.tensor([1.0, -1.0] * (n // 2), dtype=torch.float64)
    clipped = []
    for i in range(n):
        grads = torch.autograd.grad(
            logistic_loss(reference(x[i : i + 1]).squeeze(-1), y[i : i + 1]), list(reference.parameters())
        )
        flat = torch.cat([g.flatten() for g in grads])
        assert flat.norm() > 10 * clip  # the clipping is active
        clipped.append(flat * min(1.0, clip / float(flat.norm())))
    expected = -lr * torch.stack(clipped).sum(0) / n
    _, _, _, moved = _tiny_dp(n, n, 1, sigma=0.0, clip=clip, x=x, lr=lr)
    torch.testing.assert_close(moved, expected, rtol=1e-3, atol=1e-12)


def _opacus_trained_elsewhere(data):
    """What a user's own DP-SGD script does: Opacus on a small MLP, labels 0/1."""
    from opacus import PrivacyEngine

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 32, bias=False), torch.nn.ReLU(), torch.nn.Linear(32, 1, bias=False)
    )
    x, y01 = torch.as_tensor(data.train_x, dtype=torch.float32), torch.as_tensor(data.train_y > 0, dtype=torch.float32)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y01), batch_size=5)
    engine = PrivacyEngine()
    model, optimizer, loader = engine.make_private(
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.5),
        data_loader=loader,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        poisson_sampling=False,
    )
    for _ in range(3):
        for batch_x, batch_y in loader:
            optimizer.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(model(batch_x).squeeze(-1), batch_y).backward()
            optimizer.step()
    return model, engine, (x, y01)


@pytest.mark.slow
def test_a_model_trained_with_opacus_elsewhere_gets_its_epsilon_and_ceiling(small_victim):
    from auditkit import Auditor

    _, data = small_victim
    model, engine, train = _opacus_trained_elsewhere(data)
    auditor = Auditor(KKTAttack(steps=30, restarts=1, search="off"), device="cpu")
    result = auditor.audit(model, train=train, nonmembers=data.pool_x[:200], mean=data.mean, privacy=engine, delta=1e-5)
    assert result.privacy.epsilon == pytest.approx(engine.get_epsilon(1e-5), rel=1e-6)
    assert result.privacy.steps == 12 and result.privacy.sample_rate == pytest.approx(0.25)
    assert result.bounds is not None and 0 < result.bounds.identified.bound <= 1
    assert result.bounds.identified.bound == pytest.approx(
        dp_sgd_bound(min(1.0, result.attack.candidates / 220), 1.0, 0.25, 12), rel=1e-6
    )
    assert result.membership().delta == 1e-5
    # the same facts given by hand
    given = {"noise_multiplier": 1.0, "sample_rate": 0.25, "steps": 12, "delta": 1e-5}
    by_hand = auditor.audit(model, train=train, nonmembers=data.pool_x[:200], mean=data.mean, privacy=given)
    assert by_hand.privacy.epsilon == pytest.approx(accountant_epsilon("rdp", 1.0, 0.25, 12, 1e-5))


@pytest.mark.parametrize(
    "privacy, delta, expected",
    [
        ("engine", None, "privacy: give delta= with a PrivacyEngine"),
        ({"noise_multiplier": 1.0, "sample_rate": 0.25, "steps": 12}, None, "privacy.delta: Field required"),
        ({"noise_multiplier": 1.0, "sample_rate": 2.0, "steps": 12, "delta": 1e-5}, None, "privacy.sample_rate"),
        ({"noise_multiplier": "1", "sample_rate": 0.2, "steps": 12, "delta": 1e-5}, None, "privacy.noise_multiplier"),
        (
            {"noise_multiplier": 1.0, "sample_rate": 0.2, "steps": 12, "delta": 1e-5, "sigma": 1},
            None,
            "privacy.sigma: unknown",
        ),
        (3.0, None, "privacy: expected an Opacus PrivacyEngine or a mapping, got float"),
    ],
)
def test_bad_privacy_facts_are_named(small_victim, privacy, delta, expected):
    from opacus import PrivacyEngine

    from auditkit.victims.dp import privacy_facts

    if privacy == "engine":
        privacy = PrivacyEngine()
        privacy.accountant.history = [(1.0, 0.25, 12)]
    with pytest.raises(DPConfigError, match=re.escape(expected)):
        privacy_facts(privacy, delta)
