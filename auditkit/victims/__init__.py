"""Victims: the networks scenarios build, how they are trained (recipes, DP-SGD with Opacus), and models users
saved."""

from auditkit.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    globals(),
    {"auditkit.victims.models": ("build_cnn", "build_mlp"), "auditkit.victims.training": ("train_mlp",)},
)
