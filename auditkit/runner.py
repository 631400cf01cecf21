"""Run a scenario end to end: data, one victim per defense (cached), the audit, the saved results and report."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from auditkit.auditor import Auditor
from auditkit.cache import VictimCache, victim_key
from auditkit.data import AuditData, load_data
from auditkit.defense import TrainingDiverged, plan_defenses, train_victim, untrained_victim
from auditkit.dp import DPPlan
from auditkit.environment import resolve_device, seed_everything
from auditkit.io import inside, to_jsonable
from auditkit.kkt import KKTAttack
from auditkit.outdir import exclusive_output
from auditkit.progress import Progress
from auditkit.report import headline, write_report
from auditkit.results import RESULT_FILE, AuditResult, RunFacts, RunResult, VictimFacts, VictimFailure
from auditkit.scenario import DefenseConfig, Scenario


def run_scenario(
    scenario: Scenario, out: str | Path, *, resume: bool = False, progress: Progress | None = None
) -> RunResult:
    """Train (or load) every victim, audit each, and write results and report into ``out``.

    With resume, a victim whose folder holds a finished audit of the same settings is loaded, not attacked.
    """
    with exclusive_output(out) as out:
        return _run(scenario, out, resume, progress or Progress())


def _run(scenario: Scenario, out: Path, resume: bool, progress: Progress) -> RunResult:
    started = time.perf_counter()
    device = resolve_device(scenario.device)
    seed_everything(scenario.seed)
    data = load_data(scenario.data, scenario.seed)
    plans = plan_defenses(scenario, len(data.train_x))
    cache = VictimCache()  # checked writable here, before anything trains
    threshold = scenario.report.ssim_threshold
    auditor = Auditor(
        KKTAttack(scenario.attack), device=device, dtype=scenario.dtype, ssim_threshold=threshold, seed=scenario.seed
    )
    results: list[AuditResult] = []
    failures: list[VictimFailure] = []
    for defense in scenario.defenses:
        fingerprint = audit_fingerprint(scenario, defense)
        audit_dir = inside(out, defense.name)
        if resume and _finished(audit_dir, fingerprint):
            progress.note(f"[{defense.name}] audit found in {audit_dir}: reused (--resume)")
            results.append(AuditResult.load(audit_dir))
            continue
        try:
            model, victim = obtain_victim(scenario, defense, data, device, progress, plans.get(defense.name), cache)
        except TrainingDiverged as error:  # one bad victim does not sink the comparison
            progress.note(str(error))
            failures.append(VictimFailure(defense.name, str(error)))
            continue
        with progress.task(f"[{defense.name}] attack", auditor.attack.steps) as update:
            result = auditor.audit(model, data, name=defense.name, victim=victim, progress=update)
        result.fingerprint = fingerprint
        result.save(audit_dir)
        progress.note(headline(result))
        results.append(result)

    seconds = time.perf_counter() - started
    facts = RunFacts.collect(scenario.name, scenario.seed, device, scenario.dtype, scenario.model_dump(), seconds)
    run = RunResult(facts, results, failures)
    run.save(out, victims=False)
    write_report(run, out, scenario.report.grid_size)
    return run


def obtain_victim(
    scenario: Scenario,
    defense: DefenseConfig,
    data: AuditData,
    device: torch.device,
    progress: Progress,
    plan: DPPlan | None = None,
    cache: VictimCache | None = None,
) -> tuple[torch.nn.Module, VictimFacts]:
    """The victim for one defense: from the cache when there, else trained and cached."""
    cache, key = cache or VictimCache(), victim_key(scenario, defense, device)
    model = untrained_victim(scenario, data)
    log = cache.load(key, model)
    for problem in cache.rejected:
        progress.note(f"[{defense.name}] {problem}")
    cache.rejected.clear()
    if log is not None:
        progress.note(f"[{defense.name}] victim loaded from cache")
        return model.to(device), VictimFacts(defense.model_dump(), log, cached=True)
    model, log = train_victim(scenario, defense, data, model, device, progress, plan)
    cache.store(key, model, log)
    return model, VictimFacts(defense.model_dump(), log)


def audit_fingerprint(scenario: Scenario, defense: DefenseConfig) -> str:
    """Hash of every setting that determines one victim's audit (its name, description and siblings aside)."""
    config = scenario.model_dump(exclude={"name", "description", "defenses"})
    content = to_jsonable({"scenario": config, "defense": defense.model_dump(exclude={"description"})})
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:20]


def _finished(audit_dir: Path, fingerprint: str) -> bool:
    path = audit_dir / RESULT_FILE
    return path.is_file() and json.loads(path.read_text()).get("fingerprint") == fingerprint
