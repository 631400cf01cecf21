"""Auditing a model the user saved, with no scenario: their state_dict and data file in, a report out."""

from __future__ import annotations

import dataclasses
import math
import re
import time
from pathlib import Path

from torch import nn

from auditkit.attacks.base import Attack, ModelShape
from auditkit.attacks.kkt.network import takes_flat_rows
from auditkit.attacks.registry import build_attack
from auditkit.auditing.auditor import Auditor
from auditkit.auditing.inputs import flat_input, initial_model, input_shape
from auditkit.budget import check_memory
from auditkit.config.overrides import deep_merge
from auditkit.config.presets import attack_preset
from auditkit.data.files import load_audit_data
from auditkit.environment import DEFAULT_DTYPE, resolve_device, resolve_dtype, seed_everything
from auditkit.errors import ConfigError, DataError
from auditkit.progress import Progress
from auditkit.recording.record import TrainingRecord
from auditkit.report import REPORT_FILES, write_report
from auditkit.results.facts import PrivacyFacts, RunFacts
from auditkit.results.run import RUN_FILE, RunResult
from auditkit.storage.files import inside, recorded_path
from auditkit.storage.outdir import check_layout, exclusive_output
from auditkit.storage.safe_load import npz_shapes
from auditkit.victims.user_model import load_state_dict, mlp_from_state_dict, model_from_class

BESIDE_BY_DEFAULT = ("span",)  # attack presets run beside the default one: seconds, and read any dense layer
ASSUMED_RELU = (
    "note: {model} holds weights only, not its activations: it was audited as a ReLU network (Linear, ReLU, ..., "
    "Linear); if it uses another activation (Tanh, GELU, ...), the audit does not describe it: give your class "
    "with --arch"
)


def audit_saved_model(
    model_path: Path,
    data_path: Path,
    out: Path,
    attack: str | Path | None = None,
    device: str = "auto",
    seed: int = 0,
    progress: Progress | None = None,
    overrides: dict | None = None,
    init_path: Path | None = None,
    arch: str | None = None,
    arch_arguments: dict | None = None,
    *,
    privacy: PrivacyFacts | None = None,
    record_path: Path | None = None,
    features: bool = False,
) -> RunResult:
    """Load (safely) and check the model, its initial weights and the data before anything runs, then
    attack, save and report.

    overrides: settings over the attack preset's (``{"attack": {"steps": 300}}``, what ``--set`` gives).
    init_path: the weights training started from (the owner's attack's knowledge); with it the attack
    preset defaults to ``owner``.
    arch: ``module:Class``, the user's own network class the state_dict loads into (with ``arch_arguments``);
    without it the state_dict must describe a ReLU MLP (Linear layers only).
    privacy: how the model was trained with DP-SGD (:func:`auditkit.victims.dp.privacy_facts`): its epsilon
    and the DP ceiling beside the counts.
    record_path: a training record (:class:`auditkit.recording.TrainingRecorder`'s folder): the initial
    weights (unless ``init_path``), the DP settings (unless ``privacy``), Adam's rescaling undone.
    features: the data file's inputs are embeddings (:func:`auditkit.data.features.feature_data`).
    """
    progress = progress or Progress()
    overrides = overrides or {}
    unknown = sorted(set(overrides) - {"attack"})
    if unknown or not isinstance(overrides.get("attack", {}), dict):
        key = unknown[0] if unknown else "attack"
        raise ConfigError(f"--set {key}: auditkit audit takes attack settings only (attack.KEY=VALUE)")
    state = load_state_dict(model_path)
    notes: tuple[str, ...] = ()
    if arch is not None:
        model = model_from_class(arch, arch_arguments or {}, state, str(model_path))
    else:
        model = mlp_from_state_dict(state, str(model_path))
        notes = (ASSUMED_RELU.format(model=model_path.name),)
    initial = None
    if init_path is not None:
        init_state = load_state_dict(init_path)
        if arch is None:  # rebuilt as the model was: the layers numbered as in the model, whatever their names
            init_state = mlp_from_state_dict(init_state, str(init_path)).state_dict()
        initial = initial_model(model, init_state, str(init_path))
    record = TrainingRecord.load(record_path, model) if record_path is not None else None
    if record is not None and initial is None:
        initial = initial_model(model, record.initial_state, str(record_path))
    attack_runs = _attacks(attack, initial is not None, overrides.get("attack", {}))
    attack_run = attack_runs[0]
    if initial is not None and not attack_run.reads_initial:
        raise ConfigError(
            f"--init: the {attack_run.name} attack does not read the initial weights; leave --attack out (the "
            "owner's attack is the default with --init) or name an attack that reads them (owner)"
        )
    if attack_run.needs_initial and initial is None:
        raise ConfigError(attack_run.missing_initial("--init", "their state_dict file (as MODEL's)"))
    flat_shape = attack_run.check(model) if takes_flat_rows(model) else None
    if flat_shape is not None:
        outputs, inputs = flat_shape.outputs, flat_shape.inputs
    else:  # its input shape comes with the data: the outputs from its last Linear layer
        linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
        outputs, inputs = (linears[-1].out_features if linears else attack_run.check(model).outputs), None
    itemsize = resolve_dtype(DEFAULT_DTYPE).itemsize
    _check_declared_sizes(data_path, attack_run, flat_shape, itemsize, f"the audit of {model_path.name}")
    data = load_audit_data(data_path, outputs=outputs, inputs=inputs, features=features)
    shape = input_shape(model, None, data.image_shape)
    model, initial = (flat_input(m, shape) if m is not None else None for m in (model, initial))
    what = f"the audit of {model_path.name}"
    for each in attack_runs:
        checked = flat_shape or each.check(model)  # a flat-row model is what was checked: flat_input left it alone
        each.check_memory(checked, len(data.train_x), itemsize, what, len(data.pool_x))
    resolved = resolve_device(device)
    name = victim_name(model_path)
    names = [name, *(f"{name}.{each.name}" for each in attack_runs[1:])]
    with exclusive_output(out) as out:
        check_layout(out, names, (RUN_FILE, *REPORT_FILES))
        for line in (*notes, *(f"note: {note}" for note in data.notes), *(each.warning() for each in attack_runs)):
            if line:
                progress.note(line)
        started = time.perf_counter()
        results = []
        for each, result_name in zip(attack_runs, names):
            seed_everything(seed)
            auditor = Auditor(each, device=resolved, dtype=DEFAULT_DTYPE, seed=seed)
            with progress.task(f"[{result_name}] attack", each.steps) as update:
                result = auditor.audit(
                    model, data, name=result_name, init=initial, progress=update, privacy=privacy, record=record
                )
            result.data_notes = notes + result.data_notes
            result.save(inside(out, result_name))
            results.append(result)
        settings = {
            "model": recorded_path(model_path),
            "data": recorded_path(data_path),
            "attack": attack_run.config.model_dump(),
            "beside": [each.config.model_dump() for each in attack_runs[1:]],
        }
        if init_path is not None:
            settings["init"] = recorded_path(init_path)
        if record_path is not None:
            settings["record"] = recorded_path(record_path)
        if privacy is not None:
            settings["privacy"] = dataclasses.asdict(privacy)
        if arch is not None:
            settings["arch"] = {"class": arch, "arguments": arch_arguments or {}}
        seconds = time.perf_counter() - started
        facts = RunFacts.collect(f"audit of {model_path.name}", seed, resolved, DEFAULT_DTYPE, settings, seconds)
        run = RunResult(facts, results)
        run.save(out, victims=False)
        write_report(run, out)
    return run


def _attacks(attack: str | Path | None, owner: bool, overrides: dict) -> list[Attack]:
    """The attacks ``--attack`` names (presets or YAML files, comma-separated; ``overrides`` apply to the first),
    or by default the KKT attack (the owner's with ``--init``) with the span attack beside it."""
    names: list[str | Path | None]
    if attack is None:
        names = ["owner" if owner else None, *BESIDE_BY_DEFAULT]
    elif isinstance(attack, Path):
        names = [attack]
    else:
        names = [name.strip() for name in attack.split(",")]
    if any(name == "" for name in names) or len({str(name) for name in names}) != len(names):
        raise ConfigError(f"--attack {attack}: expected distinct attack presets separated by commas")
    attacks = [build_attack(deep_merge(attack_preset(names[0]) if names[0] else {}, overrides))]
    attacks += [build_attack(attack_preset(name)) for name in names[1:]]
    if len({each.name for each in attacks}) != len(attacks):
        raise ConfigError(f"--attack {attack}: two presets of the same attack; give one of each")
    return attacks


def _check_declared_sizes(data_path: Path, attack: Attack, shape: ModelShape | None, itemsize: int, what: str) -> None:
    """Refuse, from the data file's array headers alone (nothing inflated yet), an audit whose data and, for a
    network that takes flat rows, whose attack and identification would outgrow the memory budget."""
    declared = npz_shapes(data_path, DataError, ".npz without pickled objects")
    data_bytes = 2 * 8 * sum(math.prod(size) for size in declared.values())  # as stored, and as float64
    rows = {key: declared[key][0] if declared.get(key) else 0 for key in ("train_x", "nonmember_x")}
    parts = {"data": data_bytes}
    if shape is not None and rows["train_x"]:
        parts |= attack.memory_parts(rows["train_x"], list(shape.widths), itemsize, rows["nonmember_x"])
    check_memory(parts, f"{what} on {data_path.name}")


def victim_name(model_path: Path) -> str:
    """The audit's folder and name in the report: the model file's stem, made a safe folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model_path.stem).strip(".") or "model"
