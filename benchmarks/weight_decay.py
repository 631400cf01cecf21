"""Leakage against weight decay at a fixed training budget, and what the weights look like at each.

    python benchmarks/weight_decay.py --seed 0

The victims of ``mnist_dp`` (100 MNIST parity digits, 784-500-500-1 bias-free, full-batch GD, lr 0.3,
6,000 epochs) at weight decay 0, 1e-3, 3e-3, 1e-2, 3e-2, 5e-2, attacked by that scenario's attack (the
sweep's recipe alone). Beside identified and the KKT residual: the hidden units still alive (incoming
weight norm above 1e-6 of the largest: weight decay drives the others to 0), the units active on at
least one training sample, the training samples on the margin (normalised margin < 1.5) and those with
a KKT multiplier above 1 % of the largest. Writes benchmarks/results/weight_decay.{json,md}.
"""

from __future__ import annotations

import argparse
import time

import record
import torch
from victim import fresh_victim_cache, scenario_victim

from auditkit import Auditor, KKTAttack
from auditkit.attacks.kkt.kernel import extract_layers, hidden_preactivations, margins
from auditkit.attacks.kkt.residual import kkt_residual
from auditkit.scoring.samples import normalized_margins

WEIGHT_DECAYS = [0.0, 1e-3, 3e-3, 1e-2, 3e-2, 5e-2]
COLUMNS = ["weight_decay", "train_accuracy", "test_accuracy", "victim_kkt_residual", "alive_units_1",
           "alive_units_2", "active_units_1", "on_margin", "multipliers_above_1pct", "weight_norm",
           "identified", "nonmembers_identified", "verdict", "seconds"]  # fmt: skip


def weight_facts(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Alive and active hidden units, samples on the margin, multipliers: where the weights carry samples."""
    layers = extract_layers(model).to("cpu", torch.float64)
    alive = []
    for weight in layers.weights[:-1]:
        norms = weight.norm(dim=1)
        alive.append(int((norms > 1e-6 * norms.max()).sum()))
    first = hidden_preactivations(layers, x)[0]
    sample_margins = margins(layers, x, y).numpy()
    _, fitted = kkt_residual(layers, x, y)
    return {
        "alive_units_1": alive[0],
        "alive_units_2": alive[1],
        "active_units_1": int(((first > 0).any(0)).sum()),
        "on_margin": int((normalized_margins(sample_margins) < 1.5).sum()),
        "multipliers_above_1pct": int((fitted > 0.01 * fitted.max()).sum()),
        "weight_norm": float(layers.norm()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weight-decays", type=float, nargs="+", default=WEIGHT_DECAYS)
    args = parser.parse_args()
    records = []
    print(record.header(COLUMNS), flush=True)
    with fresh_victim_cache():
        for weight_decay in args.weight_decays:
            start = time.perf_counter()
            overrides = {"seed": args.seed, "device": "cpu", "defenses": ["none"],
                         "victim": {"training": {"weight_decay": weight_decay}}}  # fmt: skip
            scenario, data, model, victim = scenario_victim("mnist_dp", overrides)
            device = torch.device("cpu")
            x, y = (torch.as_tensor(a, dtype=torch.float64) for a in (data.train_x, data.train_y))
            auditor = Auditor(KKTAttack(scenario.attack), device=device, dtype=scenario.dtype, seed=args.seed)
            summary = auditor.audit(model, data, victim=victim).summary()
            found = {"weight_decay": weight_decay, "seed": args.seed, **weight_facts(model, x, y),
                     "test_accuracy": victim.training.test_accuracy,
                     **{key: summary.metric(key) for key in COLUMNS if key in summary.to_dict()},
                     "seconds": time.perf_counter() - start}  # fmt: skip
            records.append(found)
            print(record.row(found, COLUMNS), flush=True)
    command = f"python benchmarks/weight_decay.py --seed {args.seed}"
    record.write(f"weight_decay_seed{args.seed}", command, records, COLUMNS, "(2-core CPU, float32, n = 100)")


if __name__ == "__main__":
    main()
