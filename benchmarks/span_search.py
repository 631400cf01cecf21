"""Which search rebuilds training images inside the first layer's row space, at n = 50, 100 and 500.

    python benchmarks/span_search.py --scenarios mnist_quick mnist_quick_100 mnist_paper_cpu --seconds 60 60 120

For seed 0 of each scenario (victim from the cache, trained when missing) the first layer's row space is read
as the span attack reads it, then each search runs for its time budget on the same public templates (the
first non-members): ``template LP`` (the span attack's: minimise ``(1 - 2 t) . x`` over the row space within
the pixel box), ``pixel-sum LP`` (the first probe's: fix a pixel bright in public images at 1, minimise the
ink), ``alternating projections`` (project onto the row space, clip to the box, zero every pixel under
0.05; 1,000 rounds for the templates at once), ``support LP`` (the template LP with every pixel more than two
pixels from the template's ink fixed at 0). Each row: programs (or templates) run, training images rebuilt
(within 0.05 of every pixel of one), seconds. None reads the training set; the count does (the auditor's).
Writes benchmarks/results/span_search.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import record
import torch
from scipy.optimize import linprog
from victim import scenario_victim

from auditkit import SpanAttack
from auditkit.attacks.span.rebuild import rebuild_inputs, template_costs
from auditkit.attacks.span.spectrum import read_span

COLUMNS = ["victim", "n", "dimension", "search", "programs", "rebuilt", "seconds"]
CLOSE = 0.05
SPARSE = 0.05  # alternating projections: pixels under this are set to 0 each round
ROUNDS = 1000


def rebuilt(found: np.ndarray, train: np.ndarray) -> int:
    """Training images within CLOSE of every pixel of some found input."""
    hits = set()
    for vertex in found:
        errors = np.abs(train - vertex).max(1)
        if errors.min() <= CLOSE:
            hits.add(int(errors.argmin()))
    return len(hits)


def template_lp(basis, lower, upper, templates, budget):
    started, found = time.perf_counter(), []
    for cost in template_costs(templates, lower, upper, len(templates), 0):
        if time.perf_counter() - started > budget:
            break
        found.extend(rebuild_inputs(basis, lower, upper, cost[None], SpanAttack().config.box_slack))
    return np.array(found), len(found)


def pixel_sum_lp(basis, lower, upper, templates, budget):
    columns, slack = basis.T, SpanAttack().config.box_slack
    bright = np.where((templates - lower).max(0) > 0.99 * (upper - lower).max())[0]
    rng, started, found, runs = np.random.default_rng(0), time.perf_counter(), [], 0
    while time.perf_counter() - started < budget:
        pixel = rng.choice(bright)
        solution = linprog(
            columns.sum(0), A_ub=np.vstack([columns, -columns]), b_ub=np.concatenate([upper, -lower]) + slack,
            A_eq=columns[pixel][None], b_eq=[upper[pixel]], bounds=[(None, None)] * len(basis), method="highs",
        )  # fmt: skip
        runs += 1
        if solution.status == 0:
            found.append(columns @ solution.x)
    return np.array(found), runs


def alternating_projections(basis, lower, upper, templates, budget):
    inputs = templates.copy()
    for _ in range(ROUNDS):
        inputs = np.clip((inputs @ basis.T) @ basis, lower, upper)
        inputs[inputs - lower < SPARSE] = lower[np.nonzero(inputs - lower < SPARSE)[1]]
    return (inputs @ basis.T) @ basis, len(templates)


def support_lp(basis, lower, upper, templates, budget):
    from scipy.ndimage import binary_dilation

    side = int(round(np.sqrt(templates.shape[1])))
    near = np.ones((5, 5), bool)
    started, found, runs = time.perf_counter(), [], 0
    slack = SpanAttack().config.box_slack
    for template in templates:
        if time.perf_counter() - started > budget:
            break
        inked = binary_dilation((template - lower > 0.1).reshape(side, side), structure=near).reshape(-1)
        top = np.where(inked, upper, lower)
        found.extend(rebuild_inputs(basis, lower, top, template_costs(template[None], lower, upper, 1, 0), slack))
        runs += 1
    return np.array(found), runs


SEARCHES = {
    "template LP": template_lp,
    "pixel-sum LP": pixel_sum_lp,
    "alternating projections": alternating_projections,
    "support LP": support_lp,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=["mnist_quick", "mnist_quick_100", "mnist_paper_cpu"])
    parser.add_argument("--seconds", type=float, nargs="+", default=[60, 60, 120], help="a budget per scenario")
    parser.add_argument("--templates", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("AUDITKIT_CACHE", "/tmp/auditkit_bench_cache")
    records = []
    print(record.header(COLUMNS), flush=True)
    for name, budget in zip(args.scenarios, args.seconds, strict=True):
        _, data, model, _ = scenario_victim(name, {"device": "cpu"})
        n, first = len(data.train_x), next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
        span, basis = read_span("first", first.weight, None, n, SpanAttack().config.max_tail)
        templates, train = data.pool_x[: args.templates], data.train_x
        for search, run in SEARCHES.items():
            started = time.perf_counter()
            found, programs = run(basis, data.lower, data.upper, templates, budget)
            seconds = time.perf_counter() - started
            found = {"victim": name, "n": n, "dimension": span.dimension, "search": search, "programs": programs,
                     "rebuilt": rebuilt(found, train), "seconds": seconds}  # fmt: skip
            records.append(found)
            print(record.row(found, COLUMNS), flush=True)
    note = f"(cpu, {torch.get_num_threads()} threads; seed 0; budgets {args.seconds} s)"
    record.write("span_search", record.command_line(), records, COLUMNS, note)


if __name__ == "__main__":
    main()
