"""The victim a benchmark studies: a scenario's data and its first victim, from the cache or trained."""

from __future__ import annotations

import torch

from auditkit import load_scenario
from auditkit.data import AuditData, load_data
from auditkit.environment import resolve_device
from auditkit.jobs import obtain_victim, plan_victims
from auditkit.progress import Progress
from auditkit.results import VictimFacts
from auditkit.scenario import Scenario


def scenario_victim(name: str, overrides: dict) -> tuple[Scenario, AuditData, torch.nn.Module, VictimFacts]:
    """(scenario, data, model, victim facts) of the first victim of scenario ``name`` with ``overrides``
    (its first defense; a DP defense's noise planned as a run would)."""
    scenario = load_scenario(name, overrides)
    job = plan_victims(scenario)[0]
    data = load_data(scenario.data, scenario.seed)
    device = resolve_device(scenario.device)
    model, victim = obtain_victim(scenario, job.defense, data, device, Progress(enabled=False), job.plan)
    return scenario, data, model, victim
