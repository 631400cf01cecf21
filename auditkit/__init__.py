"""auditkit: which training samples of a PyTorch model can be reconstructed from its weights.

The front door: :class:`Auditor` audits a model you hold; :func:`load_scenario` and :func:`run_scenario`
train, defend and audit the victims a scenario describes; :func:`write_report` renders a result; the data
and victim helpers (:func:`binary_task`, :func:`build_mlp`, :func:`train_mlp`, ...) build your own. Attacks
are registered by name (:func:`build_attack`, :func:`register_attack`); :class:`KKTAttack` is the default,
:class:`OwnerAttack` explains what training added to the initial weights (for an owner, who holds them),
:class:`SpanAttack` reads membership and training inputs from the dense layers' row spaces.

Example:
    >>> import auditkit
    >>> scenario = auditkit.load_scenario("mnist_quick")
    >>> run = auditkit.run_scenario(scenario, "runs/mnist_quick")  # doctest: +SKIP
    >>> run.victims[0].summary().identified  # doctest: +SKIP
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

# name -> the module that defines it: imported on first use (``import auditkit`` and ``auditkit --help`` stay
# fast, and an interrupt during start-up lands in the command line's own handler, not inside torch's import)
_EXPORTS = {
    "auditkit.attacks.base": ("Attack", "AttackConfig", "AttackerKnowledge", "AttackFacts", "AttackOutput"),
    "auditkit.attacks.kkt.attack": ("KKTAttack",),
    "auditkit.attacks.kkt.config": ("KKTConfig",),
    "auditkit.attacks.kkt.facts": ("KKTFacts",),
    "auditkit.attacks.owner.attack": ("OwnerAttack",),
    "auditkit.attacks.owner.config": ("OwnerConfig",),
    "auditkit.attacks.span.attack": ("SpanAttack",),
    "auditkit.attacks.span.config": ("SpanConfig",),
    "auditkit.attacks.owner.facts": ("OwnerFacts",),
    "auditkit.attacks.registry": ("attack_names", "build_attack", "register_attack"),
    "auditkit.auditing.auditor": ("Auditor",),
    "auditkit.config.loading": ("load_scenario",),
    "auditkit.config.schema": ("Scenario",),
    "auditkit.data.audit_data": ("AuditData",),
    "auditkit.data.datasets": ("toy_colors",),
    "auditkit.data.mnist": ("load_mnist_images",),
    "auditkit.data.tasks": ("binary_task", "multiclass_task"),
    "auditkit.errors": ("AuditkitError", "ConfigError", "DataError", "ScenarioError", "UnsupportedModelError"),
    "auditkit.report": ("write_report",),
    "auditkit.results.audit": ("AuditResult", "LeakageSummary"),
    "auditkit.results.run": ("RunResult",),
    "auditkit.running.runner": ("run_scenario",),
    "auditkit.victims.models": ("build_mlp",),
    "auditkit.victims.training": ("train_mlp",),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    """A front-door name, imported from its module on first use."""
    if name not in _HOME:
        raise AttributeError(f"module 'auditkit' has no attribute {name!r}")
    value = getattr(import_module(_HOME[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])


try:
    __version__ = version("auditkit")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = sorted([*_HOME, "__version__"])
