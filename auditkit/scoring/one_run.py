"""The privacy loss one training run proves: Steinke, Nasr, Jagielski's exact one-run test on paired canaries.

Their test (NeurIPS 2023, "Privacy auditing with one (1) training run", Theorem 5.2) takes m canaries,
each included in training by an independent fair coin, and an auditor that guesses r of the coins
(abstaining on the rest). If training is (epsilon, delta)-DP with respect to each coin, the number of
correct guesses v satisfies P[V >= v] <= P[Binomial(r, q) >= v] + 2 m delta alpha, with
q = e^epsilon / (1 + e^epsilon) and alpha = max_i P[v - i <= Binomial(r, q) < v] / i. The reported
epsilon is the largest one this p-value rejects at 95 %.

Victims here train on a fixed number of images per class drawn at random, not on coin flips. Pairing
every member with a non-member of its class drawn at random (a random bijection, from its own random
stream) gives exactly the coin-flip law: disjoint pairs drawn at random, then a fair coin per pair
choosing which image trains. Data passed in by a user has no non-member labels (nor a known draw): no
pairs, no claim. Flipping one coin swaps one image for another, two add/remove steps: an (epsilon,
delta)-DP training is (2 epsilon, (1 + e^epsilon) delta)-DP per coin (group privacy), so the test runs
at those values and the epsilon it rejects is an add/remove epsilon. The guesses: in a pair where the
attack identifies exactly one image, guess that one trained; abstain where it identifies both or
neither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.stats import binom

PAIRING_STREAM = 0x9A1C  # the pairing's random stream, apart from every stream that chose the members
EPSILON_SEARCH_MAX = 50.0  # a bound above any epsilon a finite count can reject


def one_run_p_value(coins: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """The probability of ``correct`` or more right guesses among ``guesses`` under (epsilon, delta)-DP
    per coin, with ``coins`` coins in all (Steinke et al., Theorem 5.2)."""
    if not 0 <= correct <= guesses <= coins:
        raise ValueError(f"need 0 <= correct ({correct}) <= guesses ({guesses}) <= coins ({coins})")
    q = 1.0 / (1.0 + math.exp(-epsilon))
    tail = float(binom.sf(correct - 1, guesses, q))
    if delta == 0 or correct == 0:
        return tail
    shortfall = np.arange(1, correct + 1)
    alpha = float(np.max((binom.sf(correct - shortfall - 1, guesses, q) - tail) / shortfall))
    return min(1.0, tail + 2 * coins * delta * alpha)


@dataclass(frozen=True)
class PairedGuesses:
    """Members paired with random non-members, and the attack's guesses about which of each pair trained."""

    pairs: int
    guesses: int  # pairs where the attack identified exactly one image
    correct: int  # of those, the pairs where that image is the member

    def epsilon_lower(self, delta: float = 0.0, significance: float = 0.05) -> float:
        """The largest add/remove epsilon the guesses reject at ``1 - significance`` (0 when none is)."""

        def excess(epsilon: float) -> float:
            swap_delta = min(1.0, (1 + math.exp(epsilon)) * delta)
            return one_run_p_value(self.pairs, self.guesses, self.correct, 2 * epsilon, swap_delta) - significance

        if not self.guesses or excess(0.0) >= 0:
            return 0.0
        if excess(EPSILON_SEARCH_MAX) < 0:
            return math.inf
        return float(brentq(excess, 0.0, EPSILON_SEARCH_MAX, xtol=1e-9))


def paired_guesses(
    member_identified: np.ndarray,
    member_labels: np.ndarray,
    nonmember_identified: np.ndarray,
    nonmember_labels: np.ndarray,
    seed: int,
) -> PairedGuesses:
    """Pair members with non-members of their label at random (per label, as many pairs as its smaller side
    holds) and count the attack's guesses: ``*_identified`` are the attack's per-image flags, ``seed`` the
    run's. Pairing within a label is exact whether the members were drawn per class or from all images."""
    member_identified, nonmember_identified = (
        np.asarray(f, dtype=bool) for f in (member_identified, nonmember_identified)
    )
    member_labels, nonmember_labels = np.asarray(member_labels), np.asarray(nonmember_labels)
    rng = np.random.default_rng(np.random.SeedSequence([max(int(seed), 0), PAIRING_STREAM]))
    pairs = guesses = correct = 0
    for label in np.unique(member_labels):
        members = member_identified[member_labels == label]
        nonmembers = nonmember_identified[nonmember_labels == label]
        count = min(len(members), len(nonmembers))
        members = members[rng.permutation(len(members))[:count]]
        nonmembers = nonmembers[rng.permutation(len(nonmembers))[:count]]
        guessed = members != nonmembers
        pairs, guesses, correct = pairs + count, guesses + int(guessed.sum()), correct + int((guessed & members).sum())
    return PairedGuesses(pairs, guesses, correct)
