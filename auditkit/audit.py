"""Audit a model the user trained, with no scenario: their state_dict and data file in, a report out."""

from __future__ import annotations

import time
from pathlib import Path

from auditkit.auditor import Auditor
from auditkit.environment import DEFAULT_DTYPE, resolve_device, seed_everything
from auditkit.io import inside
from auditkit.kkt import KKTAttack, KKTConfig
from auditkit.outdir import exclusive_output
from auditkit.progress import Progress
from auditkit.report import headline, write_report
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
) -> RunResult:
    """Load (safely) and check the model and data before anything runs, then attack, save and report."""
    progress = progress or Progress()
    model = mlp_from_state_dict(load_state_dict(model_path), str(model_path))
    data = load_audit_data(data_path, outputs=model[-1].out_features)
    config = KKTConfig.validated(attack_preset(attack)) if attack else KKTConfig()
    resolved = resolve_device(device)
    with exclusive_output(out) as out:
        started = time.perf_counter()
        seed_everything(seed)
        auditor = Auditor(KKTAttack(config), device=resolved, dtype=DEFAULT_DTYPE, seed=seed)
        with progress.task("[model] attack", config.steps) as update:
            result = auditor.audit(model, data, name="model", progress=update)
        result.save(inside(out, "model"))
        progress.note(headline(result))
        settings = {"model": str(model_path), "data": str(data_path), "attack": config.model_dump()}
        seconds = time.perf_counter() - started
        facts = RunFacts.collect(f"audit of {model_path.name}", seed, resolved, DEFAULT_DTYPE, settings, seconds)
        run = RunResult(facts, [result])
        run.save(out, victims=False)
        write_report(run, out)
    return run
