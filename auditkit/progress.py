"""Progress of long steps (victim training, attack steps): tqdm bars with an ETA on a terminal; elsewhere (logs,
CI, ``nohup``) a line at a steady interval and one when the step ends; and notes (findings, cache hits) between."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm

LOG_SECONDS = 30.0  # without bars, a task's line this often (no gap longer)...
LOG_SHARE = 0.1  # ...and only once it has moved this share of its total since the last (whichever is later)


class Progress:
    """enabled False: silent. bars: True (always), False (never) or None (only when ``stream`` is a
    terminal); without bars each task prints a line every ``LOG_SECONDS`` or ``LOG_SHARE`` of its total, whichever
    is later (step, loss, elapsed, expected remaining), and one when it ends."""

    def __init__(self, enabled: bool = True, bars: bool | None = None, stream=None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.bars = enabled and (bars if bars is not None else isatty())

    def note(self, message: str) -> None:
        """Print one line (unless quiet), above any progress bar."""
        if self.enabled:
            tqdm.write(message, file=self.stream)

    @contextmanager
    def task(self, label: str, total: int, unit: str = "step") -> Iterator[Callable[[int, float], None]]:
        """A bar for ``total`` units; the yielded ``update(step, loss)`` moves it to ``step``."""
        start = time.perf_counter()
        bar = tqdm(total=total, desc=label, unit=unit, file=self.stream, disable=not self.bars, dynamic_ncols=True)
        latest = [0, float("nan")]
        logged = [0, start]  # the step and time of the last line written to a log
        called = [start]  # when update was last called: the next call comes about as much later
        logging = self.enabled and not self.bars

        def update(step: int, loss: float) -> None:
            bar.update(step - latest[0])
            latest[:] = [step, loss]
            bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
            now = time.perf_counter()
            due = now - logged[1] + (now - called[0]) >= LOG_SECONDS  # waiting for the next call would pass it
            called[0] = now
            if logging and due and step - logged[0] >= LOG_SHARE * total and step < total:
                elapsed = now - start
                left = elapsed * (total - step) / step if step else float("nan")
                line = f"{label}  {step}/{total} {unit}s  loss {loss:.4g}  {elapsed:.0f}s, about {left:.0f}s left"
                print(line, file=self.stream, flush=True)
                logged[:] = [step, now]

        try:
            yield update
        finally:
            bar.close()
        if self.enabled and not self.bars:
            step, loss = latest
            elapsed = time.perf_counter() - start
            print(f"{label}  {step}/{total} {unit}s  loss {loss:.4g}  {elapsed:.0f}s", file=self.stream, flush=True)
