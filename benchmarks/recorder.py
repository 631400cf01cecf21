"""The training recorder's cost: training time and disk with and without it, at several snapshot intervals.

    python benchmarks/recorder.py --rounds 3

The recipes' Adam victim (50 MNIST parity digits, 784-500-500-1 bias-free, batch 10, 300 epochs: 1,500
optimiser steps, a plain PyTorch loop), trained without a recorder (the baseline) and with one taking a
snapshot every 10, 50, 250 and 500 steps (the default), the runs interleaved round by round (the machine's
drift falls on every setting alike); the median of the rounds, and the seconds spent inside the recorder itself
(timed around its start, its step hook and its close: what it adds, free of the drift between runs). Writes
benchmarks/results/recorder.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import record
import torch
import torch.nn.functional as F

from auditkit.data.mnist import load_mnist_images
from auditkit.data.tasks import PARITY, binary_task
from auditkit.recording import TrainingRecorder
from auditkit.victims.models import build_mlp

INTERVALS = (None, 10, 50, 250, 500)  # None: no recorder; 500: the default
COLUMNS = ["snapshot_every", "steps", "seconds_median", "seconds_rounds", "recorder_seconds", "recorder_share",
           "wall_overhead", "snapshots", "disk_mb"]  # fmt: skip


class Timed:
    """The seconds spent inside the recorder: its start, every optimiser-step hook, its close."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, method):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed


def train(x, y01, every: int | None, folder: Path) -> tuple[float, int, float, float]:
    """Seconds of the recipe's training (with a recorder every ``every`` steps), of them inside the recorder,
    snapshots and MB on disk."""
    timer = Timed()
    original = {name: getattr(TrainingRecorder, name) for name in ("__init__", "_after_step", "close")}
    for name, method in original.items():
        setattr(TrainingRecorder, name, timer(method))
    model = build_mlp(784, [500, 500], "none", seed=0, dtype=torch.float32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    recorder = None
    if every is not None:
        with contextlib.redirect_stderr(io.StringIO()):  # its one line on disk use
            recorder = TrainingRecorder(model, optimizer, folder, every=every, batch_size=10)
    for _ in range(300):
        for index in torch.randperm(len(x), generator=generator).split(10):
            optimizer.zero_grad()
            F.binary_cross_entropy_with_logits(model(x[index]).squeeze(-1), y01[index]).backward()
            optimizer.step()
    snapshots = len(recorder.close().manifest.snapshots) if recorder is not None else 0
    seconds = time.perf_counter() - started
    for name, method in original.items():
        setattr(TrainingRecorder, name, method)
    disk = sum(path.stat().st_size for path in folder.glob("*")) / 2**20 if folder.exists() else 0.0
    return seconds, timer.seconds, snapshots, disk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    images, digits = load_mnist_images()
    data = binary_task(images, digits, *PARITY, 25, 250, 0, (28, 28), "mnist")
    x = torch.as_tensor(data.train_x, dtype=torch.float32)
    y01 = torch.as_tensor((data.train_y > 0).astype(np.float32))
    times: dict[int | None, list[float]] = {every: [] for every in INTERVALS}
    inside: dict[int | None, list[float]] = {every: [] for every in INTERVALS}
    found: dict[int | None, tuple[int, float]] = {}
    for _ in range(args.rounds):
        for every in INTERVALS:
            folder = Path(tempfile.mkdtemp()) / "record"
            seconds, recording, snapshots, disk = train(x, y01, every, folder)
            shutil.rmtree(folder.parent)
            times[every].append(seconds)
            inside[every].append(recording)
            found[every] = (snapshots, disk)
    base = statistics.median(times[None])
    records = []
    print(record.header(COLUMNS))
    for every in INTERVALS:
        median = statistics.median(times[every])
        snapshots, disk = found[every]
        recording = statistics.median(inside[every])
        entry = {"snapshot_every": every or "no recorder", "steps": 1500, "seconds_median": median,
                 "seconds_rounds": " ".join(f"{t:.2f}" for t in times[every]), "recorder_seconds": recording,
                 "recorder_share": f"{recording / base:.1%}", "wall_overhead": f"{median / base - 1:+.1%}",
                 "snapshots": snapshots, "disk_mb": disk}  # fmt: skip
        records.append(entry)
        print(record.row(entry, COLUMNS), flush=True)
    threads = torch.get_num_threads()
    note = (f"({args.rounds} interleaved rounds, {threads} torch threads; recorder_share: the median seconds spent "
            "inside the recorder (start, step hooks, close) over the baseline's median training; wall_overhead: "
            "median over median, which this machine's drift between runs blurs)")  # fmt: skip
    record.write("recorder", record.command_line(), records, COLUMNS, note)


if __name__ == "__main__":
    main()
