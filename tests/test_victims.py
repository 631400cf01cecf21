"""Victim models: the training step, training to zero error, one default precision."""

import copy
import inspect

import numpy as np
import pytest
import torch

from auditkit import Auditor, KKTAttack
from auditkit.environment import DEFAULT_DTYPE, resolve_dtype
from auditkit.scoring.samples import normalized_margins
from auditkit.victims.models import build_mlp
from auditkit.victims.training import make_optimizer, train_mlp, training_step


def test_one_default_dtype_for_victims_attack_and_auditor():
    default = resolve_dtype(DEFAULT_DTYPE)
    assert next(build_mlp(4, [3]).parameters()).dtype == default
    assert Auditor(device="cpu").dtype == default
    assert resolve_dtype(inspect.signature(KKTAttack.run).parameters["dtype"].default) == default


@pytest.mark.slow
def test_compiled_training_step_matches_eager(small_victim):
    _, data = small_victim
    x, y = torch.as_tensor(data.train_x), torch.as_tensor(data.train_y)
    model = build_mlp(784, [64, 64], "first", seed=1, dtype=torch.float64)
    eager_model, compiled_model = copy.deepcopy(model), copy.deepcopy(model)
    eager = training_step(eager_model, make_optimizer(eager_model, "gd", lr=0.3, weight_decay=0.01))
    compiled = training_step(
        compiled_model, make_optimizer(compiled_model, "gd", lr=0.3, weight_decay=0.01), compile=True
    )
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
    log = train_mlp(
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


@pytest.mark.parametrize(
    "recipe",
    [
        {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4},
        {"optimizer": "adam", "lr": 1e-3},
        {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-2, "schedule": "cosine"},
    ],
)
def test_minibatch_recipes_fit_and_are_seeded(small_victim, recipe):
    _, data = small_victim
    x, y = torch.as_tensor(data.train_x), torch.as_tensor(data.train_y)

    def trained(seed):
        model = build_mlp(784, [64, 64], seed=2, dtype=torch.float64)
        return model, train_mlp(model, x, y, epochs=40, batch_size=6, seed=seed, **recipe)

    (first, log), (again, _), (other, _) = trained(0), trained(0), trained(1)
    assert log.train_accuracy == 1.0
    assert log.recipe["steps"] == 40 * 4 and log.recipe["batch_size"] == 6  # 20 samples: batches 6, 6, 6, 2
    assert log.recipe["optimizer"] == recipe["optimizer"]
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), again.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(first.parameters(), other.parameters()))  # another order


def test_cosine_schedule_decays_the_learning_rate_to_zero():
    model = build_mlp(3, [4], seed=0)
    seen = []
    optimizer = make_optimizer(model, "sgd", lr=0.5)
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: seen.append(opt.param_groups[0]["lr"]))
    import auditkit.victims.training

    x, y = torch.randn(8, 3), torch.tensor([1.0, -1.0] * 4)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(auditkit.victims.training, "make_optimizer", lambda *a, **k: optimizer)
        train_mlp(model, x, y, lr=0.5, epochs=10, optimizer="sgd", batch_size=4, schedule="cosine")
    assert len(seen) == 20 and seen[0] == 0.5
    assert all(later < earlier for earlier, later in zip(seen, seen[1:])) and seen[-1] < 0.01


def test_normalized_margins_read_one_at_the_nearest_correct_sample():
    np.testing.assert_allclose(normalized_margins(np.array([2.0, -1.0, 4.0])), [1.0, -0.5, 2.0])
    assert np.isnan(normalized_margins(np.array([-2.0, 0.0]))).all()  # nothing classified correctly: no scale
