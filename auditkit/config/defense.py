"""One entry of a scenario's ``defenses:``: a name, a registered kind, recipe overrides, and the kind's own
settings, each part validated by what owns it (the kind's settings by the kind)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator, model_serializer, model_validator

from auditkit.config.training import TrainingConfig
from auditkit.defenses.dp_sgd import DPConfig
from auditkit.defenses.registry import defense_kind
from auditkit.errors import STRICT, first_error
from auditkit.storage.files import Name


class DefenseConfig(BaseModel):
    """One defense: a name, its kind (a registered :class:`auditkit.defenses.base.Defense`), recipe overrides,
    and the kind's own settings (DP-SGD's under ``dp``, any other kind's under ``settings``), each validated by the
    kind that owns them."""

    model_config = STRICT

    name: Name
    kind: str = "none"
    description: str = ""
    training: dict[str, Any] = Field(default_factory=dict, description="overrides of victim.training")
    dp: DPConfig | None = None
    settings: dict[str, Any] = Field(default_factory=dict, description="the kind's own settings (DP-SGD's: dp)")

    @field_validator("kind")
    @classmethod
    def _registered(cls, kind: str) -> str:
        defense_kind(kind)  # an unknown kind: one line listing the registered ones
        return kind

    @model_validator(mode="after")
    def _kind_settings(self) -> DefenseConfig:
        kind = defense_kind(self.kind)
        if (kind.settings_key == "dp") != (self.dp is not None):
            raise ValueError("kind 'dp_sgd' needs a 'dp' mapping, and only it takes one")
        if self.settings and (kind.settings_type is None or kind.settings_key != "settings"):
            raise ValueError(f"settings: kind '{self.kind}' takes no settings")
        if kind.settings_key == "settings" and kind.settings_type is not None:
            try:
                kind.settings_type.model_validate(self.settings)
            except ValidationError as error:
                raise ValueError(first_error(error, "settings")) from None
        return self

    def kind_settings(self) -> BaseModel | None:
        """The kind's own settings, validated by its ``settings_type`` (None for a kind without)."""
        kind = defense_kind(self.kind)
        if kind.settings_type is None:
            return None
        return self.dp if kind.settings_key == "dp" else kind.settings_type.model_validate(self.settings)

    @model_serializer(mode="wrap")
    def _without_empty_settings(self, serialize) -> dict[str, Any]:
        values = serialize(self)  # a kind without settings dumps as before there were any (cache keys unchanged)
        if not values.get("settings"):
            values.pop("settings", None)
        return values

    @field_validator("training")
    @classmethod
    def _known_overrides(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        TrainingConfig(**{**TrainingConfig().model_dump(), **overrides})
        return overrides
