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
from auditkit.auditor import AuditResult, Auditor
from auditkit.data import PARITY, AuditData, binary_task, load_mnist_images, toy_colors
from auditkit.environment import describe_device, resolve_device, resolve_dtype, seed_everything, versions
from auditkit.io import atomic_path, write_json, write_text
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
        images, digits, tuple(negative), tuple(positive), config.n_per_class, config.test_per_class,
        seed, (28, 28), "mnist",
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


def obtain_victim(
    scenario: Scenario, defense: DefenseConfig, data: AuditData, device: torch.device, progress: Progress
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
    with progress.task(f"[{defense.name}] training", training.epochs) as update:
        log = train_gd(
            model, x, y, lr=training.lr, epochs=training.epochs, weight_decay=training.weight_decay,
            test=test, progress=update,
        )
    log.extra.update({"lr": training.lr, "weight_decay": training.weight_decay})
    with atomic_path(weights_path) as temporary:
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, temporary)
    write_json(log_path, log.__dict__)
    return Victim(model, log, cached=False)


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
    config = scenario.model_dump()
    seed_everything(scenario.seed)
    data = load_data(scenario.data, scenario.seed)
    results: list[AuditResult] = []
    for defense in scenario.defenses:
        audit_dir = out / defense.name
        previous = audit_dir / "summary.json"
        if resume and previous.is_file() and json.loads(previous.read_text()).get("config") == config:
            progress.note(f"[{defense.name}] audit found in {audit_dir}: reused (--resume)")
            results.append(AuditResult.load(audit_dir))
            continue
        victim = obtain_victim(scenario, defense, data, device, progress)
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
                victim.model, data, name=defense.name,
                victim_info={"defense": defense.model_dump(), **victim.log.to_dict()}, progress=update,
            )
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
    write_text(out / "comparison.csv", comparison(results).to_csv(index=False))
    write_json(out / "summary.json", summary)
    return summary


def _run_facts(scenario: Scenario, device: torch.device, config: dict) -> dict:
    return {
        "seed": scenario.seed,
        "device": describe_device(device),
        "dtype": scenario.dtype,
        "versions": versions(),
        "config": config,
    }


COMPARISON_COLUMNS = [
    "defense", "test_accuracy", "train_accuracy", "n", "identified", "identified_fraction",
    "ssim_above_threshold", "baseline_ssim_above_threshold", "median_ssim", "victim_kkt_residual",
    "attack_relative_residual",
]


def comparison(results: list[AuditResult]) -> pd.DataFrame:
    """One row per victim: utility beside leakage."""
    rows = []
    for result in results:
        info = result.summary()
        victim = info.get("victim", {})
        rows.append(
            {
                "defense": result.name,
                "test_accuracy": victim.get("test_accuracy"),
                "train_accuracy": victim.get("train_accuracy"),
                **{key: info.get(key) for key in COMPARISON_COLUMNS[3:]},
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
