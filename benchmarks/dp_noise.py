"""Where DP-SGD's noise takes a victim off the KKT point: the residual, the noise in the weights, leakage.

    python benchmarks/dp_noise.py --seed 0 --attack

``mnist_dp``'s data and victim (100 MNIST parity digits, 784-500-500-1 bias-free, weight decay 1e-2)
trained by DP-SGD (Opacus, Poisson batches of 25, clip 1, lr 0.5) for ``--epochs`` at a ladder of noise
multipliers sigma, 0 (clipping alone) included. Per victim: epsilon at delta 1e-5, train and test
accuracy, the KKT residual, the part of the weights outside the span of the training samples' margin
gradients (least squares, no sign constraint), and the noise the weights are predicted to hold: each
step adds N(0, (lr sigma C / B)^2) per coordinate and weight decay shrinks the weights by (1 - lr wd),
so after T steps the noise has norm sqrt(D (lr sigma C / B)^2 (1 - (1 - lr wd)^(2T)) / (1 - (1 - lr wd)^2))
over the D weights. With ``--attack``, each victim is attacked by the scenario's attack.
Writes benchmarks/results/dp_noise_seed<seed>.{json,md}.
"""

from __future__ import annotations

import argparse
import math
import time

import record
import torch
from victim import fresh_victim_cache, scenario_victim

from auditkit import Auditor, KKTAttack
from auditkit.attacks.kkt.kernel import extract_layers, margin_directions
from auditkit.attacks.kkt.residual import kkt_residual, per_sample_gram

SIGMAS = [0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3]
COLUMNS = ["sigma", "epsilon", "train_accuracy", "test_accuracy", "victim_kkt_residual", "outside_span",
           "predicted_noise", "weight_norm", "identified", "nonmembers_identified", "verdict", "seconds"]  # fmt: skip


def outside_span(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(||theta - P theta|| / ||theta||, ||theta||): P projects on the span of the margin gradients."""
    layers = extract_layers(model).to("cpu", torch.float64)
    gram, theta_dot = per_sample_gram(layers, x, margin_directions(layers, x, y))
    theta_sq = float(layers.norm() ** 2)
    jitter = 1e-10 * float(gram.trace())
    inside = float(theta_dot @ torch.linalg.solve(gram + jitter * torch.eye(len(x), dtype=gram.dtype), theta_dot))
    return math.sqrt(max(theta_sq - inside, 0.0) / theta_sq), math.sqrt(theta_sq)


def predicted_noise(parameters: int, sigma: float, dp, weight_decay: float, steps: int) -> float:
    """The norm of the noise DP-SGD leaves in the weights after ``steps`` (Gaussian, decayed by weight decay)."""
    per_step = (dp.lr * sigma * dp.max_grad_norm / dp.batch_size) ** 2
    shrink = (1 - dp.lr * weight_decay) ** 2
    variance = per_step * steps if shrink == 1 else per_step * (1 - shrink**steps) / (1 - shrink)
    return math.sqrt(parameters * variance)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sigmas", type=float, nargs="+", default=SIGMAS)
    parser.add_argument("--epochs", type=int, default=600)
    parser.add_argument("--attack", action="store_true", help="attack every victim too")
    args = parser.parse_args()
    records = []
    print(record.header(COLUMNS), flush=True)
    device = torch.device("cpu")
    with fresh_victim_cache():
        for sigma in args.sigmas:
            start = time.perf_counter()
            dp = {"noise_multiplier": sigma, "batch_size": 25, "epochs": args.epochs, "lr": 0.5, "max_grad_norm": 1.0}
            defense = {"name": f"sigma-{sigma}", "kind": "dp_sgd", "dp": dp}
            overrides = {"seed": args.seed, "device": "cpu", "defenses": [defense]}
            scenario, data, model, victim = scenario_victim("mnist_dp", overrides)
            x, y = (torch.as_tensor(a, dtype=torch.float64) for a in (data.train_x, data.train_y))
            outside, norm = outside_span(model, x, y)
            training = victim.training
            parameters = sum(p.numel() for p in model.parameters())
            wd, dp_settings = scenario.victim.training.weight_decay, scenario.defenses[0].dp
            found = {"sigma": sigma, "seed": args.seed, "epsilon": training.privacy.epsilon,
                     "train_accuracy": training.train_accuracy, "test_accuracy": training.test_accuracy,
                     "outside_span": outside, "weight_norm": norm,
                     "predicted_noise": predicted_noise(parameters, sigma, dp_settings, wd, training.privacy.steps),
                     "identified": None, "nonmembers_identified": None, "verdict": None}  # fmt: skip
            found["victim_kkt_residual"] = kkt_residual(extract_layers(model), x, y)[0]
            if args.attack:
                auditor = Auditor(KKTAttack(scenario.attack), device=device, dtype=scenario.dtype, seed=args.seed)
                summary = auditor.audit(model, data, victim=victim).summary()
                found.update({key: summary.metric(key) for key in ("identified", "nonmembers_identified", "verdict")})
            found["seconds"] = time.perf_counter() - start
            records.append(found)
            print(record.row(found, COLUMNS), flush=True)
    command = "python benchmarks/dp_noise.py " + " ".join(
        [f"--seed {args.seed}", f"--epochs {args.epochs}", "--sigmas", *map(str, args.sigmas)]
        + (["--attack"] if args.attack else [])
    )
    record.write(f"dp_noise_seed{args.seed}", command, records, COLUMNS, "(2-core CPU, float32, n = 100)")


if __name__ == "__main__":
    main()
