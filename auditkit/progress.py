"""Progress lines on stderr for long steps (training epochs, attack steps), throttled to every few seconds."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Progress:
    """Prints ``label  step k/N  loss L  t s`` at most every ``interval`` seconds, and at the end."""

    def __init__(self, enabled: bool = True, interval: float = 5.0, stream=None) -> None:
        self.enabled, self.interval = enabled, interval
        self.stream = stream or sys.stderr

    def note(self, message: str) -> None:
        if self.enabled:
            print(message, file=self.stream, flush=True)

    @contextmanager
    def task(self, label: str, total: int) -> Iterator[Callable[[int, float], None]]:
        start = last = time.perf_counter()
        latest: list = [0, float("nan")]

        def update(step: int, loss: float) -> None:
            nonlocal last
            latest[:] = [step, loss]
            now = time.perf_counter()
            if self.enabled and now - last >= self.interval:
                last = now
                self._line(label, step, total, loss, now - start)

        yield update
        if self.enabled:
            self._line(label, latest[0], total, latest[1], time.perf_counter() - start)

    def _line(self, label: str, step: int, total: int, loss: float, elapsed: float) -> None:
        print(f"{label}  step {step}/{total}  loss {loss:.4g}  {elapsed:.0f}s", file=self.stream, flush=True)
