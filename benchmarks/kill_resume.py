"""Crash safety: SIGKILL a run at random moments, resume it, and compare with an uninterrupted run.

    python benchmarks/kill_resume.py --trials 10

Each trial starts ``auditkit run`` on a three-victim toy scenario (plain, weight decay, DP-SGD) with its
own fresh victim cache and output folder, kills it with SIGKILL after a random delay (seeded), runs it
again with ``--resume``, and checks that every victim's per_sample.csv and reconstructions.npz are
bit-identical to the uninterrupted run and that no temporary file is left in the output folder or the
cache. Prints a table and writes benchmarks/results/kill_resume.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import record

SCENARIO = """name: crash
device: cpu
data: {dataset: toy_colors, n_per_class: 10, test_per_class: 50}
victim: {hidden: [100, 100], training: {epochs: 1500, weight_decay: 0.01}}
defenses:
  - {name: plain}
  - {name: decay, kind: recipe, training: {weight_decay: 0.05}}
  - {name: dp, kind: dp_sgd, dp: {noise_multiplier: 1.0, batch_size: 5, epochs: 30}}
attack: {steps: 1500}
"""
COLUMNS = ["trial", "killed_after_s", "victims_done_at_kill", "identical", "stray_files", "resume_s"]


def run(scenario: Path, out: Path, cache: Path, resume: bool = False) -> subprocess.Popen:
    command = [sys.executable, "-m", "auditkit", "run", str(scenario), "--out", str(out), "--quiet"]
    env = {**os.environ, "AUDITKIT_CACHE": str(cache)}
    arguments = command + (["--resume"] if resume else [])
    return subprocess.Popen(arguments, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def fingerprint(out: Path) -> dict[str, bytes]:
    """Per-sample tables and reconstruction arrays of every victim (what must survive a crash)."""
    found = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        found[f"{folder.name}/per_sample.csv"] = (folder / "per_sample.csv").read_bytes()
        with np.load(folder / "reconstructions.npz", allow_pickle=False) as arrays:
            for key in arrays.files:
                found[f"{folder.name}/{key}"] = arrays[key].tobytes()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    records = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        scenario = root / "crash.yaml"
        scenario.write_text(SCENARIO)
        start = time.perf_counter()
        reference = run(scenario, root / "reference", root / "reference-cache")
        if reference.wait() != 0:
            raise SystemExit(reference.stderr.read())
        duration = time.perf_counter() - start
        expected = fingerprint(root / "reference")
        print(f"uninterrupted run: {duration:.1f}s\n")
        print(record.header(COLUMNS), flush=True)
        for trial in range(args.trials):
            out, cache = root / f"trial{trial}", root / f"cache{trial}"
            delay = rng.uniform(0.5, duration)
            process = run(scenario, out, cache)
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            process.wait()
            done = len(list(out.glob("*/result.json")))
            start = time.perf_counter()
            resumed = run(scenario, out, cache, resume=True)
            if resumed.wait() != 0:
                raise SystemExit(resumed.stderr.read())
            stray = [p.name for folder in (out, cache) for p in folder.rglob("*.auditkit-tmp")]
            found = {
                "trial": trial,
                "killed_after_s": round(delay, 2),
                "victims_done_at_kill": done,
                "identical": fingerprint(out) == expected,
                "stray_files": len(stray),
                "resume_s": round(time.perf_counter() - start, 1),
            }
            records.append(found)
            print(record.row(found, COLUMNS), flush=True)
    command = f"python benchmarks/kill_resume.py --trials {args.trials} --seed {args.seed}"
    identical = sum(r["identical"] for r in records)
    note = f"(uninterrupted run {duration:.1f}s; identical after resume: {identical}/{len(records)})"
    record.write("kill_resume", command, records, COLUMNS, note)


if __name__ == "__main__":
    main()
