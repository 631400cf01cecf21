"""The victim a benchmark studies: a scenario's data and its first victim, from the cache or trained."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from auditkit import load_scenario
from auditkit.config.schema import Scenario
from auditkit.data.audit_data import AuditData
from auditkit.data.datasets import load_data
from auditkit.environment import resolve_device
from auditkit.progress import Progress
from auditkit.results.facts import VictimFacts
from auditkit.running.jobs import obtain_victim, plan_victims


def scenario_victim(name: str, overrides: dict) -> tuple[Scenario, AuditData, torch.nn.Module, VictimFacts]:
    """(scenario, data, model, victim facts) of the first victim of scenario ``name`` with ``overrides``
    (its first defense; a DP defense's noise planned as a run would)."""
    scenario = load_scenario(name, overrides)
    job = plan_victims(scenario)[0]
    data = load_data(scenario.data, scenario.seed)
    device = resolve_device(scenario.device)
    model, victim = obtain_victim(scenario, job.defense, data, device, Progress(enabled=False), job.plan)
    return scenario, data, model, victim


@contextmanager
def fresh_victim_cache() -> Iterator[str]:
    """A victim cache of its own for the block (a temporary folder, gone after it): every victim is trained
    there, none is taken from an earlier run's cache, and timings include training."""
    before = os.environ.get("AUDITKIT_CACHE")
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["AUDITKIT_CACHE"] = scratch
        try:
            yield scratch
        finally:
            if before is None:
                del os.environ["AUDITKIT_CACHE"]
            else:
                os.environ["AUDITKIT_CACHE"] = before
