"""DP-SGD victims with Opacus: Poisson-sampled minibatches, per-sample clipping, Gaussian noise.

The noise multiplier is found (or checked) by the accountant before any training, so an impossible
budget fails fast. Both Opacus generators (the Poisson sampler's and the noise) are seeded. The attack
gets the clean module's weights (Opacus's wrapper is stripped).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import warnings
from collections.abc import Callable

import torch
from pydantic import BaseModel, Field, ValidationError
from torch import nn

from auditkit.errors import STRICT, ConfigError, first_error
from auditkit.results.facts import Accountant, PrivacyFacts, TrainingLog
from auditkit.victims.training import classification_loss, finish_training

ACCOUNTANT_SECONDS = 60.0
LARGEST_SIGMA = 1e6  # noise beyond which an accountant's epsilon no longer falls (its floor)


class DPConfigError(ConfigError):
    """DP-SGD settings that cannot be met (named field, allowed values)."""


def bounded(call: Callable, seconds: float = ACCOUNTANT_SECONDS):
    """``call()``, or TimeoutError after ``seconds``: the call runs in a daemon thread that is abandoned
    at the limit (an accountant stuck in a numerical search cannot be interrupted, only left behind)."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed to the caller's thread below
            outcome["error"] = error

    worker = threading.Thread(target=target, daemon=True, name="auditkit-accountant")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeoutError(f"the accountant did not answer within {seconds:g}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def accountant_epsilon(accountant: str, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """The epsilon ``accountant`` certifies for ``steps`` steps of noise ``noise_multiplier`` at sampling rate
    ``sample_rate`` and ``delta`` (the call bounded in time)."""
    from opacus.accountants import create_accountant

    def compute() -> float:
        acc = create_accountant(accountant)
        acc.history = [(noise_multiplier, sample_rate, steps)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(acc.get_epsilon(delta=delta))

    return bounded(compute)


def plan_dp(
    n: int,
    *,
    batch_size: int,
    epochs: int,
    max_grad_norm: float,
    delta: float,
    target_epsilon: float | None = None,
    noise_multiplier: float | None = None,
    accountant: str = "rdp",
    field: str = "defense",
) -> PrivacyFacts:
    """Resolve sigma (from a target epsilon) or epsilon (from sigma), before any training."""
    from opacus.accountants.utils import get_noise_multiplier

    if batch_size > n:
        raise DPConfigError(f"{field}.batch_size: {batch_size} is larger than the {n} training samples")
    sample_rate = batch_size / n
    steps = epochs * max(1, round(1 / sample_rate))
    note = ""
    if noise_multiplier is None:
        floor = accountant_epsilon(accountant, LARGEST_SIGMA, sample_rate, steps, delta)
        if target_epsilon < floor:
            raise DPConfigError(
                f"{field}.target_epsilon: {target_epsilon} cannot be reached with delta={delta}, q={sample_rate:.3g}, "
                f"{steps} steps: the {accountant} accountant certifies no less than {floor:.3g} at any noise; "
                "raise epsilon or delta"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                noise_multiplier = bounded(
                    lambda: get_noise_multiplier(
                        target_epsilon=target_epsilon,
                        target_delta=delta,
                        sample_rate=sample_rate,
                        steps=steps,
                        accountant=accountant,
                    )
                )
        except (ValueError, TimeoutError, OverflowError) as error:
            raise DPConfigError(
                f"{field}.target_epsilon: {target_epsilon} cannot be reached with delta={delta}, "
                f"q={sample_rate:.3g}, {steps} steps ({error}); raise epsilon, or lower epochs/batch_size"
            ) from None
    try:
        epsilon = accountant_epsilon(accountant, noise_multiplier, sample_rate, steps, delta)
    except (ValueError, TimeoutError, OverflowError, ZeroDivisionError) as error:
        if accountant == "rdp":
            raise DPConfigError(f"{field}: the RDP accountant failed ({error})") from None
        note = f"{accountant} accountant failed ({error}); epsilon from rdp"
        accountant = "rdp"
        epsilon = accountant_epsilon(accountant, noise_multiplier, sample_rate, steps, delta)
    return PrivacyFacts(
        epsilon=epsilon,
        delta=delta,
        accountant=accountant,
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        steps=steps,
        max_grad_norm=max_grad_norm,
        accountant_note=note,
        epochs=epochs,
        batch_size=batch_size,
    )


def train_dp_sgd(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    plan: PrivacyFacts,
    *,
    lr: float,
    seed: int,
    weight_decay: float = 0.0,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> TrainingLog:
    """DP-SGD with Opacus (Poisson sampling); returns the log with epsilon as the engine's accountant says."""
    with warnings.catch_warnings():
        # Opacus warns that secure_mode is off (it needs torchcsprng, unavailable for current torch) and
        # that its backward hooks fire on the first layer: both expected here.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        # At tiny noise (epsilon 1e6 and up) the best RDP order is the smallest one tried: epsilon is then an
        # upper bound, far past any meaningful guarantee either way, and the report says it is vacuous.
        warnings.filterwarnings("ignore", message="Optimal order is the smallest alpha")
        return _train_dp_sgd(model, x, labels, plan, lr, seed, weight_decay, test, progress)


def _train_dp_sgd(model, x, labels, plan, lr, seed, weight_decay, test, progress) -> TrainingLog:
    from opacus import PrivacyEngine

    start = time.perf_counter()
    dataset = torch.utils.data.TensorDataset(x, labels)
    loader_generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=plan.batch_size, generator=loader_generator)
    noise_generator = torch.Generator(device=x.device).manual_seed(seed + 1)
    engine = PrivacyEngine(accountant=plan.accountant)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
    private, optimizer, loader = engine.make_private(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=plan.noise_multiplier,
        max_grad_norm=plan.max_grad_norm,
        poisson_sampling=True,
        noise_generator=noise_generator,
    )
    loss_value = math.nan
    for epoch in range(1, plan.epochs + 1):
        for batch_x, batch_y in loader:
            optimizer.zero_grad(set_to_none=True)
            output = private(batch_x)
            if len(batch_x):
                loss = classification_loss(output, batch_y)
                loss_value = loss.item()
            else:  # an empty Poisson batch: zero per-sample gradients, and the step still adds its noise
                loss = output.sum()
            loss.backward()
            optimizer.step()
        if progress is not None:
            progress(epoch, loss_value)
    steps = sum(entry[2] for entry in engine.accountant.history)
    privacy = dataclasses.replace(plan, epsilon=float(engine.get_epsilon(plan.delta)), steps=steps)
    recipe = {"optimizer": "dp_sgd", "lr": lr, "weight_decay": weight_decay, "batch_size": plan.batch_size}
    return finish_training(model, x, labels, test, plan.epochs, start, recipe, privacy)


def privacy_facts(privacy, delta: float | None = None) -> PrivacyFacts:
    """What a model trained elsewhere with DP-SGD guarantees, for the audit to put beside its counts.

    privacy: an Opacus ``PrivacyEngine`` that trained the model (its accountant's history; give ``delta``),
    a mapping ``{noise_multiplier, sample_rate, steps, delta[, accountant, max_grad_norm]}``, or
    :class:`PrivacyFacts`. The ceiling needs one mechanism, so the history must hold one noise multiplier
    and one sample rate.
    """
    if isinstance(privacy, PrivacyFacts):
        return privacy
    if hasattr(privacy, "accountant") and hasattr(privacy.accountant, "history"):
        history = privacy.accountant.history
        if not history:
            raise DPConfigError("privacy: the PrivacyEngine has not taken a step (its accountant history is empty)")
        mechanisms = {(float(sigma), float(q)) for sigma, q, _ in history}
        if len(mechanisms) > 1:
            raise DPConfigError(
                f"privacy: the PrivacyEngine ran {len(mechanisms)} noise multiplier/sample rate pairs; the "
                "ceiling needs one: pass {noise_multiplier, sample_rate, steps, delta} for the part to audit"
            )
        (sigma, q), steps = mechanisms.pop(), sum(int(entry[2]) for entry in history)
        if delta is None:
            raise DPConfigError("privacy: give delta= with a PrivacyEngine (the delta its epsilon is stated at)")
        settings = {"noise_multiplier": sigma, "sample_rate": q, "steps": steps, "delta": delta}
        settings["accountant"] = privacy.accountant.mechanism()
    elif isinstance(privacy, dict):
        settings = {**privacy, **({"delta": delta} if delta is not None else {})}
    else:
        raise DPConfigError(f"privacy: expected an Opacus PrivacyEngine or a mapping, got {type(privacy).__name__}")
    return _checked_facts(settings)


class DPTrainingSettings(BaseModel):
    """DP-SGD as it ran elsewhere: what the accountant needs for epsilon and the ceiling."""

    model_config = STRICT
    noise_multiplier: float = Field(ge=0, le=1e4)
    sample_rate: float = Field(gt=0, le=1)
    steps: int = Field(gt=0)
    delta: float = Field(gt=0, lt=1)
    accountant: Accountant = "rdp"
    max_grad_norm: float = Field(math.nan, gt=0, allow_inf_nan=True)


def _checked_facts(settings: dict) -> PrivacyFacts:
    try:
        given = DPTrainingSettings.model_validate(settings)
    except ValidationError as error:
        raise DPConfigError(first_error(error, "privacy")) from None
    sigma, q, steps, delta = given.noise_multiplier, given.sample_rate, given.steps, given.delta
    epsilon = math.inf if sigma == 0 else accountant_epsilon(given.accountant, sigma, q, steps, delta)
    return PrivacyFacts(
        epsilon=epsilon,
        delta=delta,
        accountant=given.accountant,
        noise_multiplier=sigma,
        sample_rate=q,
        steps=steps,
        max_grad_norm=given.max_grad_norm,
        accountant_note="as given to the audit (training ran elsewhere)",
    )
