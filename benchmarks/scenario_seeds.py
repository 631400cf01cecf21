"""Attack quality and wall time of a scenario over several seeds (victim training included).

    python benchmarks/scenario_seeds.py mnist_quick --seeds 0 1 2
    python benchmarks/scenario_seeds.py mnist_quick --set dtype=float64 --tag float64

Prints a table and writes benchmarks/results/<scenario>[_<tag>]_seeds.{json,md}, the command at the top.
Records of seeds this run does not repeat are kept (with their own command), so seeds can be added
later. ``--set KEY=VALUE`` overrides a scenario field (dotted keys, YAML values). The victim cache is
bypassed (a temporary one) so every wall time includes training, unless ``--cache DIR`` names one to share
between runs that compare attacks on the same victims (train_seconds then is the cached victim's).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import record

from auditkit import load_scenario, run_scenario
from auditkit.config.overrides import deep_merge, parse_settings
from auditkit.progress import Progress

SUMMARY = [  # read from each result's summary (its fields, or its attack's premise numbers)
    "n",
    "identified",
    "identified_fraction",
    "nonmembers_identified",
    "confirmed",
    "auc",
    "tpr_at_0_1pct_fpr",
    "ssim_above_threshold",
    "baseline_ssim_above_threshold",
    "median_ssim",
    "median_cosine",
    "victim_kkt_residual",
]
COLUMNS = [
    "seed",
    "victim",
    *SUMMARY,
    "test_accuracy",
    "epsilon",
    "epsilon_lower",
    "verdict",
    "bound_identified",
    "bound_ssim",
    "train_seconds",
    "attack_seconds",
    "wall_seconds",
    "identified_by_margin_fifth",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", help="a scenario file or a built-in scenario's name")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default=None)
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--cache", default=None, help="a victim cache to share between runs (default: a fresh one)")
    args = parser.parse_args()
    settings = parse_settings(args.settings)
    command = record.command_line()
    records = []
    print(record.header(COLUMNS), flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["AUDITKIT_CACHE"] = args.cache or str(Path(scratch) / "cache")
        for seed in args.seeds:
            overrides = deep_merge(settings, {"seed": seed, **({"device": args.device} if args.device else {})})
            scenario = load_scenario(args.scenario, overrides)
            start = time.perf_counter()
            run = run_scenario(scenario, Path(scratch) / f"seed{seed}", progress=Progress(enabled=False))
            wall = time.perf_counter() - start
            for result in run.victims:
                summary, training = result.summary(), result.victim.training
                found = {
                    "scenario": scenario.name,
                    "seed": seed,
                    "victim": result.name,
                    "device": run.facts.device,
                    "dtype": run.facts.dtype,
                    "settings": settings,
                    **{k: summary.metric(k) for k in SUMMARY},
                    "test_accuracy": training.test_accuracy,
                    "epsilon": training.privacy.epsilon if training.privacy else None,
                    "epsilon_lower": summary.epsilon_lower,
                    "verdict": summary.verdict,
                    "bound_identified": result.bounds.identified.bound if result.bounds else None,
                    "bound_ssim": result.bounds.ssim.bound if result.bounds else None,
                    "train_seconds": training.seconds,
                    "attack_seconds": result.attack.seconds,
                    "wall_seconds": wall,
                    "identified_by_margin_fifth": by_margin_fifth(result.frame),
                    "command": command,
                }
                records.append(found)
                print(record.row(found, COLUMNS), flush=True)
    name = load_scenario(args.scenario).name + (f"_{args.tag}" if args.tag else "") + "_seeds"
    records = sorted(_kept(name, args.seeds) + records, key=lambda r: r["seed"])
    commands = dict.fromkeys(r.get("command", "(command not recorded)") for r in records)
    device = records[0]["device"] if records else "?"
    record.write(name, "`, `".join(commands), records, COLUMNS, note=f"({device})")


def by_margin_fifth(frame) -> str:
    """Identified in each fifth of the training samples by normalised margin, smallest first ("20/19/12/9/3"):
    the KKT multipliers fall with the margin, so this is where in the sum the attack reaches."""
    fifths = pd.qcut(frame["normalized_margin"].rank(method="first"), 5, labels=False)
    return "/".join(str(int(n)) for n in frame["identified"].groupby(fifths).sum())


def _kept(name: str, seeds: list[int]) -> list[dict]:
    """The records of an earlier run of this table whose seeds this run does not repeat."""
    path = record.RESULTS / f"{name}.json"
    earlier = json.loads(path.read_text()) if path.exists() else []
    return [r for r in earlier if r["seed"] not in seeds]


if __name__ == "__main__":
    main()
