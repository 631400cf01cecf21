"""Where the owner's attack should take its gradients, and what Adam's preconditioner does to its premise.

    python benchmarks/owner_premise.py --seed 0

The recipes of benchmarks/recipes.py that the KKT attack cannot speak about (50 MNIST parity digits,
784-500-500-1 bias-free), trained by the same plain PyTorch loop. For each, the linearisation residual
(multipliers fitted by non-negative least squares, exact ReLU) at the true training set and at 50
non-members, with the gradients at theta_0 (init), at both ends averaged (average) and at theta_T (final);
for Adam and AdamW also with the target reweighted by the final preconditioner (sqrt(exp_avg_sq) + eps,
which the owner has: the update divided by it is what the gradients span). Then the three gradient points
attacked on SGD+m wd 0 (one restart, 2,000 steps, 2,000 non-members): the baseline is the default, average.
Writes benchmarks/results/owner_premise_seedS.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import record
import torch
import torch.nn.functional as F
from recipes import RECIPES, optimizer_for

from auditkit import Auditor, OwnerAttack
from auditkit.attacks.kkt.kernel import MLPLayers, Objective, extract_layers
from auditkit.attacks.kkt.residual import kkt_residual
from auditkit.data.mnist import load_mnist_images
from auditkit.data.tasks import PARITY, binary_task
from auditkit.victims.models import build_mlp

STUDIED = ("SGD+m wd 0", "SGD wd 0", "Adam", "AdamW wd 1e-2")
POINTS = ("init", "average", "final")
COLUMNS = ["recipe", "gradients_at", "target", "residual_truth", "residual_nonmembers", "identified",
           "nonmembers_identified", "verdict", "seconds"]  # fmt: skip


def train(model, x, y01, kind, lr, weight_decay, batch, epochs, seed) -> torch.optim.Optimizer:
    """recipes.py's loop, keeping the optimizer (its state is the owner's too)."""
    optimizer = optimizer_for(kind, model.parameters(), lr, weight_decay)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            index = order[start : start + batch]
            optimizer.zero_grad()
            F.binary_cross_entropy_with_logits(model(x[index]).squeeze(-1), y01[index]).backward()
            optimizer.step()
    return optimizer


def scaled(layers: MLPLayers, scales: list[torch.Tensor]) -> MLPLayers:
    return MLPLayers(tuple(w * s for w, s in zip(layers.weights, scales)), layers.biases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    images, digits = load_mnist_images()
    data = binary_task(images, digits, *PARITY, 25, 250, args.seed, (28, 28), "mnist")
    y01 = torch.as_tensor((data.train_y > 0).astype(np.float32))
    x = torch.as_tensor(data.train_x, dtype=torch.float32)
    truth, labels = x.double(), torch.as_tensor(data.train_y, dtype=torch.float64)
    outsiders = torch.as_tensor(data.pool_x[:50], dtype=torch.float64)
    records = []
    print(record.header(COLUMNS), flush=True)
    for name, kind, lr, weight_decay, batch, epochs, _ in RECIPES:
        if name not in STUDIED:
            continue
        model = build_mlp(784, [500, 500], "none", seed=args.seed)
        initial = copy.deepcopy(model)
        optimizer = train(model, x, y01, kind, lr, weight_decay, batch, epochs, args.seed)
        start_layers, final_layers = extract_layers(initial), extract_layers(model)
        targets = {"theta_T": None}
        if kind in ("adam", "adamw"):
            targets["theta_T * sqrt(v)"] = [
                optimizer.state[p]["exp_avg_sq"].sqrt().double() + 1e-8 for p in model.parameters()
            ]
        for target_name, scales in targets.items():
            for at in POINTS:
                started = time.perf_counter()
                points = {"init": (start_layers,), "average": (start_layers, final_layers), "final": (final_layers,)}
                target, free = final_layers, start_layers
                if scales is not None:
                    target, free = (
                        scaled(final_layers.to("cpu", torch.float64), scales),
                        scaled(start_layers.to("cpu", torch.float64), scales),
                    )
                objective = Objective(points[at], target, free)
                found = {"recipe": name, "gradients_at": at, "target": target_name, "seed": args.seed,
                         "residual_truth": kkt_residual(objective, truth, labels)[0],
                         "residual_nonmembers": kkt_residual(objective, outsiders, labels)[0]}  # fmt: skip
                if name == STUDIED[0]:
                    pool = torch.as_tensor(data.pool_x[:2000], dtype=torch.float32)
                    attack = OwnerAttack(restarts=1, search="off", steps=2000, gradients_at=at)
                    result = Auditor(attack, seed=args.seed).audit(
                        model, train=(x, y01), nonmembers=pool, mean=data.mean, init=initial
                    )
                    summary = result.summary()
                    found |= {k: summary.metric(k) for k in ("identified", "nonmembers_identified", "verdict")}
                found["seconds"] = time.perf_counter() - started
                records.append(found)
                print(record.row(found, COLUMNS), flush=True)
    note = "(2-core CPU, float32 victims, residuals in float64; n = 50, 50 non-members for the residual)"
    record.write(f"owner_premise_seed{args.seed}", record.command_line(), records, COLUMNS, note)


if __name__ == "__main__":
    main()
