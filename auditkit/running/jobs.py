"""One victim's part in a run: planned from a scenario's grid and defenses, trained or loaded from the
cache, attacked; what either executor runs for each victim."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from auditkit.attacks.base import AttackConfig
from auditkit.attacks.registry import build_attack
from auditkit.auditing.auditor import Auditor
from auditkit.budget import check_memory
from auditkit.config.schema import DefenseConfig, Scenario
from auditkit.data.audit_data import AuditData
from auditkit.data.datasets import load_data
from auditkit.environment import resolve_dtype
from auditkit.errors import ScenarioError
from auditkit.progress import Progress
from auditkit.results.audit import AuditResult
from auditkit.results.facts import PrivacyFacts, TrainingLog, VictimFacts
from auditkit.results.run import VictimFailure
from auditkit.running.cache import VictimCache, victim_key
from auditkit.running.victims import (
    TrainingDiverged,
    plan_defenses,
    train_victim,
    training_bytes,
    untrained_victim,
    victim_size,
)
from auditkit.scoring.bounds import check_ceiling_memory
from auditkit.storage.files import cache_folder
from auditkit.storage.fingerprint import fingerprint
from auditkit.victims.training import accuracy, classification_loss


@dataclass(frozen=True)
class VictimJob:
    """One victim to train (or load) and attack: a grid point's scenario, one of its defenses, one of its
    attacks, and what names it."""

    name: str  # the result's name and folder
    scenario: Scenario
    defense: DefenseConfig
    plan: PrivacyFacts | None  # the DP-SGD noise and budget, resolved before anything trains
    fingerprint: str  # of the settings that determine its audit (--resume reuses only an equal one)
    attack: AttackConfig  # the scenario's attack, or one beside it
    victim: str  # the victim's name (the result's, without the attack beside the scenario's)


def plan_victims(scenario: Scenario, data_for: Callable[[Scenario], AuditData] | None = None) -> list[VictimJob]:
    """One job per grid point, defense and attack, in that order (a victim's attacks one after the other: the
    first trains it, the others load it from the cache); every DP defense's noise resolved and every victim's
    and attack's memory checked up front (impossible settings fail before anything trains). ``data_for``: a
    grid point's data set (loaded)."""
    data_for = data_for or last_data_set()
    jobs = []
    for point in scenario.grid_points():
        data = data_for(point.scenario)
        n, (widths, parameters) = len(data.train_x), victim_size(point.scenario, data)
        plans = plan_defenses(point.scenario, n)
        itemsize = resolve_dtype(point.scenario.dtype).itemsize
        for defense in point.scenario.defenses:
            victim = training_bytes(point.scenario, defense, n, widths, parameters)
            if (plan := plans.get(defense.name)) is not None:
                check_ceiling_memory(plan.noise_multiplier, plan.sample_rate, plan.steps)
            victim_name = point.victim_name(defense)
            for suffix, config in point.scenario.attacks():
                name = victim_name + suffix
                parts = build_attack(config).memory_parts(n, widths, itemsize, len(data.pool_x))
                check_memory({"victim": victim, **parts}, f"victim {name}")
                fingerprint = audit_fingerprint(point.scenario, defense, config)
                jobs.append(VictimJob(name, point.scenario, defense, plan, fingerprint, config, victim_name))
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        taken = next(name for name in names if names.count(name) > 1)
        raise ScenarioError(f"defenses: the result name {taken!r} is taken twice (a defense named like VICTIM.ATTACK)")
    return jobs


def audit_victim(
    job: VictimJob, progress: Progress, device: torch.device, data: AuditData | None = None
) -> AuditResult | VictimFailure:
    """Train (or load) one job's victim and attack it (``data``: its data set, loaded when None); a
    victim whose training diverges is a failure, not an error (one bad victim does not sink the comparison)."""
    scenario, defense = job.scenario, job.defense
    data = data if data is not None else load_data(scenario.data, scenario.seed)
    try:
        model, victim = obtain_victim(scenario, defense, data, device, progress, job.plan)
    except TrainingDiverged as error:
        progress.note(str(error))
        return VictimFailure(job.victim, str(error))
    attack = build_attack(job.attack)
    threshold = scenario.report.ssim_threshold
    auditor = Auditor(attack, device=device, dtype=scenario.dtype, ssim_threshold=threshold, seed=scenario.seed)
    owner = attack.reads_initial and owner_audits(scenario)
    init = untrained_victim(scenario, data) if owner else None  # regenerated from the seed: the owner's knowledge
    with progress.task(f"[{job.name}] attack", attack.steps) as update:
        checkpoint = attack_checkpoints(job, device)
        result = auditor.audit(
            model, data, name=job.name, victim=victim, init=init, progress=update, checkpoint=checkpoint
        )
    result.fingerprint = job.fingerprint
    return result


def owner_audits(scenario: Scenario) -> bool:
    """Whether the scenario's audit is the owner's: one of its attacks needs the initial weights, so every attack
    that reads them is given them."""
    return any(build_attack(config).needs_initial for _, config in scenario.attacks())


def attack_checkpoints(job: VictimJob, device: torch.device) -> Path:
    """Where ``job``'s attack keeps its state as it runs (beside the victim cache, keyed by the audit's
    fingerprint and the device type): an interrupted run continues from it; the runner removes it once the
    audit is saved."""
    return cache_folder("attacks") / f"{job.fingerprint}-{torch.device(device).type}"


def last_data_set() -> Callable[[Scenario], AuditData]:
    """A loader that keeps the last data set it loaded: jobs come grid point by grid point, so the
    defenses of a point share one load and a long grid holds one data set at a time."""
    kept: dict[tuple[str, int], AuditData] = {}

    def data_for(scenario: Scenario) -> AuditData:
        key = (scenario.data.model_dump_json(), scenario.seed)
        if key not in kept:
            kept.clear()
            kept[key] = load_data(scenario.data, scenario.seed)
        return kept[key]

    return data_for


def obtain_victim(
    scenario: Scenario,
    defense: DefenseConfig,
    data: AuditData,
    device: torch.device,
    progress: Progress,
    plan: PrivacyFacts | None = None,
    cache: VictimCache | None = None,
) -> tuple[torch.nn.Module, VictimFacts]:
    """The victim for one defense: from the cache when there, else trained and cached."""
    cache, key = cache or VictimCache(), victim_key(scenario, defense, device)
    model = untrained_victim(scenario, data)
    log = cache.load(key, model)
    if log is not None and (problem := _disagrees_with_its_log(model, data, log, scenario.dtype)):
        cache.rejected.append(f"cache entry {key}.pt {problem}; training the victim again")
        model, log = untrained_victim(scenario, data), None
    for problem in cache.rejected:
        progress.note(f"[{defense.name}] {problem}")
    cache.rejected.clear()
    if log is not None:
        progress.note(f"[{defense.name}] victim loaded from cache")
        return model.to(device), VictimFacts(defense.model_dump(), log, cached=True)
    model, log = train_victim(scenario, defense, data, model, device, progress, plan)
    cache.store(key, model, log)
    return model, VictimFacts(defense.model_dump(), log)


def audit_fingerprint(scenario: Scenario, defense: DefenseConfig, attack: AttackConfig) -> str:
    """Hash of every setting that determines one victim's audit by ``attack`` (its name, description, siblings
    and the other attacks aside; the scenario's own attack hashes as before there were others)."""
    config = scenario.model_dump(exclude={"name", "description", "defenses", "grid", "beside"})
    config["attack"] = attack.model_dump()
    built = build_attack(attack)
    if built.reads_initial and not built.needs_initial and owner_audits(scenario):
        config["initial"] = True  # given the initial weights because another attack of the audit needs them
    return fingerprint({"scenario": config, "defense": defense.model_dump(exclude={"description"})})


def _disagrees_with_its_log(model: torch.nn.Module, data: AuditData, log: TrainingLog, dtype: str) -> str:
    """Why cached weights are not the ones their log describes ('' when they are): weights swapped under a
    recomputed checksum still have to reproduce the logged training accuracy and loss."""
    x, y = (torch.as_tensor(a, dtype=resolve_dtype(dtype)) for a in (data.train_x, data.train_y))
    model_accuracy = accuracy(model, x, y)
    with torch.no_grad():
        loss = classification_loss(model(x), y).item()
    if model_accuracy != log.train_accuracy or not math.isclose(loss, log.final_loss, rel_tol=1e-3, abs_tol=1e-6):
        return (
            f"does not reproduce its own log (train accuracy {model_accuracy:.3f} and loss {loss:.4g} against the "
            f"logged {log.train_accuracy:.3f} and {log.final_loss:.4g})"
        )
    return ""
