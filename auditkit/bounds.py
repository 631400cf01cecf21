"""Reconstruction-robustness ceilings for DP-SGD victims (Hayes, Mahloujifar, Balle, NeurIPS 2023).

For a mechanism with privacy profile delta(eps), any reconstruction attack (even one that sees every
noisy gradient) succeeds with probability at most ``gamma = min_eps e^eps * kappa + delta(eps)``, where
kappa is the success chance with no access to the model. With m candidates the attack gets m tries,
so the measured fraction is compared with ``gamma(min(1, m * kappa))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from auditkit.metrics import minmax, ssim


def gdp_bound(kappa: float, mu: float) -> float:
    """Closed form for mu-GDP: Phi(Phi^-1(kappa) + mu). Full-batch DP-SGD is mu-GDP, mu = sqrt(T)/sigma."""
    if kappa <= 0:
        return 0.0
    if kappa >= 1:
        return 1.0
    return float(norm.cdf(norm.ppf(kappa) + mu))


def dp_sgd_bound(
    kappa: float, noise_multiplier: float, sample_rate: float, steps: int, discretization: float = 1e-3
) -> float:
    """Numerical ceiling for Poisson-subsampled Gaussian DP-SGD from its PLD (``dp-accounting``).

    Minimises ``e^eps * kappa + delta(eps)`` over a grid of eps (negative eps included, which makes the
    bound tight for large kappa). Returns 1 when no noise is added.
    """
    if kappa >= 1 or noise_multiplier <= 0:
        return 1.0
    if kappa <= 0:
        return 0.0
    from dp_accounting.pld import privacy_loss_distribution

    pld = privacy_loss_distribution.from_gaussian_mechanism(
        standard_deviation=noise_multiplier,
        sampling_prob=sample_rate,
        value_discretization_interval=discretization,
    ).self_compose(steps)
    grid = np.linspace(-10.0, 60.0, 2801)
    best = 1.0
    for _ in range(3):  # coarse grid, then refine around the minimum
        values = np.exp(grid) * kappa + np.array(pld.get_delta_for_epsilon(grid))
        index = int(np.argmin(values))
        best = min(best, float(values[index]))
        grid = np.linspace(grid[max(index - 2, 0)], grid[min(index + 2, len(grid) - 1)], 401)
    return float(min(1.0, best))


def kappa_ssim(
    pool_images: np.ndarray, threshold: float, guesses: int = 100, targets: int = 1000, seed: int = 0
) -> float:
    """Baseline chance kappa = max over guesses z0 of P_Z[SSIM(z0, Z) > threshold], Z a random non-member.

    Guesses and targets are disjoint draws from the held-out pool; the guess is scored as a candidate
    (min-max scaled, paper protocol). A maximum over a finite set of guesses is a lower estimate of the
    sup: the bound computed from it is an estimate, not a certificate.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool_images))
    guess_index, target_index = order[:guesses], order[guesses : guesses + targets]
    if len(target_index) == 0:
        return float("nan")
    candidates = minmax(pool_images[guess_index])
    chosen = np.ascontiguousarray(pool_images[target_index])
    best = 0.0
    for guess in candidates:
        scores = ssim(np.repeat(guess[None], len(chosen), 0), chosen)
        best = max(best, float((scores > threshold).mean()))
    return best


@dataclass(frozen=True)
class BoundReport:
    """The ceiling for one success criterion beside the measured success, with its baseline."""

    criterion: str
    kappa: float
    tries: int
    bound: float
    measured: float
    note: str

    @property
    def vacuous(self) -> bool:
        return self.bound >= 0.999

    @property
    def within(self) -> bool:
        return self.measured <= self.bound

    def to_dict(self) -> dict:
        return {**self.__dict__, "vacuous": self.vacuous, "within": self.within}


def bound_for(
    criterion: str,
    kappa: float,
    tries: int,
    measured: float,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    note: str,
) -> BoundReport:
    """The ceiling with ``tries`` candidates, ``gamma(min(1, tries * kappa))``, beside the measured fraction."""
    effective = min(1.0, tries * kappa)
    bound = 1.0 if math.isnan(effective) else dp_sgd_bound(effective, noise_multiplier, sample_rate, steps)
    return BoundReport(criterion, kappa, tries, bound, measured, note)
