"""The bad-input contract on generated inputs (Hypothesis): scenario files, ``--set`` values, data archives,
state_dicts and damaged run folders. Whatever is generated, the answer is success or one line with exit code 2
(a typed AuditkitError in Python), never a traceback, nothing written outside the chosen folder, and reading a
small file never allocates more than a bound.

Examples are bounded (``EXAMPLES``) and derandomised, so CI runs the same cases in the same time; Hypothesis's
example database is off (it would write ``.hypothesis/`` into the working folder).
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from auditkit import AuditkitError, Auditor, KKTAttack, load_scenario, run_scenario
from auditkit.cli import main
from auditkit.data.files import load_audit_data
from auditkit.data.user_data import audit_data
from auditkit.progress import Progress
from auditkit.victims.user_model import mlp_from_state_dict

set_hypothesis_home_dir(tempfile.mkdtemp(prefix="auditkit-hypothesis-"))  # its caches, never ./.hypothesis
EXAMPLES = 150
BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SMALL_FILE_PEAK = 64 * 2**20  # reading a file under 1 MB may allocate at most this (numpy's allocations, traced)

TINY = {
    "name": "tiny",
    "device": "cpu",
    "data": {"dataset": "toy_colors", "n_per_class": 4, "test_per_class": 8, "image_size": 4},
    "victim": {"hidden": [8], "training": {"epochs": 30}},
    "defenses": [{"name": "none"}],
    "attack": {"steps": 5, "restarts": 1, "log_every": 5},
}
# the settings generated values go to: real ones (so that some examples are valid) and a few that do not exist
PATHS = [
    "seed",
    "device",
    "dtype",
    "data.dataset",
    "data.n_per_class",
    "data.test_per_class",
    "data.image_size",
    "data.noise",
    "data.task",
    "data.path",
    "victim.hidden",
    "victim.bias",
    "victim.init_scale",
    "victim.training.lr",
    "victim.training.epochs",
    "victim.training.optimizer",
    "victim.training.batch_size",
    "victim.training.weight_decay",
    "attack.name",
    "attack.steps",
    "attack.restarts",
    "attack.candidates_per_sample",
    "attack.lr_x",
    "attack.init_scale",
    "attack.search_ranges",
    "report.ssim_threshold",
    "report.grid_size",
    "grid",
    "extends",
    "defenses",
    "nonsense.key",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["auto", "cpu", "cuda", "float64", "mnist", "toy_colors", "kkt", "owner", "../x", "/etc"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _one_line_or_success(result) -> None:
    """The CLI contract: exit 0, or exit 2 with one line; a traceback (any other exception) fails."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code in (0, 2), (result.exit_code, result.output)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        errors = [line for line in result.output.strip().splitlines() if not line.startswith("warning:")]
        assert len(errors) == 1 or errors[0].startswith("Usage:"), result.output  # click's own usage errors


def _with(scenario: dict, path: str, value) -> dict:
    changed = json.loads(json.dumps(scenario))
    *parents, last = path.split(".")
    node = changed
    for key in parents:
        node = node.setdefault(key, {}) if isinstance(node.get(key, {}), dict) else {}
    node[last] = value
    return changed


@pytest.fixture()
def cases(tmp_path):
    """The root of the examples' folders (Hypothesis runs every example in one call of the test)."""
    return tmp_path


def _case(root: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=root))


def _only(folder: Path, *names: str) -> None:
    """Nothing but ``names`` was written in ``folder``, the one place a case may write."""
    assert {p.name for p in folder.iterdir()} <= set(names), list(folder.iterdir())


@BOUNDED
@given(changes=st.lists(st.tuples(st.sampled_from(PATHS), VALUES), min_size=1, max_size=3))
def test_a_generated_scenario_is_validated_or_refused_in_one_line(cases, changes):
    folder = _case(cases)
    scenario = TINY
    for path, value in changes:
        scenario = _with(scenario, path, value)
    target = folder / "case.yaml"
    target.write_text(yaml.safe_dump(scenario, allow_unicode=True))
    _one_line_or_success(CliRunner().invoke(main, ["validate", str(target)]))
    _only(folder, "case.yaml")


@BOUNDED
@given(path=st.sampled_from(PATHS), value=st.text(max_size=30))
def test_a_generated_set_value_is_validated_or_refused_in_one_line(cases, path, value):
    folder = _case(cases)
    target = folder / "case.yaml"
    target.write_text(yaml.safe_dump(TINY))
    _one_line_or_success(CliRunner().invoke(main, ["validate", str(target), "--set", f"{path}={value}"]))
    _only(folder, "case.yaml")


DTYPES = st.sampled_from(["<f4", "<f8", "<i8", "|u1", "|b1", "<c8", "<U3", "<f2"])
KEYS = st.sampled_from(["train_x", "train_y", "nonmember_x", "test_x", "test_y", "mean", "image_shape", "other"])
SHAPES = st.lists(st.integers(0, 20), min_size=0, max_size=4).map(tuple)


@st.composite
def archives(draw) -> bytes:
    """An .npz with generated names, dtypes, shapes and values (sometimes the real keys with sane shapes)."""
    arrays = {}
    for key in draw(st.lists(KEYS, min_size=1, max_size=6, unique=True)):
        shape, dtype = draw(SHAPES), np.dtype(draw(DTYPES))
        count = int(np.prod(shape))
        values = draw(st.lists(st.floats(-2, 2), min_size=count, max_size=count)) if count <= 400 else [0.5] * count
        arrays[key] = np.asarray(values, dtype=np.float64).reshape(shape).astype(dtype)
    if draw(st.booleans()):
        arrays["train_x"] = np.full((6, 16), draw(st.floats(0, 1)), dtype=np.float32)
        arrays["train_y"] = np.array(draw(st.lists(st.integers(0, 2), min_size=6, max_size=6)))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    raw = buffer.getvalue()
    cut = draw(st.one_of(st.none(), st.integers(0, len(raw))))  # sometimes truncated
    return raw if cut is None else raw[:cut]


@BOUNDED
@given(raw=archives(), outputs=st.sampled_from([1, 3]))
def test_a_generated_data_archive_loads_or_is_refused_without_a_large_allocation(cases, raw, outputs):
    folder = _case(cases)
    target = folder / "data.npz"
    target.write_bytes(raw)
    tracemalloc.start()
    try:
        load_audit_data(target, outputs=outputs, inputs=16)
    except AuditkitError as error:
        assert "\n" not in str(error), error
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < SMALL_FILE_PEAK, peak
    _only(folder, "data.npz")


TENSOR_DTYPES = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64, torch.bool])
NAMES = st.sampled_from(["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "_module.0.weight", "x", "1.weight"])


@st.composite
def state_dicts(draw) -> dict:
    state = {}
    for name in draw(st.lists(NAMES, min_size=0, max_size=5, unique=True)):
        shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=3)))
        tensor = torch.randn(shape, dtype=torch.float64).to(draw(TENSOR_DTYPES))
        if draw(st.integers(0, 9)) == 0 and tensor.is_floating_point() and tensor.numel():
            tensor.view(-1)[0] = float("nan")
        state[name] = tensor
    return state


@BOUNDED
@given(state=state_dicts())
def test_a_generated_state_dict_becomes_an_mlp_or_is_refused_in_one_line(cases, state):
    folder = _case(cases)
    target = folder / "model.pt"
    torch.save(state, target)
    command = ["audit", str(target), "--data", str(folder / "none.npz"), "--out", str(folder / "o")]
    result = CliRunner().invoke(main, command)
    _one_line_or_success(result)
    assert result.exit_code == 2  # the data file does not exist, so nothing is audited either way
    try:
        mlp_from_state_dict(state, "model.pt")
    except AuditkitError as error:
        assert "\n" not in str(error), error
    _only(folder, "model.pt", "o")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("finished")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    run_scenario(load_scenario(root / "tiny.yaml"), root / "out", progress=Progress(enabled=False))
    return root / "out"


DAMAGE = st.sampled_from(["truncate", "flip", "json"])
RUN_FILES = ["summary.json", "none/result.json", "none/per_sample.csv", "none/reconstructions.npz"]


@pytest.mark.slow
@BOUNDED
@given(file=st.sampled_from(RUN_FILES), damage=DAMAGE, where=st.floats(0, 1), value=VALUES, seed=st.integers(0, 99))
def test_report_over_a_generated_damage_renders_or_names_the_file(finished, cases, file, damage, where, value, seed):
    folder = _case(cases)
    out = folder / "out"
    shutil.copytree(finished, out)
    target = out / file
    raw = target.read_bytes()
    at = int(where * (len(raw) - 1))
    if damage == "truncate":
        target.write_bytes(raw[:at])
    elif damage == "flip":
        noise = np.random.default_rng(seed).integers(0, 256, size=8, dtype=np.uint8).tobytes()
        target.write_bytes(raw[:at] + noise + raw[at + 8 :])
    elif file.endswith(".json"):
        content = json.loads(raw)
        keys = sorted(content)
        content[keys[at % len(keys)]] = value
        target.write_text(json.dumps(content))
    else:
        target.write_bytes(json.dumps(value).encode())
    _one_line_or_success(CliRunner().invoke(main, ["report", str(out)]))
    _only(folder, "out")


VICTIM_FILES = ["none/result.json", "none/per_sample.csv", "none/reconstructions.npz", "none/SHA256SUMS"]


@BOUNDED
@given(file=st.sampled_from(VICTIM_FILES), where=st.floats(0, 1), change=st.integers(1, 255))
def test_any_changed_byte_of_a_finished_victim_is_refused_by_report(finished, cases, file, where, change):
    out = _case(cases) / "out"
    shutil.copytree(finished, out)
    target = out / file
    raw = bytearray(target.read_bytes())
    at = int(where * (len(raw) - 1))
    raw[at] ^= change  # one byte, changed
    target.write_bytes(bytes(raw))
    result = CliRunner().invoke(main, ["report", str(out)])
    _one_line_or_success(result)
    assert result.exit_code == 2 and "none/" in result.output, result.output  # never reported as it stands


def test_a_flipped_count_is_refused_by_report_and_audited_again_on_resume(finished, tmp_path):
    import pandas as pd

    out = tmp_path / "out"
    shutil.copytree(finished, out)
    original = pd.read_csv(finished / "none" / "per_sample.csv")
    flipped = original.assign(identified=True)  # the tamperer's claim: every sample identified
    (out / "none" / "per_sample.csv").write_text(flipped.to_csv(index=False))
    refused = CliRunner().invoke(main, ["report", str(out)])
    assert refused.exit_code == 2 and "per_sample.csv: changed since the audit wrote it" in refused.output
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    resumed = run_scenario(load_scenario(tmp_path / "tiny.yaml"), out, resume=True, progress=Progress(enabled=False))
    assert resumed.facts.reused == 1  # the span attack's result reused; the tampered KKT result audited again
    assert resumed["none"].summary().identified == int(original["identified"].sum())
    assert CliRunner().invoke(main, ["report", str(out)]).exit_code == 0


# one property per kind of the hostile walk (tests/test_user_mistakes.py holds its examples)


@BOUNDED
@given(rows=st.integers(1, 10**7), features=st.integers(1, 10**5), nonmembers=st.integers(0, 10**6))
def test_declared_sizes_over_the_budget_are_refused_from_the_headers(cases, rows, features, nonmembers):
    folder = _case(cases)
    torch.save(mlp_from_state_dict({"0.weight": torch.ones(4, 16), "2.weight": torch.ones(1, 4)}).state_dict(),
               folder / "model.pt")  # fmt: skip
    shapes = {"train_x": (rows, features), "train_y": (rows,), "nonmember_x": (nonmembers, features)}
    with zipfile.ZipFile(folder / "data.npz", "w") as archive:
        for key, shape in shapes.items():
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
            archive.writestr(f"{key}.npy", header.getvalue() + b"\0" * 8)
    declared = 2 * 8 * (rows * features + rows + nonmembers * features)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUDITKIT_MEMORY_GB", "0.25")
        tracemalloc.start()
        result = CliRunner().invoke(main, ["audit", str(folder / "model.pt"), "--data", str(folder / "data.npz"),
                                           "--out", str(folder / "o")])  # fmt: skip
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    _one_line_or_success(result)
    assert result.exit_code == 2 and peak < SMALL_FILE_PEAK  # nothing declared was inflated
    if declared > 0.25 * 2**30:
        assert "needs about" in result.output and "budget" in result.output, result.output
    _only(folder, "model.pt", "data.npz")


@BOUNDED
@given(n_per_class=st.integers(1, 12), batch_size=st.integers(1, 40), image_size=st.integers(1, 6))
def test_generated_settings_that_would_mean_nothing_are_refused(cases, n_per_class, batch_size, image_size):
    folder = _case(cases)
    scenario = {**TINY, "data": {**TINY["data"], "n_per_class": n_per_class, "image_size": image_size}}
    scenario["victim"] = {"hidden": [8], "training": {"epochs": 5, "optimizer": "sgd", "batch_size": batch_size}}
    (folder / "case.yaml").write_text(yaml.safe_dump(scenario))
    result = CliRunner().invoke(main, ["validate", str(folder / "case.yaml")])
    _one_line_or_success(result)
    meaningless = batch_size > 2 * n_per_class or image_size < 3  # more than the training set; under the SSIM window
    assert (result.exit_code == 2) == meaningless, result.output


class _Returns(torch.nn.Module):
    def __init__(self, value) -> None:
        super().__init__()
        self.hidden, self.out, self.value = torch.nn.Linear(16, 8), torch.nn.Linear(8, 1), value

    def forward(self, x):
        logits = self.out(torch.relu(self.hidden(x)))
        return self.value if self.value is not None else logits


@BOUNDED
@given(content=st.binary(max_size=200), value=st.one_of(st.none(), SCALARS, st.tuples(SCALARS, SCALARS)))
def test_generated_user_mistakes_get_one_line_never_a_traceback(cases, content, value):
    folder = _case(cases)
    (folder / "model.pt").write_bytes(content)
    result = CliRunner().invoke(main, ["audit", str(folder / "model.pt"), "--data", str(folder / "none.npz"),
                                       "--out", str(folder / "o")])  # fmt: skip
    _one_line_or_success(result)
    assert result.exit_code == 2
    pair = (np.full((4, 16), 0.5), np.array([0, 1, 0, 1]))
    try:
        Auditor(KKTAttack(steps=1, restarts=1), device="cpu").audit(_Returns(value), pair)
    except AuditkitError as error:
        assert value is not None and "\n" not in str(error)
    else:
        assert value is None  # only a forward that returns its outputs is audited
    _only(folder, "model.pt")


@BOUNDED
@given(low=st.floats(-1e-3, 0.5), high=st.floats(0.5, 1 + 1e-3), eps=st.floats(1e-12, 1e-3))
def test_a_range_complaint_never_contradicts_itself(low, high, eps):
    x = np.linspace(low, high, 96).reshape(6, 16)
    x[0, 0] = 1 + eps  # always out of [0, 1]
    with pytest.raises(AuditkitError) as refused:
        audit_data(x, np.arange(6) % 2, image_shape=(4, 4))
    shown = str(refused.value).split("values in [")[1].split("]")[0]
    smallest, largest = (float(part) for part in shown.split(", "))
    assert smallest < 0 or largest > 1, str(refused.value)  # the numbers shown are outside the range named
