"""Run a scenario end to end: data, one victim per defense (cached), the audit, the report files."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from auditkit.attack import KKTAttack, KKTConfig
from auditkit.auditor import Auditor, AuditResult
from auditkit.bounds import bound_for, kappa_ssim
from auditkit.data import PARITY, AuditData, binary_task, load_mnist_images, toy_colors
from auditkit.dp import DPPlan, plan_dp, train_dp_sgd
from auditkit.environment import describe_device, resolve_device, resolve_dtype, seed_everything, versions
from auditkit.html import render as render_html
from auditkit.io import atomic_path, to_jsonable, write_json, write_text
from auditkit.kernel import unwrap
from auditkit.plots import ssim_vs_margin
from auditkit.progress import Progress
from auditkit.scenario import DataConfig, DefenseConfig, Scenario, TrainingConfig
from auditkit.victims import TrainingLog, build_mlp, train_gd

CACHE_VERSION = 1


def load_data(config: DataConfig, seed: int) -> AuditData:
    if config.dataset == "toy_colors":
        return toy_colors(config.n_per_class, config.test_per_class, seed, config.image_size, config.noise)
    images, digits = load_mnist_images(config.path)
    negative, positive = PARITY if config.task == "parity" else (config.negative, config.positive)
    return binary_task(
        images,
        digits,
        tuple(negative),
        tuple(positive),
        config.n_per_class,
        config.test_per_class,
        seed,
        (28, 28),
        "mnist",
    )


def cache_dir() -> Path:
    return Path(os.environ.get("AUDITKIT_CACHE", Path.home() / ".cache" / "auditkit")) / "victims"


@dataclass
class Victim:
    model: torch.nn.Module
    log: TrainingLog
    cached: bool


def victim_key(scenario: Scenario, defense: DefenseConfig, device: torch.device) -> str:
    """Hash of everything that determines the trained weights."""
    content = {
        "version": CACHE_VERSION,
        "seed": scenario.seed,
        "dtype": scenario.dtype,
        "device": device.type,
        "data": scenario.data.model_dump(),
        "victim": scenario.victim.model_dump(),
        "defense": defense.model_dump(exclude={"name", "description"}),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:20]


def plan_defenses(scenario: Scenario, n: int) -> dict[str, DPPlan]:
    """Resolve every DP defense's noise and budget before anything trains (impossible settings fail fast)."""
    plans = {}
    for index, defense in enumerate(scenario.defenses):
        if defense.kind == "dp_sgd":
            dp = defense.dp
            plans[defense.name] = plan_dp(
                n,
                batch_size=dp.batch_size,
                epochs=dp.epochs,
                max_grad_norm=dp.max_grad_norm,
                delta=dp.delta,
                target_epsilon=dp.target_epsilon,
                noise_multiplier=dp.noise_multiplier,
                accountant=dp.accountant,
                field=f"defenses.{index}.dp",
            )
    return plans


def obtain_victim(
    scenario: Scenario,
    defense: DefenseConfig,
    data: AuditData,
    device: torch.device,
    progress: Progress,
    plan: DPPlan | None = None,
) -> Victim:
    """Train the victim for one defense, or load it from the cache (weights_only=True)."""
    dtype = resolve_dtype(scenario.dtype)
    cfg = scenario.victim
    model = build_mlp(data.train_x.shape[1], cfg.hidden, cfg.bias, cfg.init_scale, scenario.seed, dtype)
    key = victim_key(scenario, defense, device)
    weights_path, log_path = cache_dir() / f"{key}.pt", cache_dir() / f"{key}.json"
    if weights_path.is_file() and log_path.is_file():
        model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        return Victim(model.to(device), TrainingLog(**json.loads(log_path.read_text())), cached=True)

    model = model.to(device)
    training = TrainingConfig(**{**cfg.training.model_dump(), **defense.training})
    x, y = (torch.as_tensor(a, dtype=dtype, device=device) for a in (data.train_x, data.train_y))
    test = tuple(torch.as_tensor(a, dtype=dtype, device=device) for a in (data.test_x, data.test_y))
    seed_everything(scenario.seed)
    if plan is None:
        compiled = training.compile is True or (training.compile == "auto" and device.type == "cuda")
        with progress.task(f"[{defense.name}] training", training.epochs) as update:
            log = train_gd(
                model,
                x,
                y,
                lr=training.lr,
                epochs=training.epochs,
                weight_decay=training.weight_decay,
                test=test,
                progress=update,
                compile=compiled,
            )
        log.extra.update({"lr": training.lr, "weight_decay": training.weight_decay, "compiled": compiled})
    else:
        with progress.task(f"[{defense.name}] DP-SGD training (epochs)", plan.epochs) as update:
            log = train_dp_sgd(
                model,
                x,
                y,
                plan,
                lr=defense.dp.lr,
                weight_decay=training.weight_decay,
                seed=scenario.seed,
                test=test,
                progress=update,
            )
    with atomic_path(weights_path) as temporary:
        torch.save({k: v.cpu() for k, v in unwrap(model).state_dict().items()}, temporary)
    write_json(log_path, log.__dict__)
    return Victim(unwrap(model), log, cached=False)


def run_scenario(
    scenario: Scenario, out: str | Path, *, resume: bool = False, progress: Progress | None = None
) -> dict:
    """Train (or load) every victim, audit each, and write the report into ``out``.

    With resume, a victim whose audit directory already holds a summary.json for the same resolved
    config is loaded instead of attacked again.
    """
    progress = progress or Progress()
    out = Path(out)
    started = time.perf_counter()
    device = resolve_device(scenario.device)
    config = to_jsonable(scenario.model_dump())  # as summary.json stores it, so --resume can compare
    seed_everything(scenario.seed)
    data = load_data(scenario.data, scenario.seed)
    plans = plan_defenses(scenario, len(data.train_x))
    # the no-model baseline of the SSIM criterion, needed only beside DP victims
    kappa_above_threshold = kappa_ssim(data.to_pixels(data.pool_x), scenario.report.ssim_threshold) if plans else None
    results: list[AuditResult] = []
    for defense in scenario.defenses:
        audit_dir = out / defense.name
        previous = audit_dir / "summary.json"
        if resume and previous.is_file() and json.loads(previous.read_text()).get("config") == config:
            progress.note(f"[{defense.name}] audit found in {audit_dir}: reused (--resume)")
            results.append(AuditResult.load(audit_dir))
            continue
        victim = obtain_victim(scenario, defense, data, device, progress, plans.get(defense.name))
        if victim.cached:
            progress.note(f"[{defense.name}] victim loaded from cache")
        auditor = Auditor(
            KKTAttack(KKTConfig.from_dict(scenario.attack.model_dump())),
            device=device,
            dtype=scenario.dtype,
            ssim_threshold=scenario.report.ssim_threshold,
            seed=scenario.seed,
        )
        with progress.task(f"[{defense.name}] attack", scenario.attack.steps) as update:
            result = auditor.audit(
                victim.model,
                data,
                name=defense.name,
                victim_info={"defense": defense.model_dump(), **victim.log.to_dict()},
                progress=update,
            )
        if defense.name in plans:
            result.info["bounds"] = reconstruction_bounds(result, data, kappa_above_threshold, victim.log)
        result.info.update(_run_facts(scenario, device, config))
        result.save(audit_dir)
        progress.note(_headline(result.info))
        results.append(result)

    summary = {
        "scenario": scenario.name,
        **_run_facts(scenario, device, config),
        "seconds": time.perf_counter() - started,
        "victims": [r.summary() for r in results],
    }
    if len(results) == 1:
        summary.update({k: v for k, v in results[0].summary().items() if k not in summary})
    table = comparison(results)
    summary["comparison"] = table.to_dict(orient="records")
    write_text(out / "comparison.csv", table.to_csv(index=False))
    ssim_vs_margin(results, out / "ssim_vs_margin.png")
    write_json(out / "summary.json", summary)
    render_html(out, summary)
    return summary


def reconstruction_bounds(result: AuditResult, data: AuditData, kappa_above_threshold: float, log: TrainingLog) -> dict:
    """The DP ceiling beside each success criterion the report counts, each with its own baseline."""
    info = result.info
    threshold = info["ssim_threshold"]
    tries = info["attack"]["candidates"]
    sigma, q, steps = log.extra["noise_multiplier"], log.extra["sample_rate"], log.extra["steps"]
    identified = bound_for(
        "identified",
        1.0 / (len(data.train_x) + len(data.pool_x)),
        tries,
        info["identified_fraction"],
        sigma,
        q,
        steps,
        "kappa = 1 / (members + non-members): picking the sample out of the identification pool by chance",
    )
    above = bound_for(
        f"ssim > {threshold}",
        kappa_above_threshold,
        tries,
        info["ssim_above_threshold"] / info["n"],
        sigma,
        q,
        steps,
        "kappa = max over held-out guesses of the fraction of held-out targets above the SSIM threshold: a "
        "lower estimate of the sup, so this bound is an estimate",
    )
    return {
        "mechanism": f"Poisson-subsampled Gaussian, sigma={sigma:.4g}, q={q:.4g}, T={steps} (PLD, dp-accounting)",
        "bounds_hold_for": "any attacker who sees every noisy gradient, so the KKT attack on the final weights",
        "identified": identified.to_dict(),
        "ssim": above.to_dict(),
    }


DTYPE_NOTES = {
    "float32": "the CPU default: 2.45x faster than float64; measured on mnist_quick it identified 1-3 fewer "
    "of 50 (27/42/38 vs 28/44/41, 3 seeds); use float64 for the most thorough audit",
    "float64": "the thorough setting: identified 1-3 more of 50 than float32 on mnist_quick, 2.45x slower on a CPU",
}


def _run_facts(scenario: Scenario, device: torch.device, config: dict) -> dict:
    return {
        "seed": scenario.seed,
        "device": describe_device(device),
        "dtype": scenario.dtype,
        "dtype_note": DTYPE_NOTES[scenario.dtype],
        "versions": versions(),
        "config": config,
    }


COMPARISON_COLUMNS = [
    "defense",
    "epsilon",
    "delta",
    "test_accuracy",
    "train_accuracy",
    "n",
    "identified",
    "identified_fraction",
    "bound_identified",
    "ssim_above_threshold",
    "baseline_ssim_above_threshold",
    "bound_ssim",
    "median_ssim",
    "victim_kkt_residual",
    "attack_relative_residual",
]


def comparison(results: list[AuditResult]) -> pd.DataFrame:
    """One row per victim: utility beside leakage."""
    rows = []
    for result in results:
        info = result.summary()
        victim = info.get("victim", {})
        bounds = info.get("bounds", {})
        rows.append(
            {
                **{key: info.get(key) for key in COMPARISON_COLUMNS},
                "defense": result.name,
                "epsilon": victim.get("epsilon"),
                "delta": victim.get("delta"),
                "test_accuracy": victim.get("test_accuracy"),
                "train_accuracy": victim.get("train_accuracy"),
                "bound_identified": bounds.get("identified", {}).get("bound"),
                "bound_ssim": bounds.get("ssim", {}).get("bound"),
            }
        )
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _headline(info: dict) -> str:
    return (
        f"[{info['name']}] identified {info['identified']}/{info['n']} "
        f"({100 * info['identified_fraction']:.0f}%); SSIM > {info['ssim_threshold']}: "
        f"{info['ssim_above_threshold']} (mean-image baseline {info['baseline_ssim_above_threshold']}); "
        f"test accuracy {info['victim'].get('test_accuracy', float('nan')):.3f}"
    )
