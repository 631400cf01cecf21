"""The span attack on the shipped scenarios' victims: each layer's row space, membership, rebuilt images.

    python benchmarks/span.py --scenarios mnist_quick --seeds 0 1 2
    python benchmarks/span.py --scenarios mnist_dp mnist10_quick mnist_cnn mnist_quick_biased --seeds 0
    python benchmarks/span.py --scenarios mnist_paper_cpu --seeds 0 --programs 600
    python benchmarks/span.py --raw --seeds 0 1 2

Every victim of each scenario and seed (from the victim cache, trained when missing; CPU) audited by the span
attack through the Python API, as ``auditkit run`` does beside the KKT attack: the layer read (its rank at the
spectral gap, the gap, the tail beyond n), the membership test against every non-member (ROC AUC, TPR at 0.1 %
and 1 % FPR with thresholds from the non-members alone, members and non-members confirmed below the attacker's
threshold), the training samples off the row space read (the auditor's check), the training
images rebuilt (identified and within 0.05 of every pixel, or SSIM >= 0.9) by
``--programs`` linear programs, the seconds of the attack and of the whole audit; for a DP-SGD victim its
epsilon and the hypothesis-testing bound at 0.1 % FPR, TPR <= e^epsilon 0.001 + delta. ``--raw``: the
default's data and recipe (784-500-500-1, GD lr 0.3, weight decay 1e-2, 6,000 epochs) on raw [0, 1] pixels.
``--every-layer``: also the membership test on every readable layer, not only the first (the attack reads the
first): a row per layer in span_layers_TAG. Writes benchmarks/results/span_TAG.{json,md} (TAG: --tag, by
default the scenarios' names or 'raw').
"""

from __future__ import annotations

import argparse
import math
import os
import time

import record
import torch

from auditkit import Auditor, SpanAttack, load_scenario
from auditkit.attacks.span.residual import layer_inputs, span_residuals
from auditkit.attacks.span.spectrum import read_span
from auditkit.data.datasets import load_data
from auditkit.progress import Progress
from auditkit.running.jobs import obtain_victim, plan_victims
from auditkit.scoring.roc import DistanceROC
from auditkit.victims.models import build_mlp
from auditkit.victims.training import train_mlp

COLUMNS = ["victim", "seed", "layer", "span_rank", "span_gap", "span_tail", "auc", "tpr_at_0_1pct_fpr",
           "tpr_at_1pct_fpr", "confirmed", "nonmembers_identified", "members_outside", "rebuilt", "n", "epsilon",
           "dp_tpr_bound",
           "verdict", "attack_seconds", "seconds"]  # fmt: skip
LAYER_COLUMNS = ["victim", "seed", "layer", "inputs", "outputs", "rank", "tail", "reason", "auc", "tpr_at_0_1pct_fpr"]
LOW_FPR = 0.001


def every_layer(name: str, seed: int, model, inputs: tuple, result) -> list[dict]:
    """The membership test on each dense layer of ``model`` that the attack could read (rows for the others too);
    ``inputs``: the members' and the non-members' as the model reads them."""
    rows, modules = [], dict(model.named_modules())
    for layer in result.attack.layers:
        row = {"victim": name, "seed": seed, "layer": layer["name"], **layer}
        if not layer["reason"]:
            _, basis = read_span(layer["name"], modules[layer["name"]].weight, None, len(inputs[0]), 1.0)
            members, others = (
                span_residuals(layer_inputs(model, modules[layer["name"]], x, "cpu", torch.float32), basis)
                for x in inputs
            )
            row |= DistanceROC.of(members, others).to_dict()
        rows.append(row)
    return rows


def scenario_victims(names: list[str], seed: int):
    """(name, model, data, victim facts) of every victim of the scenarios at ``seed``, from the cache or trained."""
    for name in names:
        scenario = load_scenario(name, {"seed": seed, "device": "cpu"})
        data = load_data(scenario.data, scenario.seed)
        for job in plan_victims(scenario):
            if job.name != job.victim:
                continue  # the attacks beside the scenario's read the same victim
            model, facts = obtain_victim(
                job.scenario, job.defense, data, torch.device("cpu"), Progress(False), job.plan
            )
            yield f"{name}/{job.name}", model, data, facts


def raw_victim(seed: int):
    """The default's data and recipe on raw [0, 1] pixels (the audit reads the same pixels)."""
    scenario = load_scenario("mnist_quick", {"seed": seed, "device": "cpu"})
    data = load_data(scenario.data, seed)
    raw = data.train_x + data.mean
    model = build_mlp(raw.shape[1], [500, 500], "none", seed=seed)
    x, y = torch.as_tensor(raw, dtype=torch.float32), torch.as_tensor(data.train_y, dtype=torch.float32)
    train_mlp(model, x, y, lr=0.3, epochs=6000, weight_decay=1e-2)
    return "raw pixels (mnist_quick data)", model, data, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="*", default=[])
    parser.add_argument("--raw", action="store_true", help="a raw-pixel victim of the default's data and recipe")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--programs", type=int, default=SpanAttack().config.programs)
    parser.add_argument("--tag", default="")
    parser.add_argument("--every-layer", action="store_true", help="the membership test on every readable layer")
    args = parser.parse_args()
    os.environ.setdefault("AUDITKIT_CACHE", "/tmp/auditkit_bench_cache")
    records, layers = [], []
    print(record.header(COLUMNS), flush=True)
    for seed in args.seeds:
        victims = [raw_victim(seed)] if args.raw else scenario_victims(args.scenarios, seed)
        for name, model, data, facts in victims:
            started = time.perf_counter()
            auditor = Auditor(SpanAttack(programs=args.programs), device="cpu", seed=seed)
            if facts is None:  # raw pixels: the model reads pixels, the audit is told there is no mean
                pixels = data.train_x + data.mean, data.train_y
                result = auditor.audit(model, train=pixels, nonmembers=data.pool_x + data.mean)
            else:
                result = auditor.audit(model, data, victim=facts)
            summary = result.summary()
            privacy = result.privacy
            epsilon = (math.inf if privacy.epsilon is None else privacy.epsilon) if privacy else math.nan
            bound = min(1.0, math.exp(min(epsilon, 700)) * LOW_FPR + privacy.delta) if privacy else math.nan
            found = {"victim": name, "seed": seed, "layer": result.attack.layer, **summary.to_dict(),
                     "members_outside": result.attack.members_outside,
                     "epsilon": epsilon, "dp_tpr_bound": bound, "attack_seconds": result.attack.seconds,
                     "seconds": time.perf_counter() - started}  # fmt: skip
            records.append(found)
            print(record.row(found, COLUMNS), flush=True)
            if args.every_layer:
                shift = data.mean if facts is None else 0.0  # the raw-pixel victim reads pixels
                layers += every_layer(name, seed, model.float(), (data.train_x + shift, data.pool_x + shift), result)
    tag = args.tag or ("raw" if args.raw else "_".join(args.scenarios))
    note = f"(cpu, {torch.get_num_threads()} threads, float32; {args.programs} programs)"
    record.write(f"span_{tag}", record.command_line(), records, COLUMNS, note)
    if layers:
        record.write(f"span_layers_{tag}", record.command_line(), layers, LAYER_COLUMNS, note)


if __name__ == "__main__":
    main()
