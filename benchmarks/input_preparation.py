"""How input preparation changes what the attack finds: the same digits and recipe, centred vs raw pixels.

    python benchmarks/input_preparation.py --seeds 0 1 2

Trains the small victim (20 MNIST parity digits, 784-200-200-1, GD lr 0.3, weight decay 1e-2, 1500
epochs) on centred inputs and on raw [0, 1] pixels, audits each through the Python API as a user would
(the attack's pixel prior matches the inputs in both), 3000 steps, one restart. Writes
benchmarks/results/input_preparation.{json,md}.
"""

from __future__ import annotations

import argparse

import record
import torch

from auditkit import Auditor, KKTAttack
from auditkit.data.mnist import load_mnist_images
from auditkit.data.tasks import PARITY, binary_task
from auditkit.victims.models import build_mlp
from auditkit.victims.training import train_mlp

COLUMNS = ["seed", "inputs", "train_accuracy", "victim_kkt_residual", "identified", "n", "nonmembers_identified",
           "p_value", "verdict"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    images, digits = load_mnist_images()
    records = []
    print(record.header(COLUMNS), flush=True)
    for seed in args.seeds:
        data = binary_task(images, digits, *PARITY, 10, 100, seed, (28, 28), "mnist")
        for inputs, x, mean, pool in (
            ("centred", data.train_x, data.mean, data.pool_x[:500]),
            ("raw [0, 1]", data.train_x + data.mean, None, data.pool_x[:500] + data.mean),
        ):
            model = build_mlp(784, [200, 200], "none", seed=seed, dtype=torch.float64)
            log = train_mlp(model, torch.as_tensor(x), torch.as_tensor(data.train_y), lr=0.3, epochs=1500,
                           weight_decay=0.01)  # fmt: skip
            auditor = Auditor(KKTAttack(steps=3000, restarts=1, search="off"), device="cpu", seed=seed)
            summary = auditor.audit(model, train=(x, data.train_y), nonmembers=pool, mean=mean).summary()
            found = {"seed": seed, "inputs": inputs, "train_accuracy": log.train_accuracy,
                     **{key: summary.metric(key) for key in COLUMNS[3:]}}  # fmt: skip
            records.append(found)
            print(record.row(found, COLUMNS), flush=True)
    command = "python benchmarks/input_preparation.py --seeds " + " ".join(map(str, args.seeds))
    record.write("input_preparation", command, records, COLUMNS, "(2-core CPU, float32 attack)")


if __name__ == "__main__":
    main()
