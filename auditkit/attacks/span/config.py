"""The span attack's validated configuration: how clean a row space must be, and how many programs rebuild inputs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from auditkit.attacks.base import AttackConfig


class SpanConfig(AttackConfig):
    """What the span attack reads and how far its rebuilding searches.

    max_tail: the largest share of a layer's squared singular values beyond the n-th (n: the training
    samples) for which its row space still counts as spanned by n inputs.
    clean_tail: the largest such share for which the rows count as exactly in that span; between it and
    max_tail some members' residuals may be inflated (the verdict is weak).
    programs: linear programs solved to rebuild training inputs inside the first layer's row space (one per
    public template, cycled with fresh random weights when there are more programs than templates).
    box_slack: how far outside the valid input range a rebuilt input may reach (the weights' rounding).
    """

    name: Literal["span"] = "span"
    max_tail: float = Field(0.01, gt=0, lt=1)
    clean_tail: float = Field(1e-6, gt=0, lt=1)
    programs: int = Field(1000, ge=0, le=1_000_000)
    box_slack: float = Field(1e-3, ge=0, le=1)
