"""Which outside-attacker score predicts a restart's final success, and when: the sweep's early stop.

    python benchmarks/selection.py mnist_quick --seed 0 --restarts 6 --steps 2000 4000 6000 10000

Runs the scenario's attack (no early stop) for each step count with the same seed (same initial
points and per-restart settings), and scores every restart by its attack loss, the KKT residual its
candidates leave (multipliers refitted, exact ReLU), the ground-truth sweep score, and what it
identifies on its own. Writes benchmarks/results/selection_<scenario>.{json,md}.
"""

from __future__ import annotations

import argparse
import time

import record
import torch
from victim import scenario_victim

from auditkit import Auditor
from auditkit.attacks.kkt.attack import KKTAttack
from auditkit.attacks.kkt.kernel import extract_layers
from auditkit.attacks.kkt.selection import ground_truth_scorer, residual_scorer
from auditkit.environment import resolve_device, resolve_dtype
from auditkit.scoring.metrics import match

COLUMNS = [
    "steps",
    "restart",
    "init_scale",
    "lr_x",
    "lambda_min",
    "alpha",
    "loss",
    "residual",
    "ground_truth",
    "identified",
    "pooled_identified",
    "attack_seconds",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", help="a scenario file or a built-in scenario's name")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--restarts", type=int, default=6)
    parser.add_argument("--steps", type=int, nargs="+", default=[2000, 10000])
    args = parser.parse_args()
    scenario, data, model, _ = scenario_victim(args.scenario, {"seed": args.seed})
    device, dtype = resolve_device(scenario.device), resolve_dtype(scenario.dtype)
    layers = extract_layers(model)
    truth = ground_truth_scorer(data.train_x + data.mean, data.mean, device, dtype)
    train_images, pool_images = data.to_pixels(data.train_x), data.to_pixels(data.pool_x)
    lower, upper = torch.as_tensor(data.lower).flatten(), torch.as_tensor(data.upper).flatten()
    records = []
    print(record.header(COLUMNS), flush=True)
    for steps in args.steps:
        attack = KKTAttack(scenario.attack, steps=steps, restarts=args.restarts, early_stop_step=0)
        start = time.perf_counter()
        knowledge = Auditor().knowledge(data)
        output = attack.run(layers, knowledge, seed=scenario.seed, device=device, dtype=dtype)
        seconds = time.perf_counter() - start
        labels = torch.as_tensor(output.labels[output.restart == 0])
        residual = residual_scorer(layers, labels, lower, upper)
        pooled = int(match(train_images, data.to_pixels(output.candidates), pool_images)["identified"].sum())
        for restart in range(args.restarts):
            mine = output.candidates[output.restart == restart]
            candidates = torch.as_tensor(mine)[None]
            found = {
                "scenario": scenario.name,
                "seed": scenario.seed,
                "steps": steps,
                "restart": restart,
                **{key: values[restart] for key, values in output.facts.restart_settings.items()},
                "loss": output.facts.final_loss[restart],
                "residual": -float(residual(candidates, torch.zeros(1, dtype=torch.float64))),
                "ground_truth": float(truth(candidates.to(device, dtype), torch.zeros(1, device=device))),
                "identified": int(match(train_images, data.to_pixels(mine), pool_images)["identified"].sum()),
                "pooled_identified": pooled,
                "attack_seconds": seconds,
            }
            records.append(found)
            print(record.row(found, COLUMNS), flush=True)
    command = record.command_line()
    record.write(f"selection_{scenario.name}", command, records, COLUMNS, note=f"({device}, {dtype})")


if __name__ == "__main__":
    main()
