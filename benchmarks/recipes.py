"""Which of your models this audit can speak about: the same data trained by the recipes people use.

    python benchmarks/recipes.py --seed 0 --attacks kkt owner
    python benchmarks/recipes.py --seed 0 --attacks kkt owner --arch cnn --kkt-steps 0 --owner-steps 0
    python benchmarks/recipes.py --seed 0 --attacks span --all --programs 200
    python benchmarks/recipes.py --seed 0 --attacks span --only Adam "AdamW wd 1e-2" --record-every 10 50 250 500


50 MNIST parity digits, 784-500-500-1 bias-free, trained by a plain PyTorch loop (as a user would:
labels 0/1, BCE with logits) with full-batch GD, minibatch SGD with momentum at several weight decays,
Adam and AdamW, at a practitioner's length and a long one, on centred inputs and on raw [0, 1] pixels;
each audited through the Python API with 2,000 held-out non-members by each attack named: the KKT
attack's measured recipe (one restart, 8,000 steps: the default sweep without its three random restarts, to
fit a CPU budget) and the owner's attack (given the initial weights; one restart, --owner-steps steps).
The practitioner's recipes by default, every one with --all. ``--arch cnn``: mnist_cnn's network instead
(conv 16 x 5x5 stride 2, then 500 units, bias-free); ``--kkt-steps 0 --owner-steps 0`` measures the premise
alone (the victims' residuals at their training set, no search). ``span``: the span attack without the
initial weights, with them (``span+W0``), and for Adam-type recipes with them and the first layer's update
multiplied by the final preconditioner ``sqrt(exp_avg_sq) + eps`` (``span+W0+v``: Adam's per-coordinate
rescaling undone as of the last step), ``--programs`` linear programs each; its own columns; with
``--record-every K ...``, Adam-type recipes trained again with a training recorder taking a snapshot every K
steps and audited with the record (``span+record/K``: the rescaling undone interval by interval). Writes
benchmarks/results/recipes_seedS[_cnn|_span|_span_record].{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import record
import torch
import torch.nn.functional as F

from auditkit import Auditor
from auditkit.attacks.registry import build_attack
from auditkit.data.mnist import load_mnist_images
from auditkit.data.tasks import PARITY, binary_task
from auditkit.recording import TrainingRecorder
from auditkit.victims.models import ConvLayer, build_cnn, build_mlp

# name, optimizer, lr, weight decay, batch size (0: full batch), epochs, centred inputs
RECIPES = [
    ("GD wd 1e-2 (auditkit default)", "sgd", 0.3, 1e-2, 0, 6000, True),
    ("SGD+m wd 0", "sgd_momentum", 0.01, 0.0, 10, 300, True),
    ("SGD+m wd 0, long", "sgd_momentum", 0.01, 0.0, 10, 1500, True),
    ("SGD+m wd 5e-4", "sgd_momentum", 0.01, 5e-4, 10, 300, True),
    ("SGD+m wd 5e-4, long", "sgd_momentum", 0.01, 5e-4, 10, 1500, True),
    ("SGD+m wd 1e-3", "sgd_momentum", 0.01, 1e-3, 10, 300, True),
    ("SGD+m wd 1e-2", "sgd_momentum", 0.01, 1e-2, 10, 300, True),
    ("SGD+m wd 1e-2, long", "sgd_momentum", 0.01, 1e-2, 10, 1500, True),
    ("SGD wd 0", "sgd", 0.01, 0.0, 10, 300, True),
    ("Adam", "adam", 1e-3, 0.0, 10, 300, True),
    ("AdamW wd 1e-2", "adamw", 1e-3, 1e-2, 10, 300, True),
    ("AdamW wd 1e-2, long", "adamw", 1e-3, 1e-2, 10, 1500, True),
    ("GD wd 1e-2, raw pixels", "sgd", 0.3, 1e-2, 0, 6000, False),
    ("SGD+m wd 1e-2, raw pixels", "sgd_momentum", 0.01, 1e-2, 10, 300, False),
]
ORDINARY = ("GD wd 1e-2 (auditkit default)", "SGD+m wd 0", "SGD+m wd 5e-4", "SGD+m wd 1e-3", "SGD+m wd 1e-2",
            "SGD wd 0", "Adam", "AdamW wd 1e-2")  # fmt: skip
SPAN_COLUMNS = ["recipe", "train_accuracy", "attack", "span_rank", "span_tail", "auc", "tpr_at_0_1pct_fpr",
                "tpr_at_1pct_fpr", "confirmed", "nonmembers_identified", "rebuilt", "verdict", "seconds"]  # fmt: skip
COLUMNS = ["recipe", "steps", "train_accuracy", "test_accuracy", "attack", "premise_residual", "attack_residual",
           "convergence", "identified", "nonmembers_identified", "fpr", "p_value", "verdict", "seconds"]  # fmt: skip


def optimizer_for(kind: str, parameters, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(parameters, lr=lr, weight_decay=weight_decay)
    if kind == "sgd_momentum":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if kind == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)


def train(
    model, x, y01, kind, lr, weight_decay, batch, epochs, seed, record_to=None
) -> tuple[int, torch.optim.Optimizer]:
    """The user's own loop; returns the number of optimizer steps and the optimizer (its state). ``record_to``:
    (folder, every): a training recorder attached (the loop unchanged), closed at the end."""
    optimizer = optimizer_for(kind, model.parameters(), lr, weight_decay)
    recorder = None if record_to is None else TrainingRecorder(model, optimizer, record_to[0], every=record_to[1])
    generator = torch.Generator().manual_seed(seed)
    steps = 0
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator) if batch else torch.arange(len(x))
        for start in range(0, len(x), batch or len(x)):
            index = order[start : start + (batch or len(x))]
            optimizer.zero_grad()
            F.binary_cross_entropy_with_logits(model(x[index]).squeeze(-1), y01[index]).backward()
            optimizer.step()
            steps += 1
    if recorder is not None:
        recorder.close()
    return steps, optimizer


def preconditioned(model, initial, optimizer):
    """The model with its first layer's update multiplied by Adam's final ``sqrt(exp_avg_sq) + eps`` (a copy)."""
    rescaled = copy.deepcopy(model)
    first, start = rescaled[0].weight, initial[0].weight
    state = optimizer.state[model[0].weight]
    scale = state["exp_avg_sq"].sqrt() + optimizer.defaults["eps"]
    with torch.no_grad():
        first.copy_(start + (first - start) * scale / scale.mean())
    return rescaled


def span_variants(model, initial, optimizer, kind: str) -> list[tuple[str, torch.nn.Module, torch.nn.Module | None]]:
    """(label, model, init) of each span reading: without the initial weights, with them, Adam's undone."""
    variants = [("span", model, None), ("span+W0", model, initial)]
    if kind in ("adam", "adamw"):
        variants.append(("span+W0+v", preconditioned(model, initial, optimizer), initial))
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attacks", nargs="+", choices=["kkt", "owner", "span"], default=["kkt"])
    parser.add_argument("--owner-steps", type=int, default=2000)
    parser.add_argument("--kkt-steps", type=int, default=8000)
    parser.add_argument("--arch", choices=["mlp", "cnn"], default="mlp", help="cnn: mnist_cnn's network")
    parser.add_argument("--all", action="store_true", help="every recipe, not only the practitioner's")
    parser.add_argument("--programs", type=int, default=200, help="the span attack's linear programs")
    parser.add_argument(
        "--record-every", type=int, nargs="*", default=[], help="span: Adam-type recipes also trained and recorded"
    )
    parser.add_argument("--only", nargs="*", default=None, help="these recipes alone (names as in the table)")
    args = parser.parse_args()
    images, digits = load_mnist_images()
    data = binary_task(images, digits, *PARITY, 25, 250, args.seed, (28, 28), "mnist")
    y01 = torch.as_tensor((data.train_y > 0).astype(np.float32))
    records = []
    print(record.header(SPAN_COLUMNS if args.attacks == ["span"] else COLUMNS), flush=True)
    for name, kind, lr, weight_decay, batch, epochs, centred in RECIPES:
        if not (args.all or name in ORDINARY) or (args.only is not None and name not in args.only):
            continue
        trained = time.perf_counter()
        shift = 0.0 if centred else data.mean
        x, test_x, pool = (torch.as_tensor(a + shift, dtype=torch.float32) for a in (data.train_x, data.test_x,
                                                                                      data.pool_x[:2000]))  # fmt: skip
        if args.arch == "cnn":
            model = build_cnn((1, 28, 28), [ConvLayer(16, 5, 2)], [500], "none", seed=args.seed)
        else:
            model = build_mlp(784, [500, 500], "none", seed=args.seed)
        initial = copy.deepcopy(model)
        steps, optimizer = train(model, x, y01, kind, lr, weight_decay, batch, epochs, args.seed)
        trained = time.perf_counter() - trained
        with torch.no_grad():
            test_accuracy = float((torch.sign(model(test_x).squeeze(-1)).numpy() == data.test_y).mean())
        for attack in args.attacks:
            if attack == "span":
                for label, victim, init in span_variants(model, initial, optimizer, kind):
                    start = time.perf_counter()
                    span = build_attack({"name": "span", "programs": args.programs})
                    result = Auditor(span, seed=args.seed).audit(
                        victim, train=(x, y01), nonmembers=pool, mean=data.mean if centred else None, init=init
                    )
                    summary = result.summary()
                    found = {"recipe": name, "seed": args.seed, **summary.to_dict(), "attack": label,
                             "seconds": time.perf_counter() - start}  # fmt: skip
                    records.append(found)
                    print(record.row(found, SPAN_COLUMNS), flush=True)
                for every in args.record_every if kind in ("adam", "adamw") else ():
                    start, folder = time.perf_counter(), Path(tempfile.mkdtemp()) / "record"
                    twin = build_mlp(784, [500, 500], "none", seed=args.seed)  # the same training, recorded
                    train(twin, x, y01, kind, lr, weight_decay, batch, epochs, args.seed, (folder, every))
                    span = build_attack({"name": "span", "programs": args.programs})
                    result = Auditor(span, seed=args.seed).audit(
                        twin, train=(x, y01), nonmembers=pool, mean=data.mean if centred else None, record=folder
                    )
                    shutil.rmtree(folder.parent)
                    found = {"recipe": name, "seed": args.seed, **result.summary().to_dict(),
                             "attack": f"span+record/{every}", "seconds": time.perf_counter() - start}  # fmt: skip
                    records.append(found)
                    print(record.row(found, SPAN_COLUMNS), flush=True)
                continue
            start = time.perf_counter()
            steps_run = {"steps": args.owner_steps if attack == "owner" else args.kkt_steps}
            auditor = Auditor(
                build_attack({"name": attack, "restarts": 1, "search": "off", **steps_run}), seed=args.seed
            )
            init = initial if attack == "owner" else None
            result = auditor.audit(
                model, train=(x, y01), nonmembers=pool, mean=data.mean if centred else None, init=init
            )
            summary, key = result.summary(), result.attack.KEY
            found = {"recipe": name, "steps": steps, "test_accuracy": test_accuracy, "seed": args.seed,
                     "attack": attack, **{k: summary.metric(k) for k in COLUMNS if k in summary.to_dict()},
                     "premise_residual": summary.metric(f"victim_{key}_residual"),
                     "attack_residual": summary.metric(f"attack_{key}_residual"),
                     "convergence": summary.metric("attack_convergence"), "attack_steps": auditor.attack.steps,
                     "seconds": time.perf_counter() - start + trained}  # fmt: skip
            records.append(found)
            print(record.row(found, COLUMNS), flush=True)
    note = (f"(2-core CPU, float32; {args.arch}; n = 50, 2000 non-members; kkt: {args.kkt_steps} steps, owner: "
            f"{args.owner_steps} steps, one restart each; seconds: training and that attack)")  # fmt: skip
    suffix = "_cnn" if args.arch == "cnn" else ""
    if args.attacks == ["span"]:
        note = (f"(2-core CPU, float32; {args.arch}; n = 50, 2000 non-members; {args.programs} programs; seconds: the "
                "span attack's audit)")  # fmt: skip
        suffix, columns = suffix + ("_span_record" if args.record_every else "_span"), SPAN_COLUMNS
    else:
        columns = COLUMNS
    record.write(f"recipes_seed{args.seed}{suffix}", record.command_line(), records, columns, note)


if __name__ == "__main__":
    main()
