"""Progress where no terminal shows bars (a log, CI, ``nohup``): a line at a steady interval while a long step runs,
one when it ends, nothing with ``--quiet``."""

from __future__ import annotations

import io
import re

import auditkit.progress
from auditkit.progress import LOG_SECONDS, Progress


def _log_of(monkeypatch, seconds_per_step: float, total: int = 1000, enabled: bool = True) -> list[str]:
    """The lines a task of ``total`` steps writes to a log when each step takes ``seconds_per_step``."""
    clock = [0.0]
    monkeypatch.setattr(auditkit.progress.time, "perf_counter", lambda: clock[0])
    stream = io.StringIO()
    with Progress(enabled=enabled, bars=False, stream=stream).task("[none] attack", total) as update:
        for step in range(1, total + 1):
            clock[0] += seconds_per_step
            update(step, 1.0 / step)
    return stream.getvalue().splitlines()


def test_a_long_step_writes_a_line_every_30_seconds_with_what_is_left(monkeypatch):
    lines = _log_of(monkeypatch, seconds_per_step=0.6)  # 600 s in all: 10 % of it is 60 s, later than 30 s
    steady, last = lines[:-1], lines[-1]
    assert len(steady) == 9 and last.startswith("[none] attack  1000/1000 steps")
    steps = [int(re.search(r"  (\d+)/1000", line).group(1)) for line in steady]
    assert steps == list(range(100, 1000, 100))  # every 10 %, the later of the two here
    assert steady[0].endswith("60s, about 540s left") and "loss 0.01" in steady[0]


def test_a_fast_step_writes_a_line_at_least_every_30_seconds(monkeypatch):
    lines = _log_of(monkeypatch, seconds_per_step=0.7)  # 700 s: 10 % is 70 s, so every 70 s (the later)
    assert len(lines) == 10
    lines = _log_of(monkeypatch, seconds_per_step=0.07)  # 70 s: 10 % is 7 s, so every 30 s, never more apart
    times = [float(re.search(r"  (\d+)s, about", line).group(1)) for line in lines[:-1]]
    assert len(times) == 2 and all(b - a <= LOG_SECONDS for a, b in zip([0.0, *times], times))


def test_quiet_writes_nothing(monkeypatch):
    assert _log_of(monkeypatch, seconds_per_step=1.0, enabled=False) == []
