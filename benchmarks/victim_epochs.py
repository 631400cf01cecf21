"""How close a scenario's victim gets to a KKT point as it trains longer: residual, accuracy and time per epoch budget.

    python benchmarks/victim_epochs.py mnist_quick_100 --seed 0 --epochs 6000 20000 60000
    python benchmarks/victim_epochs.py mnist_quick_100 --epochs 6000 --set victim.training.schedule=cosine --tag cosine

Trains the scenario's first victim (its own recipe, ``victim.training.epochs`` and any ``--set KEY=VALUE``
changed) once per epoch budget, each from scratch as a run would, and prints the victim's KKT residual on
its training set (the attack's premise: near 0 at a KKT point), its training loss and accuracies and the
training time. Writes benchmarks/results/victim_epochs_<scenario>[_<tag>]_seed<seed>.{json,md}. The attack
is not run: compare counts with ``scenario_seeds.py --set victim.training.epochs=N``.
"""

from __future__ import annotations

import argparse

import record
import torch
from victim import fresh_victim_cache, scenario_victim

from auditkit.attacks.kkt.kernel import extract_layers
from auditkit.attacks.kkt.residual import kkt_residual
from auditkit.config.overrides import deep_merge, parse_settings

COLUMNS = ["epochs", "victim_kkt_residual", "final_loss", "train_accuracy", "test_accuracy", "train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, nargs="+", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--tag", default="", help="appended to the result file's name")
    args = parser.parse_args()
    records = []
    print(record.header(COLUMNS), flush=True)
    with fresh_victim_cache():
        for epochs in args.epochs:
            overrides = deep_merge(parse_settings(args.settings), {"seed": args.seed, "device": args.device,
                                   "victim": {"training": {"epochs": epochs}}})  # fmt: skip
            _, data, model, victim = scenario_victim(args.scenario, overrides)
            x, y = (torch.as_tensor(a, dtype=torch.float64) for a in (data.train_x, data.train_y))
            residual, _ = kkt_residual(extract_layers(model), x, y)
            log = victim.training
            found = {"scenario": args.scenario, "seed": args.seed, "epochs": epochs, "victim_kkt_residual": residual,
                     "final_loss": log.final_loss, "train_accuracy": log.train_accuracy,
                     "test_accuracy": log.test_accuracy, "train_seconds": log.seconds}  # fmt: skip
            records.append(found)
            print(record.row(found, COLUMNS), flush=True)
    name = "_".join(["victim_epochs", args.scenario, *([args.tag] if args.tag else []), f"seed{args.seed}"])
    changed = ", ".join([*args.settings, "epochs as listed"])
    record.write(name, record.command_line(), records, COLUMNS, f"({args.device}; the scenario's recipe, {changed})")


if __name__ == "__main__":
    main()
