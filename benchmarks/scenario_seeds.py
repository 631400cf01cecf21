"""Attack quality and wall time of a scenario over several seeds (victim training included).

    python benchmarks/scenario_seeds.py mnist_quick --seeds 0 1 2
    python benchmarks/scenario_seeds.py mnist_quick --set dtype=float64 --tag float64

Prints a table and writes benchmarks/results/<scenario>[_<tag>]_seeds.{json,md}. ``--set KEY=VALUE``
overrides a scenario field (dotted keys, YAML values). The victim cache is bypassed (a temporary one)
so every wall time includes training.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from auditkit import load_scenario, run_scenario
from auditkit.progress import Progress
from auditkit.scenario import deep_merge, parse_settings

COLUMNS = [
    "seed",
    "victim",
    "n",
    "identified",
    "identified_fraction",
    "ssim_above_threshold",
    "baseline_ssim_above_threshold",
    "median_ssim",
    "victim_kkt_residual",
    "test_accuracy",
    "epsilon",
    "bound_identified",
    "bound_ssim",
    "train_seconds",
    "attack_seconds",
    "wall_seconds",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", help="a scenario file or a built-in scenario's name")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default=None)
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    args = parser.parse_args()
    settings = parse_settings(args.settings)
    records = []
    print("| " + " | ".join(COLUMNS) + " |\n" + "|---" * len(COLUMNS) + "|", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["AUDITKIT_CACHE"] = str(Path(scratch) / "cache")
        for seed in args.seeds:
            overrides = deep_merge(settings, {"seed": seed, **({"device": args.device} if args.device else {})})
            scenario = load_scenario(args.scenario, overrides)
            start = time.perf_counter()
            run = run_scenario(scenario, Path(scratch) / f"seed{seed}", progress=Progress(enabled=False))
            wall = time.perf_counter() - start
            for result in run.victims:
                summary, training = result.summary(), result.victim.training
                record = {
                    "scenario": scenario.name,
                    "seed": seed,
                    "victim": result.name,
                    "device": run.facts.device,
                    "dtype": run.facts.dtype,
                    "settings": settings,
                    **{k: getattr(summary, k) for k in COLUMNS[2:9]},
                    "test_accuracy": training.test_accuracy,
                    "epsilon": training.privacy.epsilon if training.privacy else None,
                    "bound_identified": result.bounds.identified.bound if result.bounds else None,
                    "bound_ssim": result.bounds.ssim.bound if result.bounds else None,
                    "train_seconds": training.seconds,
                    "attack_seconds": result.attack.seconds,
                    "wall_seconds": wall,
                }
                records.append(record)
                print("| " + " | ".join(_fmt(record[c]) for c in COLUMNS) + " |", flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    name = load_scenario(args.scenario).name + (f"_{args.tag}" if args.tag else "")
    (out / f"{name}_seeds.json").write_text(json.dumps(records, indent=2) + "\n")
    (out / f"{name}_seeds.md").write_text(markdown(records))


def markdown(records: list[dict]) -> str:
    """A markdown table of result records."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---" * len(COLUMNS) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in COLUMNS) + " |" for r in records]
    device = records[0]["device"] if records else "?"
    return f"{records[0]['scenario'] if records else ''} on {device}\n\n" + "\n".join(lines) + "\n"


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
