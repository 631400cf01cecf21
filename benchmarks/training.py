"""Victim training step: eager PyTorch vs torch.compile, same process.

    python benchmarks/training.py [--sizes 50:500,500 500:1000,1000] [--dtypes float32 float64]

One full-batch GD step (forward, backward, SGD update with weight decay) of a bias-free ReLU MLP on n
random inputs. Prints a table and writes benchmarks/results/training_<device>.{json,md}, with the
one-off compilation time, so the step count at which compiling pays off can be read off.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from kernel import matmul_rate, synchronize, write_results

from auditkit.environment import describe_device, resolve_device
from auditkit.victims.models import build_mlp
from auditkit.victims.training import make_optimizer, training_step

INPUT_DIM = 784


def step_flops(n: int, widths: list[int]) -> float:
    """Forward h W^T (P), backward delta W (P minus the first layer: no input gradient) and G = delta^T h (P)."""
    sizes = [a * b for a, b in zip(widths, (*widths[1:], 1))]
    return 2 * n * (3 * sum(sizes) - sizes[0])


def seconds_per_step(step, x, labels, device, steps: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            step(x, labels)
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def measure(n: int, hidden: list[int], dtype: torch.dtype, device: torch.device, steps: int, repeats: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, INPUT_DIM, generator=generator, dtype=dtype).to(device)
    labels = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0).to(device, dtype)
    model = build_mlp(INPUT_DIM, hidden, "none", seed=0, dtype=dtype).to(device)
    eager_model, compiled_model = copy.deepcopy(model), copy.deepcopy(model)
    eager = training_step(eager_model, make_optimizer(eager_model, "gd", lr=0.01, weight_decay=0.01))
    compiled = training_step(
        compiled_model, make_optimizer(compiled_model, "gd", lr=0.01, weight_decay=0.01), compile=True
    )
    eager(x, labels)
    start = time.perf_counter()
    for _ in range(3):  # a compiled CUDA-graph step records on its first calls
        compiled(x, labels)
    synchronize(device)
    compile_s = time.perf_counter() - start
    eager_s = seconds_per_step(eager, x, labels, device, steps, repeats)
    compiled_s = seconds_per_step(compiled, x, labels, device, steps, repeats)
    flops = step_flops(n, [INPUT_DIM, *hidden])
    return {
        "device": describe_device(device),
        "dtype": str(dtype).removeprefix("torch."),
        "n": n,
        "widths": "-".join(map(str, [INPUT_DIM, *hidden, 1])),
        "eager_ms": 1e3 * eager_s,
        "compiled_ms": 1e3 * compiled_s,
        "speedup": eager_s / compiled_s,
        "compile_s": compile_s,
        "break_even_steps": compile_s / max(eager_s - compiled_s, 1e-12) if compiled_s < eager_s else None,
        "gflops": flops / min(eager_s, compiled_s) / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["50:500,500", "500:1000,1000"], help="n:hidden widths")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(HEADER, flush=True)
    records = []
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        rate = matmul_rate(device, dtype, args.repeats)
        for size in args.sizes:
            n, widths = size.split(":")
            record = measure(int(n), [int(w) for w in widths.split(",")], dtype, device, args.steps, args.repeats)
            record.update(matmul_gflops=rate, peak_fraction=record["gflops"] / rate)
            records.append(record)
            print(_row(record), flush=True)
    write_results("training", device, records, [HEADER, *(_row(r) for r in records)])


HEADER = (
    "| device | dtype | n | widths | eager ms | compiled ms | speedup | compile s | break-even steps | GFLOP/s "
    "| peak fraction |\n" + "|---" * 11 + "|"
)


def _row(r: dict) -> str:
    even = f"{r['break_even_steps']:.0f}" if r["break_even_steps"] is not None else "never"
    return (
        f"| {r['device']} | {r['dtype']} | {r['n']} | {r['widths']} | {r['eager_ms']:.2f} | {r['compiled_ms']:.2f} | "
        f"{r['speedup']:.2f}x | {r['compile_s']:.1f} | {even} | {r['gflops']:.1f} | {r['peak_fraction']:.2f} |"
    )


if __name__ == "__main__":
    main()
