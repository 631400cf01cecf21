"""Batched restarts vs the same restarts run one after another, and peak memory of a step vs m.

    python benchmarks/restarts.py [--restarts 1 2 4 8] [--memory-m 1000 4000 10000]
    python benchmarks/restarts.py --restarts 8 16 --n-train 500 --width 1000 --memory-m --tag paper

Time per attack step (loss + backward + optimizer) on a 784-W-W-1 victim (W = 500) with m = 2 n candidates a
restart (n = 50: the quick scenario's size; n = 500, W = 1000: the paper's), R restarts as one batched program vs
R sequential single-restart programs, in the same process; on the CPU the batched program goes through its restarts
in chunks (``auditkit.attacks.kkt.step.CPU_CHUNK_BYTES``), and "one batch" is the same program with the chunking
off (every restart in one pass: what the attack did before it chunked). Peak memory: one step of 784-1000-1000-1 at m
candidates, in a fresh subprocess (resident set size; CUDA: max allocated); ``--memory-m`` with no sizes skips it.
Writes benchmarks/results/restarts_<device>[_<tag>].{json,md}.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
import record
import torch

from auditkit.attacks.base import AttackerKnowledge
from auditkit.attacks.kkt import step as attack_step
from auditkit.attacks.kkt.attack import KKTAttack
from auditkit.attacks.kkt.kernel import extract_layers
from auditkit.environment import describe_device, resolve_device
from auditkit.victims.models import build_mlp


def attack_seconds_per_step(layers, restarts: int, device, dtype, steps: int, n_train: int) -> float:
    attack = KKTAttack(steps=steps, restarts=restarts, alpha=40.0, alpha_relative=False, log_every=steps)
    bounds = np.ones(784)
    start = time.perf_counter()
    attack.run(layers, AttackerKnowledge(n_train, -bounds, bounds), device=device, dtype=dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def peak_memory_mb(m: int, device: str) -> float:
    """One stationarity step at m candidates in a fresh process; resident (CPU) or allocated (CUDA) peak."""
    code = (
        "import resource, torch, sys\n"
        "from auditkit.attacks.kkt.kernel import extract_layers, stationarity_loss\n"
        "from auditkit.victims.models import build_mlp\n"
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
    parser.add_argument("--memory-m", type=int, nargs="*", default=[1000, 4000, 10000])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n-train", type=int, default=50, help="training-set size: m = 2 n candidates a restart")
    parser.add_argument("--width", type=int, default=500, help="the victim's two hidden widths")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    args = parser.parse_args()
    device = resolve_device(args.device)
    dtype = torch.float32
    widths = [args.width, args.width]
    layers = extract_layers(build_mlp(784, widths, "none", seed=0, dtype=dtype)).to(device, dtype)
    records = []
    print("| device | restarts | one batch s/step | batched s/step | sequential s/step | speedup |")
    print("|---|---|---|---|---|---|")
    chunk_bytes = attack_step.CPU_CHUNK_BYTES
    for restarts in args.restarts:
        attack_step.CPU_CHUNK_BYTES = 2**62  # every restart in one pass
        one_batch = attack_seconds_per_step(layers, restarts, device, dtype, args.steps, args.n_train)
        attack_step.CPU_CHUNK_BYTES = chunk_bytes
        batched = attack_seconds_per_step(layers, restarts, device, dtype, args.steps, args.n_train)
        sequential = restarts * attack_seconds_per_step(layers, 1, device, dtype, args.steps, args.n_train)
        measured = {
            "kind": "restarts",
            "device": describe_device(device),
            "dtype": "float32",
            "m": 2 * args.n_train,
            "width": args.width,
            "restarts": restarts,
            "one_batch_s": one_batch,
            "batched_s": batched,
            "sequential_s": sequential,
            "speedup": sequential / batched,
        }
        records.append(measured)
        row = f"| {measured['device']} | {restarts} | {one_batch:.4f} | {batched:.4f} | {sequential:.4f} |"
        print(f"{row} {measured['speedup']:.2f}x |")
    print("\n| device | m | peak MB |\n|---|---|---|")
    for m in args.memory_m:
        peak = peak_memory_mb(m, device.type)
        records.append(
            {"kind": "memory", "device": describe_device(device), "dtype": "float32", "m": m, "peak_mb": peak}
        )
        print(f"| {describe_device(device)} | {m} | {peak:.0f} |")
    columns = [
        "kind",
        "device",
        "m",
        "width",
        "restarts",
        "one_batch_s",
        "batched_s",
        "sequential_s",
        "speedup",
        "peak_mb",
    ]
    name = f"restarts_{device.type}" + (f"_{args.tag}" if args.tag else "")
    record.write(name, record.command_line(), records, columns, note=f"({describe_device(device)}, float32)")


if __name__ == "__main__":
    main()
