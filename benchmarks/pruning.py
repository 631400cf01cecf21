"""Would candidate pruning pay: do the candidates that identify a training image at the end stand out mid-run?

    python benchmarks/pruning.py mnist_quick --seeds 0 1 2 --steps 2000 4000 8000

Runs the scenario's attack to each step count with the same seed (a constant step size gives every count
the same path, so a shorter run is a prefix of the longer one) and asks, of the last count's winners
(candidates that identify a training image), where they stood at each earlier count: how many sat at their
restart's multiplier floor (within 2 % of its smallest multiplier: the lambda_min hinge holds them there),
how many in the lowest quarter of their restart's multipliers, and how far they still had to move (median
||x_final - x_s|| / ||x_final||). Pruning the candidates at the floor at step s would save ``saved`` of
the whole run's candidate-steps and lose ``winners_at_floor`` of the winners.
Writes benchmarks/results/pruning_<scenario>.{json,md}.
"""

from __future__ import annotations

import argparse

import numpy as np
import record
from victim import scenario_victim

from auditkit import Auditor
from auditkit.attacks.kkt.attack import KKTAttack
from auditkit.attacks.kkt.kernel import extract_layers
from auditkit.environment import resolve_device, resolve_dtype
from auditkit.scoring.metrics import match

COLUMNS = ["seed", "steps", "identified", "candidates", "at_floor", "saved", "winners", "winners_at_floor",
           "winners_in_lowest_quarter", "winners_move", "others_move"]  # fmt: skip
FLOOR = 1.02  # a multiplier within 2 % of its restart's smallest sits at the floor


def per_restart(values: np.ndarray, restart: np.ndarray, function) -> np.ndarray:
    """``function`` applied to each restart's values, results in the original order."""
    out = np.empty(len(values))
    for r in np.unique(restart):
        mine = restart == r
        out[mine] = function(values[mine])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", help="a scenario file or a built-in scenario's name")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, nargs="+", default=[2000, 4000, 8000])
    args = parser.parse_args()
    steps, records = sorted(args.steps), []
    print(record.header(COLUMNS), flush=True)
    for seed in args.seeds:
        scenario, data, model, _ = scenario_victim(args.scenario, {"seed": seed})
        device, dtype = resolve_device(scenario.device), resolve_dtype(scenario.dtype)
        layers = extract_layers(model)
        knowledge = Auditor().knowledge(data)
        train_images, pool_images = data.to_pixels(data.train_x), data.to_pixels(data.pool_x)
        runs = {}
        for count in steps:
            attack = KKTAttack(scenario.attack, steps=count)
            output = attack.run(layers, knowledge, seed=seed, device=device, dtype=dtype)
            runs[count] = (output, match(train_images, data.to_pixels(output.candidates), pool_images))
        final, scores = runs[steps[-1]]
        winners = np.unique(scores["candidate"][scores["identified"]])
        for count in steps:
            output, found = runs[count]
            lam, restart = output.lambdas, output.restart
            floor = lam <= FLOOR * per_restart(lam, restart, lambda v: np.full(len(v), v.min()))
            quantile = per_restart(lam, restart, lambda v: v.argsort().argsort() / max(1, len(v) - 1))
            distance = np.linalg.norm(final.candidates - output.candidates, axis=1)
            move = distance / np.linalg.norm(final.candidates, axis=1)
            others = np.setdiff1d(np.arange(len(lam)), winners)
            row = {"scenario": scenario.name, "seed": seed, "steps": count,
                   "identified": int(found["identified"].sum()), "candidates": len(lam), "at_floor": int(floor.sum()),
                   "saved": floor.mean() * (steps[-1] - count) / steps[-1], "winners": len(winners),
                   "winners_at_floor": int(floor[winners].sum()),
                   "winners_in_lowest_quarter": int((quantile[winners] < 0.25).sum()),
                   "winners_move": float(np.median(move[winners])),
                   "others_move": float(np.median(move[others]))}  # fmt: skip
            records.append(row)
            print(record.row(row, COLUMNS), flush=True)
    command = record.command_line()
    record.write(f"pruning_{scenario.name}", command, records, COLUMNS, note=f"({device}, {dtype})")


if __name__ == "__main__":
    main()
