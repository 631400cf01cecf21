"""Attacks: the seam every attack implements (base), the registry by name, and the built-in KKT, owner's and span
attacks, with their configs and facts."""

from auditkit.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    globals(),
    {
        "auditkit.attacks.base": ("Attack", "AttackConfig", "AttackerKnowledge", "AttackFacts", "AttackOutput"),
        "auditkit.attacks.registry": ("attack_names", "build_attack", "register_attack"),
        "auditkit.attacks.kkt.attack": ("KKTAttack",),
        "auditkit.attacks.kkt.config": ("KKTConfig",),
        "auditkit.attacks.kkt.facts": ("KKTFacts",),
        "auditkit.attacks.owner.attack": ("OwnerAttack",),
        "auditkit.attacks.owner.config": ("OwnerConfig",),
        "auditkit.attacks.owner.facts": ("OwnerFacts",),
        "auditkit.attacks.span.attack": ("SpanAttack",),
        "auditkit.attacks.span.config": ("SpanConfig",),
        "auditkit.attacks.span.facts": ("SpanFacts",),
    },
)
