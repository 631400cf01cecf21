"""auditkit: which training samples of a PyTorch model can be reconstructed from its weights."""

from auditkit.attack import AttackerKnowledge, AttackOutput, ReconstructionAttack
from auditkit.auditor import Auditor
from auditkit.data import AuditData, binary_task, load_mnist_images, toy_colors
from auditkit.errors import AuditkitError, ConfigError
from auditkit.kernel import UnsupportedModelError, extract_layers, kkt_residual
from auditkit.kkt import KKTAttack, KKTConfig
from auditkit.results import AuditResult, LeakageSummary, RunResult
from auditkit.runner import run_scenario
from auditkit.scenario import Scenario, ScenarioError, load_scenario
from auditkit.victims import build_mlp, train_mlp

__all__ = [
    "AttackOutput",
    "AttackerKnowledge",
    "AuditData",
    "AuditResult",
    "Auditor",
    "AuditkitError",
    "ConfigError",
    "KKTAttack",
    "KKTConfig",
    "LeakageSummary",
    "ReconstructionAttack",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "UnsupportedModelError",
    "binary_task",
    "build_mlp",
    "extract_layers",
    "kkt_residual",
    "load_mnist_images",
    "load_scenario",
    "run_scenario",
    "toy_colors",
    "train_mlp",
]
