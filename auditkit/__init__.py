"""auditkit: which training samples of a PyTorch model can be reconstructed from its weights.

The front door: :class:`Auditor` audits a model you hold; :func:`load_scenario` and :func:`run_scenario`
train, defend and audit the victims a scenario describes; :func:`write_report` renders a result; the data
and victim helpers (:func:`binary_task`, :func:`build_mlp`, :func:`train_mlp`, ...) build your own. Attacks
are registered by name (:func:`build_attack`, :func:`register_attack`); :class:`KKTAttack` is the default,
:class:`OwnerAttack` explains what training added to the initial weights (for an owner, who holds them).

Example:
    >>> import auditkit
    >>> scenario = auditkit.load_scenario("mnist_quick")
    >>> run = auditkit.run_scenario(scenario, "runs/mnist_quick")  # doctest: +SKIP
    >>> run.victims[0].summary().identified  # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from auditkit.attacks.base import Attack, AttackConfig, AttackerKnowledge, AttackFacts, AttackOutput
from auditkit.attacks.kkt.attack import KKTAttack
from auditkit.attacks.kkt.config import KKTConfig
from auditkit.attacks.kkt.facts import KKTFacts
from auditkit.attacks.owner.attack import OwnerAttack
from auditkit.attacks.owner.config import OwnerConfig
from auditkit.attacks.owner.facts import OwnerFacts
from auditkit.attacks.registry import attack_names, build_attack, register_attack
from auditkit.auditing.auditor import Auditor
from auditkit.config.loading import load_scenario
from auditkit.config.schema import Scenario
from auditkit.data.audit_data import AuditData
from auditkit.data.datasets import toy_colors
from auditkit.data.mnist import load_mnist_images
from auditkit.data.tasks import binary_task, multiclass_task
from auditkit.errors import AuditkitError, ConfigError, DataError, ScenarioError, UnsupportedModelError
from auditkit.report import write_report
from auditkit.results.audit import AuditResult, LeakageSummary
from auditkit.results.run import RunResult
from auditkit.running.runner import run_scenario
from auditkit.victims.models import build_mlp
from auditkit.victims.training import train_mlp

try:
    __version__ = version("auditkit")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Attack",
    "AttackConfig",
    "AttackFacts",
    "AttackOutput",
    "AttackerKnowledge",
    "AuditData",
    "AuditResult",
    "Auditor",
    "AuditkitError",
    "ConfigError",
    "DataError",
    "KKTAttack",
    "KKTConfig",
    "KKTFacts",
    "OwnerAttack",
    "OwnerConfig",
    "OwnerFacts",
    "LeakageSummary",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "UnsupportedModelError",
    "__version__",
    "attack_names",
    "binary_task",
    "build_attack",
    "build_mlp",
    "load_mnist_images",
    "load_scenario",
    "multiclass_task",
    "register_attack",
    "run_scenario",
    "toy_colors",
    "train_mlp",
    "write_report",
]
