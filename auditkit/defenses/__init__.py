"""Defenses: the kinds of training a scenario's ``defenses:`` name (the recipe, DP-SGD, yours), each one module
with its settings, registered by name like the attacks."""

from auditkit.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    globals(),
    {
        "auditkit.defenses.base": ("Defense", "Training", "train_recipe"),
        "auditkit.defenses.registry": ("register_defense",),
    },
)
