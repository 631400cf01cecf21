"""Crafted and careless inputs (issue 30): no write outside the chosen folder, nothing large allocated before it
is checked, no silent conversion; each case one clear refusal."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TINY

from auditkit import Auditor, KKTAttack
from auditkit.cli import main
from auditkit.config.loading import load_scenario
from auditkit.config.yaml_files import read_yaml
from auditkit.data.files import load_audit_data
from auditkit.data.user_data import audit_data
from auditkit.errors import ConfigError, DataError, ScenarioError, UnsupportedModelError
from auditkit.victims import build_mlp
from auditkit.victims.user_model import mlp_from_state_dict


def test_an_empty_out_or_cache_is_refused_not_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY)
    empty_out = CliRunner().invoke(main, ["run", "tiny.yaml", "--out", ""])
    assert empty_out.exit_code == 2 and "empty path" in empty_out.output
    monkeypatch.setenv("AUDITKIT_CACHE", "")
    empty_cache = CliRunner().invoke(main, ["run", "tiny.yaml", "--out", "out"])
    assert empty_cache.exit_code == 2 and "AUDITKIT_CACHE is set but empty" in empty_cache.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tiny.yaml"]  # (out: locked, then left empty)
    assert not any((tmp_path / "out").rglob("*.json"))


def test_a_run_in_which_no_victim_could_be_audited_does_not_exit_0(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITKIT_CACHE", str(tmp_path / "cache"))
    wild = TINY.replace("[{name: none}]", "[{name: wild, kind: recipe, training: {lr: 1000.0}}]")
    (tmp_path / "wild.yaml").write_text(wild.replace("hidden: [16]", "hidden: [16], init_scale: 5.0"))
    result = CliRunner().invoke(main, ["run", str(tmp_path / "wild.yaml"), "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 1 and "no victim could be audited" in result.output


@pytest.mark.parametrize(
    "block, expected",
    [
        ("none", "exists and is not a folder, but victim none's audit is written there"),
        ("report.html", "a folder where the run writes a file"),
        ("summary.json", "a folder where the run writes a file"),
    ],
)
def test_an_out_folder_the_run_could_not_write_into_is_refused_before_training(tmp_path, monkeypatch, block, expected):
    monkeypatch.setenv("AUDITKIT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "tiny.yaml").write_text(TINY)
    out = tmp_path / "out"
    out.mkdir()
    (out / block).mkdir() if block != "none" else (out / block).write_text("a file, not a folder")
    result = CliRunner().invoke(main, ["run", str(tmp_path / "tiny.yaml"), "--out", str(out), "--quiet"])
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.pt"))  # nothing trained


def test_cached_weights_swapped_under_a_recomputed_checksum_are_not_trusted(tmp_path, monkeypatch):
    import hashlib
    import json

    monkeypatch.setenv("AUDITKIT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "tiny.yaml").write_text(TINY)
    first = CliRunner().invoke(main, ["run", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "a"), "--quiet"])
    assert first.exit_code == 0, first.output
    (weights,) = (tmp_path / "cache" / "victims").glob("*.pt")
    state = torch.load(weights, weights_only=True)
    torch.save({k: torch.zeros_like(v) for k, v in state.items()}, weights)  # another model, same shapes
    entry = json.loads(weights.with_suffix(".json").read_text())
    entry["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    weights.with_suffix(".json").write_text(json.dumps(entry))
    again = CliRunner().invoke(main, ["run", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "b")])
    assert again.exit_code == 0 and "does not reproduce its own log" in again.output, again.output
    assert "victim loaded from cache" not in again.output
    assert not all((t == 0).all() for t in torch.load(weights, weights_only=True).values())  # replaced


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: Auditor(ssim_threshold=5), "ssim_threshold: expected a number between 0 and 1"),
        (lambda: Auditor(seed=-1), "seed: expected an integer"),
        (lambda: Auditor(reference_size=0), "reference_size"),
        (lambda: Auditor("kkt"), "attack: expected an Attack"),
    ],
)
def test_auditor_arguments_are_checked(make, expected):
    with pytest.raises(ConfigError, match=expected):
        make()


def test_audit_arguments_of_the_wrong_kind_are_named():
    auditor, model = Auditor(KKTAttack(steps=1), device="cpu"), build_mlp(4, [3])
    pair = (np.full((4, 4), 0.5), np.array([0, 1, 0, 1]))
    with pytest.raises(UnsupportedModelError, match="model: expected a torch.nn.Module, got function"):
        auditor.audit(lambda x: x, pair)
    with pytest.raises(ConfigError, match="progress: expected True/False or a callback"):
        auditor.audit(model, pair, progress="yes")
    with pytest.raises(DataError, match="is a path; load it first"):
        auditor.audit(model, "train.npz")


def _weights(**changes) -> dict:
    state = {"0.weight": torch.randn(3, 4), "2.weight": torch.randn(1, 3)}
    return {**state, **changes}


@pytest.mark.parametrize(
    "state, expected",
    [
        (_weights(**{"_module.0.weight": torch.randn(3, 4)}), "both '0.weight' once unwrapped"),
        (_weights(**{"0.weight": torch.ones(3, 4, dtype=torch.int64)}), "torch.int64 values"),
        (_weights(**{"0.weight": torch.randn(3, 4, dtype=torch.complex64)}), "torch.complex64 values"),
        (_weights(**{"0.weight": torch.randn(3, 4).to_sparse()}), "a torch.sparse_coo tensor"),
        (_weights(**{"0.weight": torch.empty(3, 4, device="meta")}), "on meta"),
        (_weights(**{"0.weight": torch.randn(1, 4).expand(3, 4)}), "an expanded (stride 0) tensor"),
    ],
)
def test_weights_the_attack_cannot_use_as_they_are_are_refused(state, expected):
    with pytest.raises(UnsupportedModelError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        mlp_from_state_dict(state, "model.pt")


def test_an_npz_header_larger_than_its_data_is_refused_before_loading(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 784)})
    path = tmp_path / "train.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("train_x.npy", header.getvalue() + b"\0" * 64)
        labels = io.BytesIO()
        np.save(labels, np.array([0, 1]))
        archive.writestr("train_y.npy", labels.getvalue())
    with pytest.raises(DataError, match="train.npz: train_x declare 6,272,000,000,000,000 bytes"):
        load_audit_data(path)


def test_yaml_aliases_are_refused_before_they_expand(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    lines = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")
    ]
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ScenarioError, match="aliases .* are not allowed"):
        read_yaml(bomb)


@pytest.mark.parametrize("shape", [[4.7, 4.2], [True, 16], [0, 16], [[4, 4]], "4x4"])
def test_an_image_shape_is_integers_never_rounded(shape):
    with pytest.raises(DataError, match="image_shape: expected positive integers"):
        audit_data(np.full((2, 16), 0.5), np.array([0, 1]), image_shape=shape)


def test_a_set_mistake_is_blamed_on_the_setting_not_the_preset_file():
    with pytest.raises(ScenarioError) as error:
        load_scenario("toy_colors", {"foo": 1})
    assert str(error.value).startswith("settings given over the file (--set, --seed, --device): foo: unknown field")


@pytest.mark.parametrize(
    "data, expected",
    [
        ("{dataset: toy_colors, path: /data/mnist}", "'path' is not read by dataset 'toy_colors'"),
        ("{dataset: mnist, image_size: 16}", "'image_size' only apply to dataset 'toy_colors', not 'mnist'"),
        ("{dataset: mnist, noise: 0.5}", "'noise' only apply to dataset 'toy_colors'"),
        ("{dataset: mnist, negative: [1], positive: [2]}", "'negative' and 'positive': for task 'digits', not"),
    ],
)
def test_settings_the_dataset_would_ignore_are_refused(tmp_path, data, expected):
    (tmp_path / "case.yaml").write_text(f"name: case\ndefenses: [{{name: none}}]\ndata: {data}\n")
    with pytest.raises(ScenarioError, match=expected):
        load_scenario(tmp_path / "case.yaml")


def test_a_missing_parent_is_named_with_the_file_that_extends_it(tmp_path):
    (tmp_path / "child.yaml").write_text("extends: /etc/passwd\ndefenses: [{name: none}]\n")
    with pytest.raises(ScenarioError, match=r"child.yaml: extends: scenario '/etc/passwd' not found"):
        load_scenario(tmp_path / "child.yaml")


@pytest.mark.parametrize(
    "change, expected",
    [
        ("victim: {hidden: [65536, 65536], training: {epochs: 50}}", "victim none: needs about"),
        ("attack: {steps: 10, restarts: 1024, candidates_per_sample: 1000}", "victim none: needs about"),
        ("data: {dataset: toy_colors, n_per_class: 100000, test_per_class: 20, image_size: 256}", "data (toy_colors)"),
    ],
)
def test_settings_that_would_exhaust_memory_are_refused_before_anything_is_allocated(tmp_path, change, expected):
    key = change.split(":")[0]
    text = "\n".join(change if line.startswith(f"{key}:") else line for line in TINY.splitlines()) + "\n"
    (tmp_path / "big.yaml").write_text(text)
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "big.yaml")])
    assert result.exit_code == 2 and expected in result.output and "GiB budget" in result.output, result.output


def test_the_memory_budget_is_configurable(tmp_path, monkeypatch):
    (tmp_path / "tiny.yaml").write_text(TINY)
    monkeypatch.setenv("AUDITKIT_MEMORY_GB", "0.5")
    assert CliRunner().invoke(main, ["validate", str(tmp_path / "tiny.yaml")]).exit_code == 0
    monkeypatch.setenv("AUDITKIT_MEMORY_GB", "0.00001")
    refused = CliRunner().invoke(main, ["validate", str(tmp_path / "tiny.yaml")])
    assert refused.exit_code == 2 and "more than the 1e-05 GiB budget" in refused.output, refused.output
    monkeypatch.setenv("AUDITKIT_MEMORY_GB", "lots")
    bad = CliRunner().invoke(main, ["validate", str(tmp_path / "tiny.yaml")])
    assert bad.exit_code == 2 and "AUDITKIT_MEMORY_GB: expected a positive number" in bad.output


def test_the_python_api_checks_the_attack_against_the_memory_budget_before_it_runs(monkeypatch):
    monkeypatch.setenv("AUDITKIT_MEMORY_GB", "1")
    pair = (np.full((4, 16), 0.5), np.array([0, 1, 0, 1]))
    huge = KKTAttack(steps=1, restarts=1024, candidates_per_sample=1000)
    with pytest.raises(ConfigError, match=r"the audit of victim: needs about .* GiB budget"):
        Auditor(huge, device="cpu").audit(build_mlp(16, [16]), pair)
    wide = build_mlp(16, [4096])  # 64 x 400 candidates x 4,113 units x 8 copies x 4 bytes: 3.1 GiB
    with pytest.raises(ConfigError, match="GiB budget"):
        Auditor(KKTAttack(steps=1, restarts=64, candidates_per_sample=100), device="cpu").audit(wide, pair)
    Auditor(KKTAttack(steps=1, restarts=1), device="cpu").audit(wide, pair)  # the same model, a small attack


def test_meta_and_sparse_tensors_are_refused_by_the_python_api():
    auditor, model = Auditor(KKTAttack(steps=1), device="cpu"), build_mlp(4, [3])
    x, y = torch.full((4, 4), 0.5), torch.tensor([0, 1, 0, 1])
    with pytest.raises(UnsupportedModelError, match="meta device"):
        auditor.audit(build_mlp(4, [3]).to("meta"), (x, y))
    with pytest.raises(DataError, match="train inputs: a tensor on the meta device"):
        auditor.audit(model, (x.to("meta"), y))
    with pytest.raises(DataError, match=r"train inputs: a torch.sparse_coo tensor; give a dense one"):
        auditor.audit(model, (x.to_sparse(), y))


def test_non_members_that_are_training_inputs_are_removed_and_the_removal_stated():
    x = np.random.default_rng(0).uniform(size=(6, 16))
    y = np.array([0, 1] * 3)
    pool = np.concatenate([x[:2], np.random.default_rng(1).uniform(size=(5, 16))])
    data = audit_data(x, y, nonmembers=pool)
    assert len(data.pool_x) == 5 and not {r.tobytes() for r in data.pool_x} & {r.tobytes() for r in x}
    assert "2 of 7 non-members equal a training input and were removed" in " ".join(data.notes)
    only_members = audit_data(x, y, nonmembers=x)
    assert len(only_members.pool_x) == 0 and "6 of 6 non-members" in " ".join(only_members.notes)
    assert not any("removed" in note for note in audit_data(x, y, nonmembers=pool[2:]).notes)


@pytest.mark.parametrize(
    "shape, expected",
    [((2, 2, 4), "has 2 channels"), ((16, 1), "a side under 3 pixels"), ((1, 16), "a side under 3 pixels")],
)
def test_image_shapes_that_are_not_images_are_refused(shape, expected):
    with pytest.raises(DataError, match=expected):
        audit_data(np.full((2, 16), 0.5), np.array([0, 1]), image_shape=shape)


def test_a_data_file_that_is_not_an_npz_archive_is_named(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 16)))
    with pytest.raises(DataError, match=r"x.npy: not a readable .* not a zip of .npy arrays"):
        load_audit_data(tmp_path / "x.npy")


@pytest.mark.parametrize(
    "setting", [{"lr_x": 1e300}, {"lr_lambda": 1e300}, {"init_scale": 1e300}, {"alpha": 1e300}, {"lambda_min": 1e9}]
)
def test_attack_settings_that_would_overflow_are_refused(setting):
    with pytest.raises(ConfigError, match=f"attack.{next(iter(setting))}: Input should be less than or equal to"):
        KKTAttack(**setting)
    with pytest.raises(ConfigError, match="search_ranges"):
        KKTAttack(search_ranges={"lr_x": [0.01, 1e300]})


def test_a_file_is_never_written_over_a_folder(tmp_path):
    from auditkit.errors import AuditkitError
    from auditkit.storage.files import write_text

    (tmp_path / "report.html").mkdir()
    with pytest.raises(AuditkitError, match="report.html: a folder where a file is to be written"):
        write_text(tmp_path / "report.html", "x")
    assert (tmp_path / "report.html").is_dir() and [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_held_out_labels_without_their_inputs_are_refused_not_ignored(tmp_path):
    np.savez(tmp_path / "d.npz", train_x=np.full((2, 16), 0.5), train_y=np.array([0, 1]), test_y=np.array([0, 1]))
    with pytest.raises(DataError, match="d.npz: test_y without test_x"):
        load_audit_data(tmp_path / "d.npz")


def test_a_set_by_list_index_and_a_folder_for_a_scenario_are_named(tmp_path):
    (tmp_path / "case.yaml").write_text(TINY)
    indexed = CliRunner().invoke(main, ["validate", str(tmp_path / "case.yaml"), "--set", "defenses.0.name=x"])
    assert indexed.exit_code == 2 and "a list item cannot be set by its index" in indexed.output, indexed.output
    folder = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert folder.exit_code == 2 and "a folder, not a file" in folder.output, folder.output


def test_one_channel_images_given_as_c_h_w_are_drawn():
    from auditkit.report.plots import thumbnail

    assert thumbnail(np.full((1, 4, 4), 0.5)).startswith(b"\x89PNG") and thumbnail(np.zeros((3, 4, 4)))


def _declared_only_npz(path, shapes: dict[str, tuple[int, ...]]) -> None:
    """An .npz whose arrays' headers declare ``shapes`` (float32) but hold a few bytes each: what a zip bomb's
    headers say before anything is inflated."""
    with zipfile.ZipFile(path, "w") as archive:
        for key, shape in shapes.items():
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
            archive.writestr(f"{key}.npy", header.getvalue() + b"\0" * 16)


def test_the_command_line_checks_the_data_files_declared_sizes_before_reading_it(tmp_path):
    import tracemalloc

    torch.save(build_mlp(784, [32]).state_dict(), tmp_path / "model.pt")
    _declared_only_npz(tmp_path / "big.npz", {"train_x": (60_000, 784), "train_y": (60_000,)})
    tracemalloc.start()
    result = CliRunner().invoke(main, ["audit", str(tmp_path / "model.pt"), "--data", str(tmp_path / "big.npz"),
                                       "--out", str(tmp_path / "out"), "--device", "cpu"])  # fmt: skip
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "the audit of model.pt on big.npz: needs about" in result.output and "identification" in result.output
    assert peak < 64 * 2**20  # refused from the headers: nothing of the declared 188 MB was read
    assert not (tmp_path / "out").exists()


def test_the_python_api_checks_identification_and_the_dp_ceiling_before_the_attack(monkeypatch):
    import time

    monkeypatch.setenv("AUDITKIT_MEMORY_GB", "0.05")
    rows = np.random.default_rng(0).random((2000, 16))
    labels = np.arange(2000) % 2
    auditor = Auditor(KKTAttack(steps=100_000, restarts=1), device="cpu")
    with pytest.raises(ConfigError, match=r"the audit of victim: needs about .*identification"):
        auditor.audit(build_mlp(16, [8]), (rows, labels), nonmembers=rows + 1e-3)
    monkeypatch.setenv("AUDITKIT_MEMORY_GB", "4")
    privacy = {"noise_multiplier": 1.0, "sample_rate": 0.01, "steps": 10**12, "delta": 1e-5}
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"the DP ceiling of 1,000,000,000,000 steps .* needs about .* GiB"):
        auditor.audit(build_mlp(16, [8]), (rows[:20], labels[:20]), privacy=privacy)
    assert time.perf_counter() - started < 30  # refused before a 100,000-step attack


def test_a_scenarios_dp_ceiling_is_checked_when_it_is_planned(tmp_path, monkeypatch):
    dp = "defenses: [{name: d, kind: dp_sgd, dp: {noise_multiplier: 1.0, batch_size: 2, epochs: 1000000}}]"
    text = TINY.replace("defenses: [{name: none}]", dp)
    (tmp_path / "long.yaml").write_text(text)
    monkeypatch.setenv("AUDITKIT_MEMORY_GB", "0.01")
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "long.yaml")])
    assert (
        result.exit_code == 2 and "the DP ceiling of" in result.output and "privacy-loss distribution" in result.output
    )
