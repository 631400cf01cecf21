from __future__ import annotations

import pytest
import torch

from auditkit import AttackerKnowledge
from auditkit.data import PARITY, AuditData, binary_task, load_mnist_images
from auditkit.victims import build_mlp, train_mlp


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test, module- and session-scoped fixtures included, caches victims in a temporary folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUDITKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def mnist():
    return load_mnist_images()


@pytest.fixture(scope="session")
def small_victim(mnist):
    """A small real victim: 20 MNIST digits (parity), 784-200-200-1, weight decay (close to a KKT point)."""
    data = binary_task(*mnist, *PARITY, n_per_class=10, test_per_class=100, seed=0, image_shape=(28, 28), name="mnist")
    model = build_mlp(784, [200, 200], "none", seed=0, dtype=torch.float64)
    x, y = torch.as_tensor(data.train_x), torch.as_tensor(data.train_y)
    log = train_mlp(model, x, y, lr=0.3, epochs=1500, weight_decay=0.01)
    assert log.train_accuracy == 1.0
    return model, data


def knowledge(data: AuditData, **extra) -> AttackerKnowledge:
    """What the Auditor tells an attack about ``data`` (reference inputs: 256 non-members)."""
    return AttackerKnowledge(len(data.train_x), data.lower, data.upper, data.pool_x[:256], **extra)
