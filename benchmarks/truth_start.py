"""Does the attack's objective hold the training set? The attack started at the true samples, per margin fifth.

    python benchmarks/truth_start.py mnist_quick_100 --seeds 0 1 2 --steps 8000

For each seed, the scenario's first victim is attacked by its attack's recipe restart (one restart, no search)
started at the true training set, each sample with its fitted KKT multiplier (the attack's scale: times the
number of candidates). Counted after --steps: the samples still identified, per fifth of the training set by
normalised margin, smallest first (as ``scenario_seeds.py``'s ``identified_by_margin_fifth``). A sample the
objective does not hold when started at it is out of the attack's reach whatever the search; one it holds
is reachable in principle. Writes benchmarks/results/truth_start_<scenario>.{json,md}.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import record
import torch
from scenario_seeds import by_margin_fifth
from victim import fresh_victim_cache, scenario_victim

from auditkit import Auditor, KKTAttack
from auditkit.attacks.kkt.kernel import margins
from auditkit.attacks.kkt.network import victim_network
from auditkit.attacks.kkt.residual import kkt_residual
from auditkit.scoring.metrics import match

COLUMNS = ["seed", "steps", "identified", "identified_by_margin_fifth", "median_ssim", "victim_kkt_residual", "seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=8000)
    args = parser.parse_args()
    records = []
    print(record.header(COLUMNS), flush=True)
    with fresh_victim_cache():
        for seed in args.seeds:
            scenario, data, model, _ = scenario_victim(args.scenario, {"seed": seed, "device": "cpu"})
            layers = victim_network(model)  # an MLP's layers (closed form) or any ReLU network (generic path)
            x, y = torch.as_tensor(data.train_x), torch.as_tensor(data.train_y)
            residual, fitted = kkt_residual(layers, x, y)
            attack = KKTAttack(scenario.attack, steps=args.steps, restarts=1, search="off")
            start = time.perf_counter()
            output = attack.run(model, Auditor().knowledge(data), seed=seed, dtype=scenario.dtype,
                                initial=(x, fitted * len(x), y))  # fmt: skip
            seconds = time.perf_counter() - start
            scores = match(data.to_pixels(data.train_x), data.to_pixels(output.candidates), data.to_pixels(data.pool_x))
            sample_margins = margins(layers.to("cpu", torch.float64), x.double(), y.double()).numpy()
            # raw margins rank the samples as the normalised ones do (one positive factor)
            frame = pd.DataFrame({"normalized_margin": sample_margins, "identified": scores["identified"]})
            found = {"scenario": scenario.name, "seed": seed, "steps": args.steps,
                     "identified": int(scores["identified"].sum()),
                     "identified_by_margin_fifth": by_margin_fifth(frame),
                     "median_ssim": float(pd.Series(scores["ssim"]).median()),
                     "victim_kkt_residual": residual, "seconds": seconds}  # fmt: skip
            records.append(found)
            print(record.row(found, COLUMNS), flush=True)
    record.write(f"truth_start_{args.scenario}", record.command_line(), records, COLUMNS, "(cpu)")


if __name__ == "__main__":
    main()
