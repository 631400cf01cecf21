"""auditkit: which training samples of a PyTorch model can be reconstructed from its weights.

The front door: :class:`Auditor` audits a model you hold; :func:`load_scenario` and :func:`run_scenario`
train, defend and audit the victims a scenario describes; :func:`write_report` renders a result. Attacks are
registered by name (:func:`build_attack`, :func:`register_attack`): :class:`KKTAttack` is the default,
:class:`OwnerAttack` explains what training added to the initial weights (for an owner, who holds them),
:class:`SpanAttack` reads membership and training inputs from the dense layers' row spaces. Results
(:class:`AuditResult`, :class:`LeakageSummary`, :class:`RunResult`) and errors (:class:`AuditkitError` and its
kinds) complete it; the rest lives in the subpackages that own it (``auditkit.attacks``, ``auditkit.data``,
``auditkit.victims``, ``auditkit.defenses``, ``auditkit.config``).

Example:
    >>> import auditkit
    >>> scenario = auditkit.load_scenario("mnist_quick")
    >>> run = auditkit.run_scenario(scenario, "runs/mnist_quick")  # doctest: +SKIP
    >>> run.victims[0].summary().identified  # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from auditkit.lazy import lazy_exports

_EXPORTS = {  # the front door: the verbs, the attacks they take, the results, the errors
    "auditkit.auditing.auditor": ("Auditor",),
    "auditkit.config.loading": ("load_scenario",),
    "auditkit.running.runner": ("run_scenario",),
    "auditkit.report": ("write_report",),
    "auditkit.attacks.registry": ("build_attack", "register_attack"),
    "auditkit.attacks.kkt.attack": ("KKTAttack",),
    "auditkit.attacks.owner.attack": ("OwnerAttack",),
    "auditkit.attacks.span.attack": ("SpanAttack",),
    "auditkit.results.audit": ("AuditResult",),
    "auditkit.results.summary": ("LeakageSummary",),
    "auditkit.results.run": ("RunResult",),
    "auditkit.errors": ("AuditkitError", "ConfigError", "DataError", "ScenarioError", "UnsupportedModelError"),
}
_MOVED = {  # names the front door exported before: read here they still work, with a warning naming their home
    **dict.fromkeys(
        ("Attack", "AttackConfig", "AttackerKnowledge", "AttackFacts", "AttackOutput", "KKTConfig", "KKTFacts"),
        "auditkit.attacks",
    ),
    **dict.fromkeys(("OwnerConfig", "OwnerFacts", "SpanConfig", "attack_names"), "auditkit.attacks"),
    "Scenario": "auditkit.config",
    **dict.fromkeys(
        ("AuditData", "toy_colors", "load_mnist_images", "binary_task", "multiclass_task"), "auditkit.data"
    ),
    **dict.fromkeys(("build_mlp", "train_mlp"), "auditkit.victims"),
}
__getattr__, __dir__, _names = lazy_exports(globals(), _EXPORTS, _MOVED)

try:
    __version__ = version("auditkit")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [*_names, "__version__"]
