"""The GPU path gives the CPU's answers: kernel, attack, DP training and a whole scenario run on CUDA.

Skipped where no CUDA GPU is present (CI); run on a GPU machine with ``pytest -q tests/test_cuda.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import knowledge

from auditkit import Auditor, KKTAttack, load_scenario, run_scenario
from auditkit.attacks.kkt.kernel import extract_layers, stationarity_loss
from auditkit.progress import Progress
from auditkit.victims.models import build_mlp

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TOY = Path(__file__).resolve().parents[1] / "scenarios" / "toy_colors.yaml"


@pytest.mark.parametrize("bias", ["none", "all"])
def test_kernel_on_cuda_equals_cpu(bias):
    model = build_mlp(30, [20, 10], bias, seed=0, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 30, dtype=torch.float64, generator=generator)
    lam = torch.rand(2, 8, dtype=torch.float64, generator=generator)
    labels = torch.tensor([1.0, -1] * 4, dtype=torch.float64)
    cpu = stationarity_loss(extract_layers(model), x, lam, labels, 40.0)[0]
    layers = extract_layers(model.to("cuda"))
    gpu = stationarity_loss(layers, x.cuda(), lam.cuda(), labels.cuda(), 40.0)[0]
    torch.testing.assert_close(gpu.cpu(), cpu)


def test_attack_on_cuda_identifies_what_cpu_does(small_victim):
    """float64, one seed: the two devices follow the same trajectory up to rounding."""
    model, data = small_victim
    attack = KKTAttack(steps=1500, restarts=2, search="off")
    cpu = Auditor(attack, device="cpu", dtype="float64").audit(model, data).summary()
    gpu = Auditor(attack, device="cuda", dtype="float64").audit(model, data).summary()
    assert gpu.identified >= 16  # measured: 20 of 20 on the 2-core CPU; the H200 passed within 2 of its CPU
    assert abs(gpu.identified - cpu.identified) <= 2


def test_compiled_search_on_cuda_follows_the_eager_one(small_victim):
    """``attack.compile`` on a GPU replays CUDA graphs (an early stop re-records at the new batch size): the
    same search as the eager one, float64, to rounding."""
    model, data = small_victim
    settings = {"steps": 60, "restarts": 4, "early_stop_step": 20, "log_every": 10}
    eager, compiled = (
        KKTAttack(**settings, compile=flag).run(
            extract_layers(model), knowledge(data), seed=0, device="cuda", dtype=torch.float64
        )
        for flag in (False, True)
    )
    torch.testing.assert_close(torch.as_tensor(compiled.candidates), torch.as_tensor(eager.candidates))
    assert compiled.facts.early_stopped_restarts == eager.facts.early_stopped_restarts


def test_scenario_with_dp_runs_on_cuda(tmp_path):
    """Training (plain and Opacus DP-SGD), attack, scoring and report, all on the GPU."""
    dp = {"preset": "dp_clip_only", "name": "dp_noise", "dp": {"noise_multiplier": 0.5, "epochs": 50, "batch_size": 5}}
    scenario = load_scenario(TOY, {"device": "cuda", "attack": {"steps": 300}, "defenses": ["none", dp]})
    run = run_scenario(scenario, tmp_path / "run", progress=Progress(enabled=False))
    assert run.facts.device.startswith("cuda"), run.facts.device
    assert {victim.name for victim in run.victims} == {"none", "dp_noise"}
    assert (tmp_path / "run" / "report.html").is_file()
