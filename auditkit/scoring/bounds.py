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

from auditkit.budget import check_memory
from auditkit.scoring.metrics import IMAGES, Similarity


def gdp_bound(kappa: float, mu: float) -> float:
    """Closed form for mu-GDP: Phi(Phi^-1(kappa) + mu). Full-batch DP-SGD is mu-GDP, mu = sqrt(T)/sigma."""
    if kappa <= 0:
        return 0.0
    if kappa >= 1:
        return 1.0
    return float(norm.cdf(norm.ppf(kappa) + mu))


TRIVIAL_BELOW_SIGMA = 0.3
PROBE_STEPS = 16  # composed to measure the privacy-loss distribution's support, which grows as sqrt(steps)
UNKNOWN_SUPPORT = 10**6  # points assumed for PROBE_STEPS where dp-accounting does not show its support
FFT_COPIES = 8  # float64 values a composition holds per support point (its padded complex transforms)
DISCRETIZATION = 1e-3


def _pld(noise_multiplier: float, sample_rate: float, discretization: float):
    from dp_accounting.pld import privacy_loss_distribution

    return privacy_loss_distribution.from_gaussian_mechanism(
        standard_deviation=noise_multiplier, sampling_prob=sample_rate, value_discretization_interval=discretization
    )


def ceiling_bytes(
    noise_multiplier: float, sample_rate: float, steps: int, discretization: float = DISCRETIZATION
) -> int:
    """What :func:`dp_sgd_bound` allocates for ``steps`` steps, estimated before it composes them: the support of
    PROBE_STEPS composed steps, grown as the square root of the steps (the tails are truncated, so the support
    grows as the loss's spread does), FFT_COPIES float64 values per point. 0 where the bound needs no composition."""
    if noise_multiplier < TRIVIAL_BELOW_SIGMA or steps <= 0:
        return 0
    probe = _pld(noise_multiplier, sample_rate, discretization).self_compose(min(steps, PROBE_STEPS))
    pmf = getattr(probe, "_pmf_remove", None)  # dp-accounting's dense PMF; its size is what composition grows
    support = int(getattr(pmf, "size", UNKNOWN_SUPPORT))
    return int(8 * FFT_COPIES * support * max(1.0, math.sqrt(steps / PROBE_STEPS)))


def check_ceiling_memory(noise_multiplier: float, sample_rate: float, steps: int) -> None:
    """Refuse, before any work, a DP ceiling whose privacy-loss distribution would outgrow the memory budget."""
    what = f"the DP ceiling of {steps:,} steps (noise {noise_multiplier:g}, sample rate {sample_rate:g})"
    check_memory({"privacy-loss distribution": ceiling_bytes(noise_multiplier, sample_rate, steps)}, what)


def dp_sgd_bound(
    kappa: float, noise_multiplier: float, sample_rate: float, steps: int, discretization: float = DISCRETIZATION
) -> float:
    """Numerical ceiling for Poisson-subsampled Gaussian DP-SGD from its PLD (``dp-accounting``).

    Minimises ``e^eps * kappa + delta(eps)`` over a grid of eps (negative eps included, which makes the
    bound tight for large kappa). Returns 1, the trivial ceiling, when no noise is added and below
    ``TRIVIAL_BELOW_SIGMA``: there the PLD's support outgrows a CPU (already at sigma 0.3, q 0.25,
    400 steps the exact value is 1.0, computed in 14 s; more steps or less noise only raise it).
    """
    if kappa >= 1 or noise_multiplier < TRIVIAL_BELOW_SIGMA:
        return 1.0
    if kappa <= 0:
        return 0.0
    check_ceiling_memory(noise_multiplier, sample_rate, steps)
    pld = _pld(noise_multiplier, sample_rate, discretization).self_compose(steps)
    grid = np.linspace(-10.0, 60.0, 2801)
    best = 1.0
    for _ in range(3):  # coarse grid, then refine around the minimum
        values = np.exp(grid) * kappa + np.array(pld.get_delta_for_epsilon(grid))
        index = int(np.argmin(values))
        best = min(best, float(values[index]))
        grid = np.linspace(grid[max(index - 2, 0)], grid[min(index + 2, len(grid) - 1)], 401)
    return float(min(1.0, best))


def kappa_above(
    pool_images: np.ndarray,
    threshold: float,
    similarity: Similarity = IMAGES,
    *,
    seed: int,
    guesses: int = 100,
    targets: int = 1000,
) -> float:
    """Baseline chance kappa = max over guesses z0 of P_Z[score(z0, Z) > threshold], Z a random non-member,
    the score SSIM (images) or cosine (embeddings) as ``similarity`` says.

    Guesses and targets are disjoint draws from the held-out pool; the guess is scored as a candidate
    (for SSIM min-max scaled, paper protocol); ``seed`` (the run's) draws them. A maximum over a finite set of
    guesses is a lower estimate of the sup: the bound computed from it is an estimate, not a certificate.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool_images))
    guess_index, target_index = order[:guesses], order[guesses : guesses + targets]
    if len(target_index) == 0:
        return float("nan")
    chosen = np.ascontiguousarray(pool_images[target_index])
    best = 0.0
    for guess in pool_images[guess_index]:
        scores = similarity.score(np.repeat(guess[None], len(chosen), 0), chosen)
        best = max(best, float((scores > threshold).mean()))
    return best


VACUOUS_CEILING = 0.999  # a ceiling this high bounds nothing


def bounding_epsilon(kappa: float, tries: int, delta: float) -> float:
    """The epsilon below which training with (epsilon, delta)-DP bounds an attack of ``tries`` candidates
    under certain success: ``e^eps * min(1, tries * kappa) + delta < 1``, from epsilon and delta alone (the
    mechanism's full privacy profile, as :func:`dp_sgd_bound` reads it, may bound more); 0 when the tries
    alone may cover every target (no epsilon helps), infinite when there are none."""
    effective = min(1.0, tries * kappa)
    if effective <= 0:
        return math.inf
    return math.log((1 - delta) / effective) if effective < 1 - delta else 0.0


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
        """Whether the ceiling bounds nothing (at or above VACUOUS_CEILING)."""
        return self.bound >= VACUOUS_CEILING

    @property
    def within(self) -> bool:
        """Whether the measured fraction lies under the ceiling (as DP promises it must)."""
        return self.measured <= self.bound

    def to_dict(self) -> dict:
        """The JSON form, with the derived flags."""
        return {**self.__dict__, "vacuous": self.vacuous, "within": self.within}

    @classmethod
    def from_dict(cls, values: dict) -> BoundReport:
        """Read back :meth:`to_dict` (derived flags ignored)."""
        return cls(**{key: values[key] for key in ("criterion", "kappa", "tries", "bound", "measured", "note")})


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


@dataclass(frozen=True)
class ReconstructionBounds:
    """The DP ceilings of one victim: for ``identified`` and for SSIM above the threshold."""

    mechanism: str
    identified: BoundReport
    ssim: BoundReport
    holds_for: str = "any attacker who sees every noisy gradient, so the KKT attack on the final weights"

    def to_dict(self) -> dict:
        """The JSON form."""
        return {
            "mechanism": self.mechanism,
            "holds_for": self.holds_for,
            "identified": self.identified.to_dict(),
            "ssim": self.ssim.to_dict(),
        }

    @classmethod
    def from_dict(cls, values: dict) -> ReconstructionBounds:
        """Read back :meth:`to_dict`."""
        return cls(
            values["mechanism"],
            BoundReport.from_dict(values["identified"]),
            BoundReport.from_dict(values["ssim"]),
            values["holds_for"],
        )


def reconstruction_bounds(
    *,
    tries: int,
    identification_pool: int,
    identified_fraction: float,
    kappa_above_threshold: float,
    above_threshold_fraction: float,
    criterion: str,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
) -> ReconstructionBounds:
    """The DP ceiling beside each success criterion the report counts, each with its own baseline.

    tries: the attack's candidates; identification_pool: members + non-members a candidate is matched
    against (kappa of ``identified`` = 1 / pool); kappa_above_threshold: from :func:`kappa_above`, for
    ``criterion`` (e.g. "ssim > 0.4").
    """
    mechanism = (
        f"Poisson-subsampled Gaussian, sigma={noise_multiplier:.4g}, q={sample_rate:.4g}, T={steps} "
        "(PLD, dp-accounting)"
    )
    identified = bound_for(
        "identified",
        1.0 / identification_pool,
        tries,
        identified_fraction,
        noise_multiplier,
        sample_rate,
        steps,
        "kappa = 1 / (members + non-members): picking the sample out of the identification pool by chance",
    )
    above = bound_for(
        criterion,
        kappa_above_threshold,
        tries,
        above_threshold_fraction,
        noise_multiplier,
        sample_rate,
        steps,
        "kappa = max over held-out guesses of the fraction of held-out targets above the threshold: a "
        "lower estimate of the sup, so this bound is an estimate",
    )
    return ReconstructionBounds(mechanism, identified, above)
