"""The steps ladder: how the attack's convergence and the verdict move with the attack's length.

    python benchmarks/convergence.py mnist_quick --seeds 0 1 2 --steps 20 50 100 300 1000 2000 4000 8000

Attacks each seed's victim of the scenario with the scenario's attack cut to each step count and records
what was identified beside the attack's KKT residual (its best restart's candidates, multipliers refitted)
against the victim's, its late loss fall, and the verdict with and without the attack's convergence judged
(the thresholds in auditkit/attacks/kkt/convergence.py come from these tables). ``--runs DIR`` keeps each audit there
and reuses it, so the table can be re-scored after a threshold changes without attacking again.
Writes benchmarks/results/convergence_<scenario>.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import record
from victim import scenario_victim

from auditkit import Auditor
from auditkit.attacks.kkt.attack import KKTAttack
from auditkit.attacks.kkt.convergence import measure
from auditkit.attacks.kkt.kernel import extract_layers
from auditkit.config.overrides import parse_settings
from auditkit.results.audit import AuditResult
from auditkit.scoring.verdict import judge

COLUMNS = [
    "seed",
    "steps",
    "identified",
    "n",
    "nonmembers_identified",
    "p_value",
    "victim_kkt_residual",
    "attack_kkt_residual",
    "ratio",
    "loss_fall",
    "attack_convergence",
    "verdict_victim_only",
    "verdict",
    "attack_seconds",
]


def audit(scenario_name: str, seed: int, steps: int, runs: Path, settings: dict, tag: str) -> AuditResult:
    """The audit of ``seed``'s victim with the attack cut to ``steps`` (reused from ``runs`` when there)."""
    folder = runs / f"{scenario_name}{tag}_seed{seed}_steps{steps}"
    scenario, data, model, victim = scenario_victim(scenario_name, {**settings, "seed": seed})
    if (folder / "result.json").is_file():  # re-measured with today's convergence check, from what was saved
        result = AuditResult.load(folder)
        evidence, victim_residual = result.evidence, result.attack.victim_residual
        inputs = result.candidates.reshape(len(result.candidates), -1) - data.mean
        found = inputs, evidence["candidate_labels"], evidence["candidate_restart"]
        history = evidence["loss_history"], evidence["history_steps"]
        own, bounds = result.attack.relative_residual, (data.lower, data.upper)
        convergence = measure(extract_layers(model), found, own, history, bounds, victim_residual, steps)
        result.attack = dataclasses.replace(result.attack, convergence=convergence)
        return result
    auditor = Auditor(KKTAttack(scenario.attack, steps=steps), device=scenario.device, dtype=scenario.dtype, seed=seed)
    result = auditor.audit(model, data, name=f"steps{steps}", victim=victim)
    result.save(folder)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", help="a scenario file or a built-in scenario's name")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 50, 100, 300, 1000, 2000, 4000, 8000])
    parser.add_argument("--runs", type=Path, help="keep (and reuse) each audit in this folder")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY.PATH=VALUE")
    parser.add_argument("--tag", default="", help="suffix of the result files (for --set variants)")
    args = parser.parse_args()
    settings, tag = parse_settings(args.settings), f"_{args.tag}" if args.tag else ""
    with tempfile.TemporaryDirectory() as scratch:
        runs = args.runs or Path(scratch)
        records = []
        print(record.header(COLUMNS), flush=True)
        for seed in args.seeds:
            for steps in args.steps:
                result = audit(args.scenario, seed, steps, runs, settings, tag)
                summary, convergence, test = result.summary(), result.attack.convergence, result.membership()
                victim_only = judge(result.attack.victim_concerns(result.train_accuracy, result.centred), test)
                found = {
                    "scenario": args.scenario,
                    "seed": seed,
                    "steps": steps,
                    "identified": summary.identified,
                    "n": summary.n,
                    "nonmembers_identified": summary.nonmembers_identified,
                    "p_value": summary.p_value,
                    "victim_kkt_residual": summary.premise["victim_kkt_residual"],
                    "attack_kkt_residual": summary.premise["attack_kkt_residual"],
                    "ratio": convergence.ratio,
                    "loss_fall": convergence.loss_fall,
                    "attack_convergence": summary.premise["attack_convergence"],
                    "verdict_victim_only": victim_only.level,
                    "verdict": summary.verdict,
                    "attack_seconds": result.attack.seconds,
                    "finding": summary.finding,
                }
                records.append(found)
                print(record.row(found, COLUMNS), flush=True)
    note = (
        "(the scenario's attack cut to each step count; ratio: the attack's KKT residual over the victim's; "
        "loss_fall: the fraction of the best restart's loss lost over the last fifth of its steps)"
    )
    record.write(f"convergence_{args.scenario}{tag}", record.command_line(), records, COLUMNS, note)


if __name__ == "__main__":
    main()
