"""Run a scenario end to end: data, one victim per defense and grid point (cached), the audits, results, report."""

from __future__ import annotations

import dataclasses
import functools
import shutil
import time
from pathlib import Path

from auditkit.attacks.registry import build_attack
from auditkit.config.schema import Scenario
from auditkit.environment import resolve_device
from auditkit.progress import Progress
from auditkit.report import REPORT_FILES, write_report
from auditkit.results.audit import RESULT_FILE, AuditResult
from auditkit.results.facts import RunFacts
from auditkit.results.run import RUN_FILE, RunResult, VictimFailure
from auditkit.results.storage import ResultError, read_json
from auditkit.running.cache import VictimCache
from auditkit.running.executor import EXECUTORS, Executor, ExecutorError, run_here, run_on_ray
from auditkit.running.jobs import attack_checkpoints, audit_victim, last_data_set, plan_victims
from auditkit.storage.files import inside
from auditkit.storage.outdir import check_layout, exclusive_output


def run_scenario(
    scenario: Scenario,
    out: str | Path,
    *,
    resume: bool = False,
    progress: Progress | None = None,
    executor: Executor = "local",
    threads: int | None = None,
    address: str | None = None,
) -> RunResult:
    """Train (or load) every victim (one per defense and grid point), audit each, and write results and
    report into ``out``.

    Args:
        scenario: the validated scenario (:func:`auditkit.load_scenario`).
        out: the run's folder (one run at a time per folder).
        resume: load a victim whose folder holds a finished audit of the same settings instead of attacking it.
        progress: where progress goes (bars on a terminal, lines in a log; ``Progress(enabled=False)``: silent).
        executor: "local", or "ray" to run the victims as Ray tasks (see :mod:`auditkit.running.executor`).
        threads: torch's CPU threads (per Ray task).
        address: a Ray cluster's address (with ``executor="ray"``).

    Returns:
        The run: every victim's result, the failures, and the run's facts.

    Example:
        >>> run = run_scenario(load_scenario("toy_colors"), "runs/toy")  # doctest: +SKIP
        >>> run.summary()[0].verdict  # doctest: +SKIP
    """
    if executor not in EXECUTORS:
        raise ExecutorError(f"executor: '{executor}' is not one of {', '.join(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise ExecutorError(f"--address {address}: a Ray cluster's address, read only with --executor ray")
    with exclusive_output(out) as out:
        return _run(scenario, out, resume, progress or Progress(), executor, threads, address)


def _run(
    scenario: Scenario,
    out: Path,
    resume: bool,
    progress: Progress,
    executor: Executor,
    threads: int | None,
    address: str | None,
) -> RunResult:
    started = time.perf_counter()
    device = resolve_device(scenario.device)
    data_for = last_data_set()
    jobs = plan_victims(scenario, data_for)
    check_layout(out, [job.name for job in jobs], (RUN_FILE, *REPORT_FILES))
    VictimCache()  # checked writable here, before anything trains
    if warning := build_attack(scenario.attack).warning():
        progress.note(warning)
    outcomes: dict[str, AuditResult | VictimFailure] = {}
    pending = []
    for job in jobs:
        audit_dir = inside(out, job.name)
        saved = _finished(audit_dir, job.name, job.fingerprint, progress) if resume else None
        if saved is not None:
            progress.note(f"[{job.name}] audit found in {audit_dir}: reused (--resume)")
            outcomes[job.name] = saved
        else:
            pending.append(job)
    if executor == "ray":  # each task loads its data set itself
        finished = run_on_ray(pending, functools.partial(audit_victim, device=device), device, threads or 1, address)
    else:
        finished = run_here(pending, lambda job, bar: audit_victim(job, bar, device, data_for(job.scenario)), progress)
    for job, outcome in finished:
        if isinstance(outcome, AuditResult):
            outcome.save(inside(out, job.name))
            shutil.rmtree(attack_checkpoints(job, device), ignore_errors=True)  # the audit is saved: not needed
            summary = outcome.summary()  # the finding itself is printed once, by the caller, at the end
            counts = f"{summary.identified}/{summary.n} identified"
            if summary.auc == summary.auc:  # an attack with a membership distance: what it confirmed too
                counts = f"{summary.confirmed}/{summary.n} confirmed, {summary.rebuilt} rebuilt, {counts}"
            progress.note(f"[{job.name}] audited: {counts}, {summary.verdict}")
        outcomes[job.name] = outcome
    ordered = [outcomes[job.name] for job in jobs]
    seconds = time.perf_counter() - started
    config = scenario.model_dump()
    facts = RunFacts.collect(scenario.name, scenario.seed, device, scenario.dtype, config, seconds, executor)
    facts = dataclasses.replace(facts, reused=len(jobs) - len(pending))
    if executor == "ray":
        facts = dataclasses.replace(facts, threads=threads or 1)  # each task's, not this driver's
    run = RunResult(
        facts,
        [o for o in ordered if isinstance(o, AuditResult)],
        list({o.name: o for o in ordered if isinstance(o, VictimFailure)}.values()),  # a victim's, once
    )
    run.save(out, victims=False)
    write_report(run, out, scenario.report.grid_size)
    return run


def _finished(audit_dir: Path, name: str, fingerprint: str, progress: Progress) -> AuditResult | None:
    """This victim's finished audit of the same settings in ``audit_dir``, or None: absent, of other settings,
    or damaged (any of its files; the note names it), and then the victim is audited again and its files
    replaced."""
    path = audit_dir / RESULT_FILE
    if not path.is_file():
        return None
    try:
        saved = read_json(path)
        if saved.get("name") != name or saved.get("fingerprint") != fingerprint:
            return None
        return AuditResult.load(audit_dir)
    except ResultError as error:
        progress.note(f"[{name}] saved audit not reusable ({error}): audited again")
        return None
