"""The compiled attack step (``attack.compile``) on the CPU fallback: the same search as the eager one, and refused
in one line where the closed-form kernel does not run. On a GPU the same path replays CUDA graphs
(benchmarks/kernel.py --device cuda measures it). The CPU step's restart chunks: the same search as one batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import knowledge
from torch import nn

from auditkit import KKTAttack, UnsupportedModelError
from auditkit.attacks import AttackerKnowledge
from auditkit.attacks.kkt import step
from auditkit.attacks.kkt.kernel import as_objective, extract_layers
from auditkit.attacks.kkt.step import losses_function, step_chunks, step_losses


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


def test_the_search_in_chunks_of_one_restart_follows_the_one_batch_search(small_victim, monkeypatch):
    """Three restarts (one early-stopped), float64: one restart a chunk, in the step and in the optimizer's update,
    gives the same candidates, multipliers and residuals as every restart in one pass, to rounding."""
    model, data = small_victim
    settings = {"steps": 30, "restarts": 3, "early_stop_step": 10, "log_every": 10}
    runs = []
    for chunk_bytes in (1, 2**62):
        monkeypatch.setattr(step, "CPU_CHUNK_BYTES", chunk_bytes)
        layers = extract_layers(model)
        x = torch.zeros(settings["restarts"], 2 * len(data.train_x), 784, dtype=torch.float64)
        assert len(step_chunks(as_objective(layers), x)) == (len(x) if chunk_bytes == 1 else 1)
        runs.append(KKTAttack(**settings).run(layers, knowledge(data), seed=0, dtype=torch.float64))
    chunked, one_batch = runs
    np.testing.assert_allclose(chunked.candidates, one_batch.candidates, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(chunked.lambdas, one_batch.lambdas, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(chunked.facts.relative_residual, one_batch.facts.relative_residual, rtol=1e-9)
    assert chunked.facts.early_stopped_restarts == one_batch.facts.early_stopped_restarts != []


def test_the_cpu_step_chunks_restarts_by_their_intermediates_bytes():
    """At the paper's size (m = 1,000 candidates, width 1,000) one float32 restart's widest intermediate is near
    CPU_CHUNK_BYTES: one restart a chunk; a small problem's restarts go in one pass."""
    layers = extract_layers(nn.Sequential(nn.Linear(784, 1000, bias=False), nn.ReLU(), nn.Linear(1000, 1, bias=False)))
    assert step_chunks(as_objective(layers), torch.zeros(16, 1000, 784)) == [slice(r, r + 1) for r in range(16)]
    assert step_chunks(as_objective(layers), torch.zeros(16, 10, 784)) == [slice(0, 16)]
