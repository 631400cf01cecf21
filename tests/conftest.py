from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n: one thread per worker (and per command a test starts), so that the workers never
    # ask for more threads than the machine has cores (OpenMP threads spin: both would slow down)
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

from auditkit import Auditor, KKTAttack
from auditkit.attacks import AttackerKnowledge
from auditkit.attacks.kkt.control import StartControl
from auditkit.attacks.kkt.convergence import Convergence
from auditkit.attacks.kkt.facts import KKTFacts
from auditkit.data.audit_data import AuditData
from auditkit.data.mnist import load_mnist_images
from auditkit.data.tasks import PARITY, binary_task
from auditkit.scoring.verdict import Verdict, judge
from auditkit.victims.models import build_mlp
from auditkit.victims.training import train_mlp

TINY = """name: tiny
device: cpu
data: {dataset: toy_colors, n_per_class: 5, test_per_class: 20, image_size: 4}
victim: {hidden: [16], training: {epochs: 50}}
defenses: [{name: none}]
attack: {steps: 10, restarts: 1, log_every: 5}
beside: []
"""  # a scenario that trains and attacks in seconds (by the KKT attack alone)


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


@pytest.fixture(scope="session")
def small_victim_audit(small_victim):
    """The small victim audited by the strength tests' attack (3000 steps, one restart, alpha 40, float32,
    seed 0): computed once per worker for the tests that read it (strength, the DP twin, the membership test)."""
    model, data = small_victim
    return Auditor(KKTAttack(steps=3000, restarts=1, alpha=40.0), device="cpu", seed=0).audit(model, data)


def knowledge(data: AuditData, **extra) -> AttackerKnowledge:
    """What the Auditor tells an attack about ``data`` (reference inputs: 256 non-members)."""
    return AttackerKnowledge(len(data.train_x), data.lower, data.upper, data.pool_x[:256], **extra)


def write_cifar_files(folder, records_per_file: int = 260, seed: int = 0):
    """CIFAR-10 binary batch files in the official format (label byte + 3072 pixel bytes per record),
    random pixels, labels cycling 0-9; returns the labels and pixel bytes written, in file order."""
    import numpy as np

    from auditkit.data.cifar import CIFAR_FILES

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, name in enumerate(CIFAR_FILES):
        labels = (np.arange(records_per_file) + index) % 10
        pixels = rng.integers(0, 256, (records_per_file, 3072), dtype=np.uint8)
        (folder / name).write_bytes(np.concatenate([labels[:, None].astype(np.uint8), pixels], 1).tobytes())
        written.append((labels, pixels))
    return written


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory):
    """A folder of small CIFAR-10 binary files (6 x 260 records: enough for 250 + 250 per class of vehicles
    vs animals)."""
    folder = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-bin"
    write_cifar_files(folder)
    return folder.parent


CONVERGED = Convergence(0.01, 0.1, 0.0, 8000)  # an attack residual under the 0.05 floor: converged whatever the victim


def kkt_facts(victim_residual: float = 0.1, convergence: Convergence = CONVERGED, **fields) -> KKTFacts:
    """KKT attack facts for one restart, with the premise given (what the verdict reads)."""
    run = {
        "name": "kkt",
        "candidates": 10,
        "seconds": 1.0,
        "device": "cpu",
        "dtype": "float64",
        "seed": 0,
        "selection_rule": "kkt_residual",
        "selection": "",
        "restarts": 1,
        "restart_settings": {},
        "restart_scores": [0.0],
        "final_loss": [1.0],
        "relative_residual": [convergence.attack_residual],
        "selected_restarts": [0],
        "early_stopped_restarts": [],
        "diverged": [],
        "alpha_scale": 1.0,
    }
    return KKTFacts(**{**run, **fields}, victim_residual=victim_residual, convergence=convergence)


ALIKE = StartControl(500, 50, 2, 50, 3, 0.2, 0.3, 0.3, 1.0)  # the objective does not single the members out


def kkt_verdict(
    residual, train_accuracy, test, *, centred=True, convergence=CONVERGED, control=ALIKE, **judged
) -> Verdict:
    """The verdict on a KKT audit whose victim sits at ``residual`` (the attack converged and, when no leak was
    found, its start control read the members and non-members alike, unless told), as AuditResult reads it."""
    facts = kkt_facts(residual, convergence, start_control=control)
    backing, backed = ([], "") if test.significant else facts.null_evidence()
    return judge(facts.concerns(train_accuracy, centred) + backing, test, backed=backed, **judged)
