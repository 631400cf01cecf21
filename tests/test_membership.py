"""Members against non-members: exact intervals, the one-sided test, the implied epsilon, the verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import kkt_verdict
from scipy.stats import beta, hypergeom

from auditkit import Auditor, KKTAttack
from auditkit.data.tasks import PARITY, binary_task
from auditkit.scoring.membership import MembershipTest
from auditkit.scoring.metrics import identified_nonmembers


def test_intervals_test_and_epsilon_from_their_definitions():
    test = MembershipTest(members=50, members_identified=34, nonmembers=2000, nonmembers_identified=3)
    # Clopper-Pearson from the beta distribution
    assert test.tpr_interval == pytest.approx((beta.ppf(0.025, 34, 17), beta.ppf(0.975, 35, 16)), rel=1e-6)
    assert test.fpr_interval == pytest.approx((beta.ppf(0.025, 3, 1998), beta.ppf(0.975, 4, 1997)), rel=1e-6)
    # one-sided Fisher exact: P(members identified >= 34 | 37 identified among 2050)
    assert test.p_value == pytest.approx(hypergeom.sf(33, 2050, 37, 50), rel=1e-6)
    assert test.significant
    assert test.epsilon_lower == 0.0  # counts without paired guesses claim no epsilon (tests/test_one_run.py)


def test_no_difference_means_no_evidence():
    test = MembershipTest(members=50, members_identified=1, nonmembers=1000, nonmembers_identified=20)
    assert test.p_value > 0.3 and not test.significant
    members, nonmembers, labels = np.arange(50) == 0, np.arange(1000) < 20, (np.ones(50), np.ones(1000))
    assert MembershipTest.from_flags(members, nonmembers, 0.0, 0, labels).epsilon_lower == 0.0
    assert MembershipTest.from_flags(np.zeros(50, bool), np.zeros(1000, bool), 0.0, 0, labels).epsilon_lower == 0.0


def test_premise_levels_and_findings():
    leak = MembershipTest(50, 34, 2000, 3)
    nothing = MembershipTest(50, 1, 2000, 3)
    assert kkt_verdict(0.12, 1.0, nothing).level == "conclusive"
    assert "finds no leakage beyond chance" in kkt_verdict(0.12, 1.0, nothing).finding
    assert kkt_verdict(0.55, 1.0, nothing).level == "weak"
    far = kkt_verdict(0.97, 1.0, nothing)
    assert far.level == "inconclusive" and "NOT evidence" in far.finding and "far from a KKT point" in far.finding
    assert kkt_verdict(0.12, 0.96, nothing).level == "inconclusive"
    assert kkt_verdict(math.nan, 1.0, nothing).level == "inconclusive"
    assert "bounds any attack at 42%" in kkt_verdict(0.999, 1.0, nothing, dp_epsilon=8.0, dp_ceiling=0.42).finding
    huge_epsilon = kkt_verdict(0.79, 1.0, nothing, dp_epsilon=1.4e6, dp_ceiling=1.0).finding
    assert "ceiling is vacuous" in huge_epsilon and "bounds any attack" not in huge_epsilon
    far_but_leaking = kkt_verdict(0.97, 1.0, leak).finding
    assert "the weights leak these samples" in far_but_leaking and "The count is a lower bound" in far_but_leaking
    assert "lower bound" not in kkt_verdict(0.12, 1.0, leak).finding
    barely = kkt_verdict(0.97, 1.0, MembershipTest(50, 1, 4950, 3))  # p = 0.039, epsilon bound 0
    assert "privacy loss at least" not in barely.finding and "lower bound" in barely.finding
    raw = kkt_verdict(0.15, 1.0, nothing, centred=False)
    assert raw.level == "weak" and "not centred" in raw.finding


def test_nonmembers_are_identified_by_their_own_copies_only(mnist):
    images, _ = mnist
    train, pool = images[:20].reshape(-1, 28, 28), images[1000:1300].reshape(-1, 28, 28)
    copies = np.concatenate([pool[:5] + 0.01, train[:10] + 0.01])
    flags = identified_nonmembers(train, copies, pool)
    assert flags[:5].all() and flags.sum() == 5
    assert not identified_nonmembers(train, train + 0.01, pool).any()


@pytest.mark.slow
def test_a_model_audited_against_data_it_never_saw_is_not_significant(small_victim, small_victim_audit, mnist):
    """Control: the small victim (trained on seed 0's 20 digits) against seed 1's claimed training set.
    Measured: its own audit identifies 20/20 against 0 non-members; the control finds no difference."""
    model, data = small_victim
    auditor = Auditor(KKTAttack(steps=3000, restarts=1, alpha=40.0), device="cpu")
    own = small_victim_audit.summary()
    assert own.p_value < 1e-6 and own.epsilon_lower > 0.5  # 20 pairs prove at most 0.91
    claimed = binary_task(*mnist, *PARITY, n_per_class=10, test_per_class=100, seed=1, image_shape=(28, 28), name="x")
    assert not set(claimed.train_index) & set(data.train_index)
    control = auditor.audit(model, claimed).summary()
    assert control.p_value > 0.05 and control.epsilon_lower == 0.0


def test_resemblance_without_identification_is_called_what_it_is():
    from auditkit.scoring.verdict import resemblance_note

    chance = MembershipTest(20, 1, 400, 5)
    assert "reveal what a class looks like" in resemblance_note(chance, 20, 0, 20, 0.4)
    assert resemblance_note(chance, 4, 0, 20, 0.4) == ""  # few resemble: nothing to add
    assert resemblance_note(MembershipTest(20, 15, 400, 5), 20, 0, 20, 0.4) == ""  # samples singled out: said already
