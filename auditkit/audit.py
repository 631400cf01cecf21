"""Audit a model the user trained, with no scenario: their state_dict and data file in, a report out."""

from __future__ import annotations

import re
import time
from pathlib import Path

from auditkit.auditor import Auditor
from auditkit.convergence import short_attack_warning
from auditkit.environment import DEFAULT_DTYPE, resolve_device, seed_everything
from auditkit.errors import ConfigError
from auditkit.io import inside
from auditkit.kkt import KKTAttack, KKTConfig
from auditkit.outdir import exclusive_output
from auditkit.progress import Progress
from auditkit.report import write_report
from auditkit.results import RunFacts, RunResult
from auditkit.scenario import attack_preset
from auditkit.user_model import load_audit_data, load_state_dict, mlp_from_state_dict


def audit_saved_model(
    model_path: Path,
    data_path: Path,
    out: Path,
    attack: str | Path | None = None,
    device: str = "auto",
    seed: int = 0,
    progress: Progress | None = None,
    overrides: dict | None = None,
) -> RunResult:
    """Load (safely) and check the model and data before anything runs, then attack, save and report.

    overrides: settings over the attack preset's (``{"attack": {"steps": 300}}``, what ``--set`` gives).
    """
    progress = progress or Progress()
    overrides = overrides or {}
    unknown = sorted(set(overrides) - {"attack"})
    if unknown or not isinstance(overrides.get("attack", {}), dict):
        key = unknown[0] if unknown else "attack"
        raise ConfigError(f"--set {key}: auditkit audit takes attack settings only (attack.KEY=VALUE)")
    model = mlp_from_state_dict(load_state_dict(model_path), str(model_path))
    data = load_audit_data(data_path, outputs=model[-1].out_features, inputs=model[0].in_features)
    preset = attack_preset(attack) if attack else {}
    config = KKTConfig.validated({**preset, **overrides.get("attack", {})})
    resolved = resolve_device(device)
    name = victim_name(model_path)
    with exclusive_output(out) as out:
        if warning := short_attack_warning(config.steps):
            progress.note(warning)
        started = time.perf_counter()
        seed_everything(seed)
        auditor = Auditor(KKTAttack(config), device=resolved, dtype=DEFAULT_DTYPE, seed=seed)
        with progress.task(f"[{name}] attack", config.steps) as update:
            result = auditor.audit(model, data, name=name, progress=update)
        result.save(inside(out, name))
        settings = {"model": str(model_path), "data": str(data_path), "attack": config.model_dump()}
        seconds = time.perf_counter() - started
        facts = RunFacts.collect(f"audit of {model_path.name}", seed, resolved, DEFAULT_DTYPE, settings, seconds)
        run = RunResult(facts, [result])
        run.save(out, victims=False)
        write_report(run, out)
    return run


def victim_name(model_path: Path) -> str:
    """The audit's folder and name in the report: the model file's stem, made a safe folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model_path.stem).strip(".") or "model"
