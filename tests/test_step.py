"""The compiled attack step (``attack.compile``) on the CPU fallback: the same search as the eager one, and refused
in one line where the closed-form kernel does not run. On a GPU the same path replays CUDA graphs
(benchmarks/kernel.py --device cuda measures it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import knowledge
from torch import nn

from auditkit import AttackerKnowledge, KKTAttack, UnsupportedModelError
from auditkit.attacks.kkt.kernel import as_objective, extract_layers
from auditkit.attacks.kkt.step import losses_function, step_losses


def test_the_compiled_search_follows_the_eager_one(small_victim):
    """Two restarts (one early-stopped: the compiled step sees a new batch size) of 30 steps, float64: the same
    candidates, multipliers and residuals, to rounding."""
    model, data = small_victim
    settings = {"steps": 30, "restarts": 2, "early_stop_step": 10, "log_every": 10}
    eager, compiled = (
        KKTAttack(**settings, compile=flag).run(extract_layers(model), knowledge(data), seed=0, dtype=torch.float64)
        for flag in (False, True)
    )
    np.testing.assert_allclose(compiled.candidates, eager.candidates, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(compiled.lambdas, eager.lambdas, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(compiled.facts.relative_residual, eager.facts.relative_residual, rtol=1e-7)
    assert compiled.facts.early_stopped_restarts == eager.facts.early_stopped_restarts != []


def test_the_eager_step_is_the_plain_function():
    layers = extract_layers(nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 1, bias=False)))
    assert losses_function(False, as_objective(layers), "cpu") is step_losses


def test_compiling_the_step_of_a_network_other_than_an_mlp_is_refused_in_one_line():
    network = nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)), nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(1352, 1)
    )
    attack = KKTAttack(steps=2, restarts=1, compile=True)
    lower, upper = np.zeros(784), np.ones(784)
    with pytest.raises(UnsupportedModelError, match="attack.compile"):
        attack.run(network.double(), AttackerKnowledge(4, lower, upper), dtype=torch.float64)
