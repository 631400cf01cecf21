"""Attack step time: the MLP closed form against the generic path (any ReLU network through autograd, the
authors' double-backward, here on the same MLP as an nn.Module): the price of generality, same process; and
the whole step's losses (stationarity, prior, multiplier floor) eager against compiled (``attack.compile``:
torch.compile, on a GPU CUDA graphs), the launch overhead the compiled step removes.

    python benchmarks/kernel.py [--m 200 1000 4000] [--dtypes float32 float64] [--repeats 3]

Prints a table and writes benchmarks/results/kernel_<device>.{json,md}. One step = stationarity loss +
backward to x and lambda, 784-1000-1000-1 (the eager and compiled steps: with the prior and the floor, one
restart). GFLOP/s is set against this machine's dense matmul rate measured in the same run (peak_fraction),
so results from different machines compare.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from auditkit.attacks.kkt.kernel import as_objective, extract_layers, stationarity_loss
from auditkit.attacks.kkt.network import ReLUNetwork, stationarity_loss_autograd
from auditkit.attacks.kkt.step import losses_function
from auditkit.environment import describe_device, resolve_device
from auditkit.victims.models import build_mlp

WIDTHS = (784, 1000, 1000)


def step_flops(m: int) -> float:
    """Matmul FLOPs of one step. Forward: h W^T per layer (P), G_l = delta_l^T h_{l-1} (P) and the delta
    propagation delta W_l for l > 0 (P'). Backward: the weights are constants, so h W^T and delta W_l
    cost one matmul each (P + P'), G_l two (2P). Total 2 m (5P + 2P')."""
    sizes = [a * b for a, b in zip(WIDTHS, (*WIDTHS[1:], 1))]
    return 2 * m * (5 * sum(sizes) + 2 * sum(sizes[1:]))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeats: int) -> float:
    fn()
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def matmul_rate(device: torch.device, dtype: torch.dtype, repeats: int) -> float:
    a = torch.randn(2000, 1000, device=device, dtype=dtype)
    b = torch.randn(1000, 1000, device=device, dtype=dtype)
    seconds = timed(lambda: [a @ b for _ in range(5)], device, repeats)
    return 5 * 2 * 2000 * 1000 * 1000 / seconds / 1e9


def _step_functions(layers, network: ReLUNetwork, m: int, device: torch.device, dtype: torch.dtype):
    """One attack step (loss + backward to x and lambda) with the closed form and with the generic path."""
    x = (0.1 * torch.randn(1, m, WIDTHS[0], device=device, dtype=dtype)).requires_grad_(True)
    lam = torch.rand(1, m, device=device, dtype=dtype).requires_grad_(True)
    labels = torch.cat([torch.ones(m // 2), -torch.ones(m - m // 2)]).to(device, dtype)

    def fast():
        stationarity_loss(layers, x, lam, labels, 20.0).sum().backward()

    def reference():
        stationarity_loss_autograd(network, x[0], lam[0], labels, 20.0).backward()

    objective, one = as_objective(layers), torch.ones(1, device=device, dtype=dtype)
    floor = torch.full((1,), 0.1, device=device, dtype=dtype)

    def whole_step(losses_of):
        return lambda: losses_of(objective, x, lam, labels, 20.0 * one, -one, one, floor, 1.0, 5.0)[0].sum().backward()

    eager, compiled = (whole_step(losses_function(flag, objective, device)) for flag in (False, True))
    return fast, reference, eager, compiled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, nargs="+", default=[200, 1000, 4000])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    records = []
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        model = build_mlp(WIDTHS[0], list(WIDTHS[1:]), "none", seed=0, dtype=dtype)
        layers, network = extract_layers(model).to(device, dtype), ReLUNetwork(model).to(device, dtype)
        rate = matmul_rate(device, dtype, args.repeats)
        for m in args.m:
            fast, reference, eager, compiled = _step_functions(layers, network, m, device, dtype)
            reference_s = timed(reference, device, args.repeats)
            fast_s = timed(fast, device, args.repeats)
            eager_s = timed(eager, device, args.repeats)
            compiled(), compiled()  # compiled (and, on a GPU, recorded) before the clock starts
            compiled_s = timed(compiled, device, args.repeats)
            gflops = step_flops(m) / fast_s / 1e9
            records.append(
                {
                    "device": describe_device(device),
                    "dtype": dtype_name,
                    "m": m,
                    "reference_s": reference_s,
                    "fast_s": fast_s,
                    "speedup": reference_s / fast_s,
                    "step_gflop": step_flops(m) / 1e9,
                    "gflops": gflops,
                    "reference_gflops": step_flops(m) / reference_s / 1e9,
                    "matmul_gflops": rate,
                    "peak_fraction": gflops / rate,
                    "eager_step_s": eager_s,
                    "compiled_step_s": compiled_s,
                    "compiled_peak_fraction": step_flops(m) / compiled_s / 1e9 / rate,
                }
            )
            print(_row(records[-1]), flush=True)
    write_results("kernel", device, records, [HEADER, *(_row(r) for r in records)])


def write_results(name: str, device: torch.device, records: list[dict], table: list[str]) -> None:
    """benchmarks/results/NAME_TAG.{json,md}; TAG is "cpu", or "cuda_HOST" so GPU machines do not collide."""
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    tag = f"{device.type}_{platform.node() or 'host'}" if device.type == "cuda" else "cpu"
    (out / f"{name}_{tag}.json").write_text(json.dumps(records, indent=2) + "\n")
    command = " ".join(["python", "benchmarks/kernel.py", *sys.argv[1:]])
    (out / f"{name}_{tag}.md").write_text(f"`{command}` (reference: the generic path)\n\n" + "\n".join(table) + "\n")


HEADER = (
    "| device | dtype | m | generic s | closed form s | generic / closed | GFLOP/step | GFLOP/s | matmul GFLOP/s | "
    "peak fraction | eager step s | compiled step s | compiled peak fraction |\n" + "|---" * 13 + "|"
)


def _row(r: dict) -> str:
    return (
        f"| {r['device']} | {r['dtype']} | {r['m']} | {r['reference_s']:.3f} | {r['fast_s']:.3f} | "
        f"{r['speedup']:.2f}x | {r['step_gflop']:.1f} | {r['gflops']:.1f} | {r['matmul_gflops']:.1f} | "
        f"{r['peak_fraction']:.2f} | {r['eager_step_s']:.3f} | {r['compiled_step_s']:.3f} | "
        f"{r['compiled_peak_fraction']:.2f} |"
    )


if __name__ == "__main__":
    print(HEADER)
    main()
