"""Where a scenario's victims are trained and audited: one after another in this process, or as Ray tasks.

Both executors take the same jobs and the same ``work`` (train or load one victim, attack it) and yield
each job with its outcome as it finishes; the runner saves them and writes one report. Ray is optional
(``pip install 'auditkit[ray]'``): a local instance is started for the run, or ``address`` joins an
existing cluster. Each task gets ``threads`` CPUs (torch uses that many) and one GPU when the run's
device is CUDA.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, Literal, get_args

import torch

from auditkit.errors import AuditkitError
from auditkit.progress import Progress
from auditkit.running.jobs import VictimJob

Executor = Literal["local", "ray"]
EXECUTORS: tuple[str, ...] = get_args(Executor)
FORWARDED_ENVIRONMENT = ("AUDITKIT_CACHE", "AUDITKIT_DATA")  # where a task finds the victim cache and data files


class ExecutorError(AuditkitError):
    """The chosen executor cannot run (Ray not installed, a cluster address that does not answer)."""


Work = Callable[[VictimJob, Progress], Any]


def run_here(jobs: list[VictimJob], work: Work, progress: Progress) -> Iterator[tuple[VictimJob, Any]]:
    """Each job in turn, in this process, with progress output."""
    for job in jobs:
        yield job, work(job, progress)


def run_on_ray(
    jobs: list[VictimJob], work: Work, device: torch.device, threads: int, address: str | None
) -> Iterator[tuple[VictimJob, Any]]:
    """Every job as a Ray task (``threads`` CPUs each), yielded as they finish; a user error raised in a
    task is raised here as itself, an internal one keeps Ray's traceback."""
    try:
        import ray
    except ImportError:
        raise ExecutorError("--executor ray needs Ray: pip install 'auditkit[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as error:
            reason = " ".join(str(error).split())[:200]
            raise ExecutorError(f"--address {address}: no Ray cluster there ({reason})") from None
    environment = {key: os.environ[key] for key in FORWARDED_ENVIRONMENT if key in os.environ}
    task = ray.remote(_ray_task).options(num_cpus=threads, num_gpus=1 if device.type == "cuda" else 0)
    try:
        pending = {task.remote(work, job, threads, environment): job for job in jobs}
        while pending:
            (done,), _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done)
            try:
                yield job, ray.get(done)
            except ray.exceptions.RayTaskError as error:
                if isinstance(error.cause, AuditkitError):
                    raise error.cause from None
                raise
    finally:
        if started_here:
            ray.shutdown()


def _ray_task(work: Work, job: VictimJob, threads: int, environment: dict[str, str]) -> Any:
    """One job inside a Ray worker: the driver's cache and data folders, ``threads`` torch threads, no bars."""
    os.environ.update(environment)
    torch.set_num_threads(threads)
    return work(job, Progress(enabled=False))
