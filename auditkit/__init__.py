"""auditkit: which training samples of a PyTorch model can be reconstructed from its weights."""

from auditkit.attack import AttackOutput, KKTAttack, KKTConfig
from auditkit.auditor import Auditor, AuditResult
from auditkit.data import AuditData, binary_task, load_mnist_images, toy_colors
from auditkit.kernel import UnsupportedModelError, extract_layers, kkt_residual
from auditkit.runner import comparison, run_scenario
from auditkit.scenario import Scenario, ScenarioError, load_scenario
from auditkit.victims import build_mlp, train_gd

__all__ = [
    "AttackOutput",
    "AuditData",
    "AuditResult",
    "Auditor",
    "KKTAttack",
    "KKTConfig",
    "Scenario",
    "ScenarioError",
    "UnsupportedModelError",
    "binary_task",
    "build_mlp",
    "comparison",
    "extract_layers",
    "kkt_residual",
    "load_mnist_images",
    "load_scenario",
    "run_scenario",
    "toy_colors",
    "train_gd",
]
