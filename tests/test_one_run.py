"""The one-run epsilon: Steinke et al.'s p-value against the paper's formula, its closed form, its validity
under a worst-case DP mechanism, and the pairing of members with non-members."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from auditkit.scoring.membership import MembershipTest
from auditkit.scoring.one_run import PairedGuesses, one_run_p_value, paired_guesses


def _formula_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """Theorem 5.2 of Steinke, Nasr, Jagielski written out term by term (exact binomial sums)."""
    q = math.exp(epsilon) / (1 + math.exp(epsilon))

    def pmf(k: int) -> float:
        return math.comb(r, k) * q**k * (1 - q) ** (r - k) if 0 <= k <= r else 0.0

    tail = sum(pmf(k) for k in range(v, r + 1))
    alpha = max((sum(pmf(v - j) for j in range(1, i + 1)) / i for i in range(1, v + 1)), default=0.0)
    return min(1.0, tail + 2 * m * delta * alpha)


@pytest.mark.parametrize(
    ("m", "r", "v", "epsilon", "delta"),
    [
        (100, 40, 30, 1.0, 0.0),
        (100, 40, 30, 1.0, 1e-5),
        (1000, 200, 150, 2.0, 1e-3),
        (50, 10, 10, 0.3, 1e-2),
        (20, 0, 0, 1.0, 0.1),
    ],
)
def test_p_value_is_the_papers_formula(m, r, v, epsilon, delta):
    expected = _formula_p_value(m, r, v, epsilon, delta)
    assert one_run_p_value(m, r, v, epsilon, delta) == pytest.approx(expected, rel=1e-9)


def test_every_guess_right_has_a_closed_form():
    # P[Binomial(r, q) >= r] = q^r = 0.05 at the bound; the coin's epsilon is twice the add/remove one
    for r in (5, 33, 200):
        q = 0.05 ** (1 / r)
        expected = math.log(q / (1 - q)) / 2
        assert PairedGuesses(pairs=250, guesses=r, correct=r).epsilon_lower() == pytest.approx(expected, rel=1e-6)


def test_more_right_guesses_prove_more_and_delta_proves_less():
    bounds = [PairedGuesses(100, 60, v).epsilon_lower() for v in (30, 40, 50, 60)]
    assert bounds[0] == 0.0 and bounds == sorted(bounds) and bounds[-1] > bounds[-2] > 0
    assert 0 < PairedGuesses(100, 60, 55).epsilon_lower(delta=1e-3) < PairedGuesses(100, 60, 55).epsilon_lower()
    assert PairedGuesses(100, 0, 0).epsilon_lower() == 0.0


def test_a_worst_case_dp_mechanism_is_caught_overclaiming_at_most_five_percent_of_the_time():
    """Randomized response on each coin at the swap's epsilon (2 epsilon): every guess is right with the
    largest probability epsilon-DP allows. The bound may exceed epsilon in at most 5 % of runs."""
    rng = np.random.default_rng(7)
    epsilon, pairs, runs = 1.0, 200, 400
    right = 1 / (1 + math.exp(-2 * epsilon))

    def overclaims(right_guess: float) -> bool:
        return PairedGuesses(pairs, pairs, int(rng.binomial(pairs, right_guess))).epsilon_lower() > epsilon

    over = sum(overclaims(right) for _ in range(runs))
    assert over <= 0.05 * runs + 3 * math.sqrt(0.05 * 0.95 * runs)
    # and the test has power: a mechanism twice as loose is caught overclaiming most of the time
    looser = 1 / (1 + math.exp(-4 * epsilon))
    caught = sum(overclaims(looser) for _ in range(50))
    assert caught > 40


def _paired(members, nonmembers, seed=0):
    """Pairing with one label for everyone."""
    return paired_guesses(members, np.ones(len(members)), nonmembers, np.ones(len(nonmembers)), seed)


def test_pairs_guess_only_where_the_attack_tells_the_two_apart():
    members = np.array([True] * 30 + [False] * 20)
    assert _paired(members, np.zeros(4950, bool)) == PairedGuesses(50, 30, 30)
    assert _paired(np.zeros(50, bool), np.ones(4950, bool)) == PairedGuesses(50, 50, 0)
    assert _paired(np.ones(50, bool), np.ones(4950, bool)) == PairedGuesses(50, 0, 0)
    assert _paired(members, np.zeros(10, bool)).pairs == 10  # as many pairs as the smaller side
    nonmembers = np.arange(4950) % 7 == 0
    assert _paired(members, nonmembers, seed=1) == _paired(members, nonmembers, seed=1)
    assert len({_paired(members, nonmembers, seed=s) for s in range(20)}) > 1  # random (the seed's own stream)


def test_members_are_paired_within_their_label_and_unknown_labels_pair_with_none():
    members, member_labels = np.array([True] * 10 + [False] * 10), np.array([1.0] * 10 + [-1.0] * 10)
    # every identified member is +1 and every identified non-member -1: within labels the guesses are all right
    nonmembers, nonmember_labels = np.array([False] * 100 + [True] * 100), np.array([1.0] * 100 + [-1.0] * 100)
    assert paired_guesses(members, member_labels, nonmembers, nonmember_labels, seed=0) == PairedGuesses(20, 20, 10)
    three = paired_guesses(members, member_labels, nonmembers[:103], nonmember_labels[:103], seed=0)
    assert three == PairedGuesses(13, 13, 10)  # 10 pairs of +1, 3 of -1
    unknown = np.full(200, np.nan)  # data passed in by a user: no claim
    assert paired_guesses(members, member_labels, nonmembers, unknown, seed=0) == PairedGuesses(0, 0, 0)
    assert PairedGuesses(0, 0, 0).epsilon_lower() == 0.0


def test_membership_test_reports_the_one_run_bound():
    members, nonmembers = np.array([True] * 33 + [False] * 17), np.arange(4950) < 6
    labels = (np.ones(50), np.ones(4950))
    test = MembershipTest.from_flags(members, nonmembers, delta=0.0, seed=0, labels=labels)
    assert (test.members, test.members_identified, test.nonmembers, test.nonmembers_identified) == (50, 33, 4950, 6)
    assert test.epsilon_lower == test.paired.epsilon_lower() > 0
    assert test.to_dict()["paired"] == {"pairs": 50, "guesses": test.paired.guesses, "correct": test.paired.correct}
    assert MembershipTest.from_flags(members, nonmembers, delta=0.0, seed=0).epsilon_lower == 0.0  # no labels
    assert MembershipTest(50, 33, 4950, 6).epsilon_lower == 0.0  # counts alone claim no epsilon
    loose = MembershipTest.from_flags(members, nonmembers, delta=0.5, seed=0, labels=labels)
    assert loose.epsilon_lower < test.epsilon_lower


def test_the_recorded_dp_victims_never_prove_more_than_their_accountant():
    """benchmarks/results/mnist_dp_seeds.json (``scenario_seeds.py mnist_dp``): every DP victim's one-run
    epsilon sits at or below the accountant's; above it, the test or the accountant would be wrong."""
    records = json.loads((Path(__file__).parents[1] / "benchmarks/results/mnist_dp_seeds.json").read_text())
    private = [record for record in records if record["epsilon"] is not None]
    assert private and all(0 <= record["epsilon_lower"] <= record["epsilon"] for record in private)
