"""The attack's checkpoint: what keeping the KKT search's state costs against the search itself.

    python benchmarks/checkpoint.py --steps 200

The default attack on a victim of the default size (784-500-500-1, 50 training samples; random weights: the
cost of a step and of a save depend on the sizes, not on the values), three runs in this process: no
checkpoint (the baseline), the default interval (a save at most every CHECKPOINT_SECONDS and one at the end),
and a save after every step (what one save costs). The overhead at the default interval is one save's cost
over the interval. Writes benchmarks/results/checkpoint.{json,md}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import record
import torch

import auditkit.attacks.kkt.checkpoint as checkpoint
from auditkit import KKTAttack
from auditkit.attacks.base import AttackerKnowledge
from auditkit.victims.models import build_mlp

COLUMNS = ["run", "steps", "seconds", "s_per_step", "saves", "file_mb", "s_per_save", "overhead_at_default"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--n", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_mlp(784, [500, 500], "none", seed=0, dtype=torch.float32)
    public = np.random.default_rng(0).random((512, 784)) - 0.13
    knowledge = AttackerKnowledge(args.n, np.full(784, -0.13), np.full(784, 0.87), public)
    attack = KKTAttack(steps=args.steps)
    print(record.header(COLUMNS))
    records, default = [], checkpoint.CHECKPOINT_SECONDS
    attack.run(model, knowledge, seed=0, device="cpu", dtype=torch.float32)  # warm-up: the first run's one-offs
    for name, every in (("no checkpoint", None), ("default interval", default), ("every step", 0.0)):
        folder = Path(tempfile.mkdtemp())
        checkpoint.CHECKPOINT_SECONDS = default if every is None else every
        saves = []
        keep = checkpoint.SearchCheckpoint.keep

        def counted(self, state, ended=False, keep=keep, saves=saves):
            before, started = self.path.stat().st_mtime_ns if self.path.exists() else None, time.perf_counter()
            keep(self, state, ended)
            if self.path.exists() and self.path.stat().st_mtime_ns != before:
                saves.append((self.path.stat().st_size, time.perf_counter() - started))

        checkpoint.SearchCheckpoint.keep = counted
        started = time.perf_counter()
        attack.run(model, knowledge, seed=0, device="cpu", dtype=torch.float32,
                   checkpoint=None if every is None else folder)  # fmt: skip
        seconds = time.perf_counter() - started
        checkpoint.SearchCheckpoint.keep = keep
        records.append({"run": name, "steps": args.steps, "seconds": seconds, "s_per_step": seconds / args.steps,
                        "saves": len(saves), "file_mb": saves[-1][0] / 2**20 if saves else 0.0,
                        "s_per_save": float(np.mean([took for _, took in saves])) if saves else None})  # fmt: skip
    for entry in records[1:]:
        entry["overhead_at_default"] = f"{entry['s_per_save'] / default:.3%}"
    for entry in records:
        print(record.row(entry, COLUMNS))
    note = (
        f"Seconds of the whole attack on this machine ({torch.get_num_threads()} threads), after a warm-up run; "
        f"s_per_save: the mean time of a save (timed around each); the overhead at the default interval is "
        f"s_per_save / {default:g} s."
    )
    record.write("checkpoint", record.command_line(), records, COLUMNS, note)


if __name__ == "__main__":
    main()
