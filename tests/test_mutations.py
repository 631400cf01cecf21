"""Tests that fail on the seeded mutations the suite once let through: each pins one exact rule (a one-sided test,
the direction of a ceiling, a budget's sum, a projection) against an independent computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import hypergeom

from auditkit.attacks.kkt.kernel import Objective, explained, stationarity_loss
from auditkit.attacks.kkt.network import victim_network
from auditkit.budget import GIB, check_memory
from auditkit.errors import ConfigError
from auditkit.scoring.bounds import BoundReport
from auditkit.scoring.membership import MembershipTest
from auditkit.victims.models import build_mlp


def test_the_membership_p_value_is_one_sided():
    test = MembershipTest(members=50, members_identified=5, nonmembers=50, nonmembers_identified=0)
    # P(at least 5 of the 5 identified images are members), 50 of 100 images being members
    assert test.p_value == pytest.approx(hypergeom(100, 5, 50).sf(4), rel=1e-12)
    assert test.significant  # 0.028 one-sided; a two-sided test would read 0.056 and miss this leak


def test_a_measured_fraction_above_its_ceiling_is_not_within_it():
    def report(measured: float) -> BoundReport:
        return BoundReport("identified", 0.01, 10, 0.3, measured, "")

    assert report(0.2).within and report(0.3).within
    assert not report(0.5).within and report(0.5).to_dict()["within"] is False


def test_the_memory_budget_refuses_the_sum_of_parts_each_under_it(monkeypatch):
    monkeypatch.setenv("AUDITKIT_MEMORY_GB", "1")
    check_memory({"data": int(0.6 * GIB)}, "the job")  # one part alone fits
    with pytest.raises(ConfigError, match=r"the job: needs about 1\.2 GiB \(data 0\.6 GiB, attack 0\.6 GiB\)"):
        check_memory({"data": int(0.6 * GIB), "attack": int(0.6 * GIB)}, "the job")


def _flat(parameters) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in parameters]).numpy()


def test_the_owner_objective_projects_the_initial_weights_out_as_a_least_squares_fit():
    final = victim_network(build_mlp(6, [5, 4], "none", seed=0, dtype=torch.float64))
    initial = victim_network(build_mlp(6, [5, 4], "none", seed=1, dtype=torch.float64))
    objective = Objective((initial,), final, initial)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 6, generator=generator, dtype=torch.float64)
    lambdas = torch.rand(1, 4, generator=generator, dtype=torch.float64)
    labels = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    residual = _flat(final.parameters) - _flat([g[0] for g in explained(objective, x, lambdas, labels, 10.0)])
    free = _flat(initial.parameters)
    best = np.linalg.lstsq(free[:, None], residual, rcond=None)[0]  # theta_0's multiple, fitted independently
    expected = np.sum((residual - free * best) ** 2)
    assert stationarity_loss(objective, x, lambdas, labels, 10.0)[0].item() == pytest.approx(expected, rel=1e-9)
    target, fit = _flat(final.parameters), np.linalg.lstsq(free[:, None], _flat(final.parameters), rcond=None)[0]
    assert objective.norm().item() == pytest.approx(np.linalg.norm(target - free * fit), rel=1e-9)
