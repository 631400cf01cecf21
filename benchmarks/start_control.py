"""The start control's reading and cost: the attack started at the training samples and at as many non-members.

    python benchmarks/start_control.py --scenarios mnist_quick mnist_cnn --user-cnn --steps 250 500 1000

For every victim of each scenario (seed 0, CPU, from the victim cache) and for a user's small CNN (Conv2d,
ReLU, max pooling, Linear; ~19k parameters, trained by a plain Adam loop to zero training error on the
default's 50 digits), the control of the scenario's attack at each number of steps: training samples and
non-members kept (their run's candidate still nearest to its start among members and non-members), the
test, the reading, the median NCC distance moved, and the seconds both runs took. Writes
benchmarks/results/start_control.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import record
import torch
from torch import nn
from victim import scenario_victim

from auditkit import Auditor, load_scenario
from auditkit.attacks.kkt.control import run_start_control
from auditkit.attacks.registry import build_attack
from auditkit.auditing.inputs import flat_input
from auditkit.data.datasets import load_data
from auditkit.progress import Progress
from auditkit.running.jobs import obtain_victim, plan_victims
from auditkit.running.victims import untrained_victim

COLUMNS = ["victim", "steps", "members_kept", "nonmembers_kept", "p_value", "reading", "tolerance", "moved", "seconds"]


class UserCNN(nn.Module):
    """A pipeline's small CNN: one convolution, pooling, two Linear layers (~19k parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 5, stride=2)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 6 * 6, 32)
        self.out = nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.relu(self.conv(x)))
        return self.out(torch.relu(self.fc1(h.flatten(1))))


def user_cnn(data, seed: int) -> nn.Module:
    """The user's CNN trained by a plain loop (Adam, BCE on the logits) to zero training error, then on."""
    torch.manual_seed(seed)
    model = UserCNN().double()
    x = torch.as_tensor(data.train_x, dtype=torch.float64).reshape(-1, 1, 28, 28)
    y = torch.as_tensor(data.train_y, dtype=torch.float64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2000):
        optimizer.zero_grad()
        loss = nn.functional.softplus(-y * model(x)[:, 0]).mean()
        loss.backward()
        optimizer.step()
    return flat_input(model.eval(), (1, 28, 28))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="*", default=["mnist_quick", "mnist_cnn"])
    parser.add_argument("--user-cnn", action="store_true", help="also a user's small CNN on mnist_quick's data")
    parser.add_argument("--steps", type=int, nargs="+", default=[250, 1000, 2000])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("AUDITKIT_CACHE", "/tmp/auditkit_bench_cache")
    victims = []
    for name in args.scenarios:
        scenario = load_scenario(name, {"seed": args.seed, "device": "cpu"})
        data = load_data(scenario.data, scenario.seed)
        for job in plan_victims(scenario):
            model, _ = obtain_victim(job.scenario, job.defense, data, torch.device("cpu"), Progress(False), job.plan)
            victims.append((f"{name}/{job.name}", job.scenario, data, model))
    if args.user_cnn:
        scenario, data, _, _ = scenario_victim("mnist_quick", {"seed": args.seed, "device": "cpu"})
        victims.append(("user_cnn", load_scenario("mnist_cnn", {"seed": args.seed}), data, user_cnn(data, args.seed)))
    records = []
    print(record.header(COLUMNS), flush=True)
    for name, scenario, data, model in victims:
        attack = build_attack(scenario.attack)
        initial = untrained_victim(scenario, data) if attack.needs_initial else None
        knowledge = dataclasses.replace(Auditor(seed=args.seed).knowledge(data), initial=initial)
        train = tuple(torch.as_tensor(a, dtype=torch.float64) for a in (data.train_x, data.train_y))
        for steps in args.steps:
            control = run_start_control(
                attack, model, knowledge, train, data.pool_x, seed=args.seed, device="cpu",
                dtype=scenario.dtype, steps=steps,
            )  # fmt: skip
            found = {"victim": name, "steps": steps, "members_kept": f"{control.members_kept}/{control.members}",
                     "nonmembers_kept": f"{control.nonmembers_kept}/{control.nonmembers}",
                     "p_value": control.p_value, "reading": control.reading,
                     "moved": f"{control.members_moved:.3f}/{control.nonmembers_moved:.3f}",
                     "tolerance": control.tolerance,
                     "seconds": control.seconds}  # fmt: skip
            records.append(found)
            print(record.row(found, COLUMNS), flush=True)
    record.write("start_control", record.command_line(), records, COLUMNS, f"(cpu, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
