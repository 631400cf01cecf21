"""Batched restarts vs the same restarts run one after another, and peak memory of a step vs m.

    python benchmarks/restarts.py [--restarts 1 2 4 8] [--memory-m 1000 4000 10000]

Time per attack step (loss + backward + optimizer) on a 784-500-500-1 victim with m = 100 candidates a
restart (the quick scenario's size), R restarts as one batched program vs R sequential single-restart
programs, in the same process. Peak memory: one step of 784-1000-1000-1 at m candidates, in a fresh
subprocess (resident set size; CUDA: max allocated). Writes benchmarks/results/restarts_<device>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from auditkit.attacks.base import AttackerKnowledge
from auditkit.attacks.kkt.attack import KKTAttack
from auditkit.attacks.kkt.kernel import extract_layers
from auditkit.environment import describe_device, resolve_device
from auditkit.victims.models import build_mlp


def attack_seconds_per_step(layers, restarts: int, device, dtype, steps: int) -> float:
    attack = KKTAttack(steps=steps, restarts=restarts, alpha=40.0, alpha_relative=False, log_every=steps)
    bounds = np.ones(784)
    start = time.perf_counter()
    attack.run(layers, AttackerKnowledge(50, -bounds, bounds), device=device, dtype=dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def peak_memory_mb(m: int, device: str) -> float:
    """One stationarity step at m candidates in a fresh process; resident (CPU) or allocated (CUDA) peak."""
    code = (
        "import resource, torch, sys\n"
        "from auditkit.attacks.kkt.kernel import extract_layers, stationarity_loss\n"
        "from auditkit.victims import build_mlp\n"
        f"d = torch.device('{device}'); m = {m}\n"
        "layers = extract_layers(build_mlp(784, [1000, 1000], 'none', dtype=torch.float32)).to(d, torch.float32)\n"
        "x = torch.randn(1, m, 784, device=d).requires_grad_(True)\n"
        "lam = torch.rand(1, m, device=d).requires_grad_(True)\n"
        "y = torch.cat([torch.ones(m // 2), -torch.ones(m - m // 2)]).to(d)\n"
        "stationarity_loss(layers, x, lam, y, 20.0).sum().backward()\n"
        "peak = torch.cuda.max_memory_allocated() / 2**20 if d.type == 'cuda' else "
        "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(peak)\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--memory-m", type=int, nargs="+", default=[1000, 4000, 10000])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    dtype = torch.float32
    layers = extract_layers(build_mlp(784, [500, 500], "none", seed=0, dtype=dtype)).to(device, dtype)
    records = []
    print("| device | restarts | batched s/step | sequential s/step | speedup |\n|---|---|---|---|---|")
    for restarts in args.restarts:
        batched = attack_seconds_per_step(layers, restarts, device, dtype, args.steps)
        sequential = restarts * attack_seconds_per_step(layers, 1, device, dtype, args.steps)
        record = {
            "kind": "restarts",
            "device": describe_device(device),
            "dtype": "float32",
            "m": 100,
            "restarts": restarts,
            "batched_s": batched,
            "sequential_s": sequential,
            "speedup": sequential / batched,
        }
        records.append(record)
        print(f"| {record['device']} | {restarts} | {batched:.4f} | {sequential:.4f} | {record['speedup']:.2f}x |")
    print("\n| device | m | peak MB |\n|---|---|---|")
    for m in args.memory_m:
        peak = peak_memory_mb(m, device.type)
        records.append(
            {"kind": "memory", "device": describe_device(device), "dtype": "float32", "m": m, "peak_mb": peak}
        )
        print(f"| {describe_device(device)} | {m} | {peak:.0f} |")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"restarts_{device.type}.json").write_text(json.dumps(records, indent=2) + "\n")
    lines = ["| kind | m | restarts | batched s/step | sequential s/step | speedup | peak MB |", "|---" * 7 + "|"]
    for r in records:
        lines.append(
            f"| {r['kind']} | {r['m']} | {r.get('restarts', '')} | {r.get('batched_s', float('nan')):.4f} | "
            f"{r.get('sequential_s', float('nan')):.4f} | {r.get('speedup', float('nan')):.2f} | "
            f"{r.get('peak_mb', float('nan')):.0f} |"
        )
    (out / f"restarts_{device.type}.md").write_text(f"{records[0]['device']}\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
