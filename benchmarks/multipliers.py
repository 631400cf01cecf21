"""The attack's multipliers, variant by variant, on weight-decay victims, binary and multiclass: signed
multipliers (Buzaglo et al. 2023's general-loss variant) against the max-margin ones, and for C outputs
one multiplier per other class against the runner-up class alone.

    python benchmarks/multipliers.py --seeds 0 1 2

Victims as in the tests (18-20 MNIST digits, 784-200-200-C, full-batch GD + weight decay 1e-2, 1500
epochs, float64); the attack's recipe alone (one restart, 3,000 steps), same seed for every variant.
Writes benchmarks/results/multipliers.{json,md}.
"""

from __future__ import annotations

import argparse
import time

import record
import torch

from auditkit import Auditor, KKTAttack
from auditkit.data.mnist import load_mnist_images
from auditkit.data.tasks import PARITY, binary_task, multiclass_task
from auditkit.victims.models import build_mlp
from auditkit.victims.training import train_mlp

COLUMNS = ["task", "seed", "variant", "identified", "n", "nonmembers_identified", "p_value", "seconds"]
VARIANTS = {  # name: attack settings (the default first)
    "default": {},
    "lambda_sign free": {"lambda_sign": "free"},
    "multiclass_margins runner_up": {"multiclass_margins": "runner_up"},
}


def victim(task: str, seed: int, mnist):
    if task == "binary":
        data = binary_task(*mnist, *PARITY, 10, 100, seed, (28, 28), "mnist")
    else:
        data = multiclass_task(*mnist, (0, 1, 7), 6, 50, seed, (28, 28), "mnist")
    model = build_mlp(784, [200, 200], seed=seed, dtype=torch.float64, outputs=data.outputs)
    x, y = torch.as_tensor(data.train_x), torch.as_tensor(data.train_y)
    train_mlp(model, x, y, lr=0.3, epochs=1500, weight_decay=0.01)
    return model, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    mnist = load_mnist_images()
    records = []
    print(record.header(COLUMNS), flush=True)
    for task in ("binary", "multiclass"):
        for seed in args.seeds:
            model, data = victim(task, seed, mnist)
            for variant, settings in VARIANTS.items():
                if task == "binary" and "multiclass_margins" in settings:
                    continue  # one output: one margin per candidate
                start = time.perf_counter()
                attack = KKTAttack(steps=3000, restarts=1, search="off", **settings)
                summary = Auditor(attack, device="cpu", dtype="float64", seed=seed).audit(model, data).summary()
                found = {"task": task, "seed": seed, "variant": variant, "seconds": time.perf_counter() - start,
                         **{key: summary.metric(key) for key in COLUMNS if key in summary.to_dict()}}  # fmt: skip
                records.append(found)
                print(record.row(found, COLUMNS), flush=True)
    command = f"python benchmarks/multipliers.py --seeds {' '.join(map(str, args.seeds))}"
    record.write("multipliers", command, records, COLUMNS, "(2-core CPU, float64)")


if __name__ == "__main__":
    main()
