"""The training recorder and the record the audit reads: a plain loop recorded without changing it, Adam's
rescaling undone, an Opacus loop's DP settings, and records that cannot be trusted refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from auditkit import KKTAttack
from auditkit.attacks.registry import build_attack
from auditkit.recording import RecordError, TrainingRecord, TrainingRecorder


def _data(mnist, n: int = 20):
    images, digits = mnist
    order = np.random.default_rng(0).permutation(len(images))
    members, others = order[:n], order[1000:1400]
    mean = images[members].mean(0)
    x = torch.tensor(images[members] - mean, dtype=torch.float32)
    y = torch.tensor(digits[members] % 2, dtype=torch.float32)
    return x, y, images[others] - mean, mean


def _train(model, optimizer, x, y, steps: int, batch: int = 5) -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps // (len(x) // batch)):
        for index in torch.randperm(len(x), generator=generator).split(batch):
            optimizer.zero_grad()
            F.binary_cross_entropy_with_logits(model(x[index]).squeeze(-1), y[index]).backward()
            optimizer.step()


def _mlp(width: int = 64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(784, width, bias=False), nn.ReLU(), nn.Linear(width, 1, bias=False))


def test_a_plain_loop_is_recorded_without_changing_it(mnist, tmp_path):
    x, y, _, _ = _data(mnist)
    model = _mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    recorder = TrainingRecorder(model, optimizer, tmp_path / "record", every=7, batch_size=5)
    _train(model, optimizer, x, y, steps=40)
    record = recorder.close()
    manifest = record.manifest
    assert manifest.steps == 40 and [s.step for s in manifest.snapshots] == [7, 14, 21, 28, 35, 40]
    assert manifest.optimizer.class_ == "Adam" and manifest.optimizer.settings["lr"] == 1e-3
    assert all(torch.equal(record.initial_state[name], initial[name]) for name in initial)
    twin = _mlp()  # the same loop without a recorder ends at the same weights
    twin_optimizer = torch.optim.Adam(twin.parameters(), lr=1e-3)
    _train(twin, twin_optimizer, x, y, steps=40)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))


def test_adams_rescaling_undone_puts_the_first_layers_update_back_in_the_span_of_the_inputs(mnist, tmp_path):
    x, y, _, _ = _data(mnist)
    for optimizer_class, settings in ((torch.optim.Adam, {}), (torch.optim.AdamW, {"weight_decay": 1e-2})):
        model = _mlp()
        start = model[0].weight.detach().double().clone()
        optimizer = optimizer_class(model.parameters(), lr=1e-3, **settings)
        folder = tmp_path / optimizer_class.__name__
        recorder = TrainingRecorder(model, optimizer, folder, every=1)
        _train(model, optimizer, x, y, steps=40)
        update = recorder.close().updates["0.weight"]
        basis = torch.linalg.svd(x.double(), full_matrices=False)[2]  # the training inputs' row space
        assert _outside(update, basis) < 1e-4  # a combination of the inputs, up to float32 rounding
        assert _outside(model[0].weight.detach().double() - start, basis) > 0.05  # the raw change is not


def _outside(matrix: torch.Tensor, basis: torch.Tensor) -> float:
    """The share of ``matrix``'s rows outside the row space ``basis`` spans (orthonormal rows)."""
    return float((matrix - matrix @ basis.T @ basis).norm() / matrix.norm())


def test_the_span_attack_reads_membership_from_an_adam_record(mnist, tmp_path):
    x, y, others, mean = _data(mnist)
    model = _mlp(128)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    recorder = TrainingRecorder(model, optimizer, tmp_path / "record", every=5)
    _train(model, optimizer, x, y, steps=100)
    span = build_attack({"name": "span", "programs": 10})
    result = recorder.audit(train=(x, y), nonmembers=others, mean=mean, attack=span, device="cpu")
    summary = result.summary()
    assert summary.verdict in ("conclusive", "weak") and summary.auc > 0.95, summary.finding
    assert any("training record record: Adam, 100 steps" in note for note in result.data_notes)
    from auditkit import Auditor

    initial = TrainingRecord.load(tmp_path / "record").initial_state  # without the record's snapshots:
    alone = Auditor(span, device="cpu").audit(model, train=(x, y), nonmembers=others, mean=mean, init=initial)
    assert alone.summary().verdict == "not applicable"  # Adam's rescaling leaves the span unreadable


def test_an_opacus_loops_record_gives_epsilon_and_the_ceiling_unaided(mnist, tmp_path):
    from opacus import PrivacyEngine

    x, y, others, mean = _data(mnist)
    model = _mlp(32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=5)
    engine = PrivacyEngine(accountant="rdp")
    private, optimizer, loader = engine.make_private(
        module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=1.0, max_grad_norm=1.0
    )
    recorder = TrainingRecorder(private, optimizer, tmp_path / "record", every=4, privacy_engine=engine, delta=1e-5)
    for _ in range(3):
        for batch_x, batch_y in loader:
            optimizer.zero_grad()
            F.binary_cross_entropy_with_logits(private(batch_x).squeeze(-1), batch_y).backward()
            optimizer.step()
    result = recorder.audit(train=(x, y), nonmembers=others, mean=mean, attack=KKTAttack(steps=20, restarts=1))
    assert result.privacy is not None
    assert result.privacy.epsilon == pytest.approx(engine.get_epsilon(1e-5), rel=1e-6)
    assert result.privacy.noise_multiplier == 1.0 and result.bounds is not None


def _recorded(mnist, folder, every: int = 5):
    x, y, _, _ = _data(mnist)
    model = _mlp(16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    recorder = TrainingRecorder(model, optimizer, folder, every=every)
    _train(model, optimizer, x, y, steps=20)
    recorder.close()
    return model


def _flip_first_byte(path) -> None:
    content = path.read_bytes()
    path.write_bytes(bytes([content[0] ^ 1]) + content[1:])


def _edit_manifest(folder, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda f: _flip_first_byte(f / "step_000000010.safetensors"),
         "step_000000010.safetensors: changed since it was recorded"),
        (lambda f: (f / "step_000000015.safetensors").unlink(), "step_000000015.safetensors: missing"),
        (lambda f: _edit_manifest(f, lambda m: m["snapshots"].reverse()), "snapshots out of step order"),
        (lambda f: _edit_manifest(f, lambda m: m.update(closed=False)), "the record was not closed"),
        (lambda f: _edit_manifest(f, lambda m: m.update(every="5")), "manifest.json: every: Input should be a valid"),
        (lambda f: (f / "manifest.json").unlink(), "manifest.json: not found: is"),
    ],
    ids=["tampered snapshot", "missing snapshot", "out of order", "not closed", "tampered manifest", "no manifest"],
)  # fmt: skip
def test_a_record_that_cannot_be_trusted_is_refused_naming_the_file(mnist, tmp_path, damage, expected):
    _recorded(mnist, tmp_path)
    damage(tmp_path)
    with pytest.raises(RecordError, match=expected):
        TrainingRecord.load(tmp_path)


def test_a_record_of_another_model_and_a_bad_record_on_the_command_line(mnist, tmp_path):
    from click.testing import CliRunner

    from auditkit.cli import main

    model = _recorded(mnist, tmp_path / "record")
    other = nn.Sequential(nn.Linear(784, 8, bias=False), nn.ReLU(), nn.Linear(8, 1, bias=False))
    with pytest.raises(RecordError, match="a record of another model \\(its '0.weight' is \\(16, 784\\)"):
        TrainingRecord.load(tmp_path / "record", other)
    x, y, others, mean = _data(mnist)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    np.savez(tmp_path / "data.npz", train_x=x.numpy(), train_y=y.numpy(), nonmember_x=others, mean=mean)
    (tmp_path / "record" / "step_000000005.safetensors").unlink()
    command = ["audit", str(tmp_path / "model.pt"), "--data", str(tmp_path / "data.npz"), "--record",
               str(tmp_path / "record"), "--steps", "10", "--quiet", "--out", str(tmp_path / "out")]  # fmt: skip
    ran = CliRunner().invoke(main, command)
    assert ran.exit_code == 2 and ran.output.count("\n") == 1, ran.output
    assert "step_000000005.safetensors: missing" in ran.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "arguments, expected",
    [({"every": 0}, "every: expected a positive number"), ({"delta": 1e-5}, "privacy_engine and delta: give both")],
)
def test_recorder_settings_that_cannot_be_are_named(tmp_path, arguments, expected):
    from auditkit.errors import ConfigError

    model = _mlp(4)
    with pytest.raises(ConfigError, match=expected):
        TrainingRecorder(model, torch.optim.Adam(model.parameters()), tmp_path, **arguments)


def test_a_lightning_fit_is_recorded_by_the_callback(mnist, tmp_path):
    lightning = pytest.importorskip("lightning")
    from auditkit.recording.lightning import recorder_callback

    x, y, others, mean = _data(mnist)

    class Classifier(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _mlp(64)

        def forward(self, inputs):
            return self.net(inputs)

        def training_step(self, batch, _):
            inputs, targets = batch
            return F.binary_cross_entropy_with_logits(self(inputs).squeeze(-1), targets)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    module, callback = Classifier(), recorder_callback(tmp_path / "record", every=10)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=5)
    trainer = lightning.Trainer(max_epochs=10, callbacks=[callback], logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.fit(module, loader)
    assert callback.record.manifest.steps == 40 and callback.record.manifest.optimizer.class_ == "Adam"
    span = build_attack({"name": "span", "programs": 10})
    from auditkit import Auditor

    result = Auditor(span, device="cpu").audit(
        module, train=(x, y), nonmembers=others, mean=mean, record=tmp_path / "record"
    )
    assert result.summary().verdict in ("conclusive", "weak")
