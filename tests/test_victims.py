"""Victim models: the training step, training to zero error, one default precision."""

import copy
import inspect

import torch

from auditkit import Auditor, KKTAttack
from auditkit.environment import DEFAULT_DTYPE, resolve_dtype
from auditkit.victims import build_mlp, gd_step, train_gd


def test_one_default_dtype_for_victims_attack_and_auditor():
    default = resolve_dtype(DEFAULT_DTYPE)
    assert next(build_mlp(4, [3]).parameters()).dtype == default
    assert Auditor(device="cpu").dtype == default
    assert resolve_dtype(inspect.signature(KKTAttack.run).parameters["dtype"].default) == default


def test_compiled_training_step_matches_eager(small_victim):
    _, data = small_victim
    x, y = torch.as_tensor(data.train_x), torch.as_tensor(data.train_y)
    model = build_mlp(784, [64, 64], "first", seed=1, dtype=torch.float64)
    eager_model, compiled_model = copy.deepcopy(model), copy.deepcopy(model)
    eager = gd_step(eager_model, lr=0.3, weight_decay=0.01)
    compiled = gd_step(compiled_model, lr=0.3, weight_decay=0.01, compile=True)
    for _ in range(10):
        eager_loss, compiled_loss = eager(x, y), compiled(x, y)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-10, atol=0)
    for a, b in zip(eager_model.parameters(), compiled_model.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-14)
    before = [p.detach().clone() for p in model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(before, compiled_model.parameters()))


def test_training_reaches_zero_error_and_logs_it(small_victim):
    _, data = small_victim
    x, y = torch.as_tensor(data.train_x), torch.as_tensor(data.train_y)
    seen = []
    log = train_gd(
        build_mlp(784, [64, 64], seed=2, dtype=torch.float64),
        x,
        y,
        lr=0.3,
        epochs=300,
        progress=lambda e, loss: seen.append((e, loss)),
    )
    assert log.train_accuracy == 1.0 and log.epochs == 300
    assert [e for e, _ in seen] == [100, 200, 300]
    assert seen[-1][1] < seen[0][1]
