"""Models, data and CI output as people's own pipelines give them: the common ``forward`` idioms, normalised
inputs (mean and std), DP settings on the command line, messages that say what to do next, and the gate's
JUnit XML and job summary."""

from __future__ import annotations

import functools
import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from auditkit import Auditor, KKTAttack
from auditkit.attacks.kkt.kernel import extract_layers, forward
from auditkit.attacks.kkt.network import ReLUNetwork, takes_flat_rows
from auditkit.attacks.kkt.tracing import ModelGraphError, linear_chain
from auditkit.data.files import load_audit_data
from auditkit.data.user_data import audit_data
from auditkit.errors import DataError


class TutorialMLP(nn.Module):
    """The classifier of a PyTorch tutorial: flattened by ``view`` on ``x.shape``, F.relu, one logit squeezed."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, 16), nn.Linear(16, 1)

    def forward(self, x):
        x = x.view(x.shape[0], -1)
        x = F.relu(self.fc1(x))
        return self.fc2(x).squeeze(-1)


class SizedMLP(nn.Module):
    """Other spellings: ``view(x.size(0), -1)``, ``torch.flatten``, the ``relu`` method, ``torch.squeeze``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, 16), nn.Linear(16, 1)

    def forward(self, x):
        x = torch.flatten(x.view(x.size(0), -1), 1)
        x = self.fc1(x.unsqueeze(1)).relu()
        return torch.squeeze(self.fc2(x.reshape(x.size(0), x.size(1) * x.size(2))), 1)


class ReshapingCNN(nn.Module):
    """A CNN taking flat rows, reshaped by ``view(x.size(0), 1, 28, 28)``; flattened by the method later."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 2, 5), nn.Linear(2 * 24 * 24, 1)

    def forward(self, x):
        x = F.relu(self.conv(x.view(x.size(0), 1, 28, 28)))
        return self.fc(x.flatten(1))


class TanhMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, 16), nn.Linear(16, 1)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class ShapeBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 1)

    def forward(self, x):
        return self.fc(x.flatten(1) if x.dim() > 2 else x)


@pytest.mark.parametrize("model_class", [TutorialMLP, SizedMLP])
def test_common_forward_idioms_read_as_the_mlp_they_compute(model_class):
    torch.manual_seed(0)
    model = model_class().double()
    assert linear_chain(model) == [model.fc1, model.fc2]
    layers = extract_layers(model)
    x = torch.rand(5, 784, dtype=torch.float64)
    np.testing.assert_allclose(forward(layers, x).detach().reshape(-1), model(x).detach(), atol=1e-12)
    np.testing.assert_allclose(ReLUNetwork(model)(x).detach(), model(x).detach(), atol=1e-12)


def test_a_cnn_reshaping_its_rows_with_the_batch_size_takes_flat_rows():
    model = ReshapingCNN().double()
    assert takes_flat_rows(model)
    x = torch.rand(3, 784, dtype=torch.float64)
    np.testing.assert_allclose(ReLUNetwork(model)(x).detach(), model(x).detach().reshape(-1), atol=1e-12)


def _line_of(model_class: type, text: str) -> int:
    lines, first = inspect.getsourcelines(model_class)
    return first + next(index for index, line in enumerate(lines) if text in line)


@pytest.mark.parametrize(
    "model_class, text, expected",
    [
        (TanhMLP, "torch.tanh", "operation 'tanh'"),
        (ShapeBranch, "x.dim() > 2", "could not be traced with torch.fx"),
    ],
    ids=["unsupported operation", "branch on the shape"],
)
def test_what_is_still_refused_names_the_users_source_line(model_class, text, expected):
    line = _line_of(model_class, text)
    for read in (linear_chain, ReLUNetwork):
        with pytest.raises(ModelGraphError) as refused:
            read(model_class())
        assert expected in str(refused.value)
        assert f"(at test_pipelines.py line {line}: " in str(refused.value)


def test_the_python_api_audits_a_tutorial_model(small_victim):
    _, data = small_victim
    torch.manual_seed(0)
    model = TutorialMLP().double()
    auditor = Auditor(KKTAttack(steps=20, restarts=1), device="cpu")
    result = auditor.audit(model, train=(torch.as_tensor(data.train_x), data.train_y), mean=data.mean)
    assert result.summary().n == len(data.train_x)


def _normalised(mnist, channels: int):
    images, _ = mnist
    pixels = np.concatenate([images[:20]] * channels, 1)  # (20, channels * 784), channel-major
    mean = np.array([0.1307, 0.2, 0.3][:channels])
    std = np.array([0.3081, 0.25, 0.5][:channels])
    inputs = (pixels.reshape(20, channels, 784) - mean[:, None]) / std[:, None]
    return pixels, inputs.reshape(20, -1), mean, std, np.arange(20) % 2


@pytest.mark.parametrize("channels", [1, 3])
def test_inputs_normalised_by_mean_and_std_are_read_in_pixel_space(mnist, channels):
    pixels, inputs, mean, std, labels = _normalised(mnist, channels)
    shape = (channels, 28, 28)
    for given_mean, given_std in ((mean, std), (np.repeat(mean, 784), np.repeat(std, 784))):
        data = audit_data(inputs, labels, mean=given_mean, std=given_std, image_shape=shape)
        np.testing.assert_allclose(data.to_pixels(data.train_x).reshape(20, -1), pixels, atol=1e-12)
        np.testing.assert_allclose(data.lower, np.repeat(-mean / std, 784))
        np.testing.assert_allclose(data.upper, np.repeat((1 - mean) / std, 784))
        assert "(pixels in [0, 1] - mean) / std" in data.notes[1]


def test_a_scalar_std_and_the_npz_key(mnist, tmp_path):
    pixels, inputs, mean, std, labels = _normalised(mnist, 1)
    np.savez(tmp_path / "data.npz", train_x=inputs, train_y=labels, mean=mean[0], std=std[0])
    data = load_audit_data(tmp_path / "data.npz")
    np.testing.assert_allclose(data.to_pixels(data.train_x).reshape(20, -1), pixels, atol=1e-12)


@pytest.mark.parametrize(
    "std, expected",
    [
        (0.0, "std: holds values <= 0"),
        (np.array([0.3, 0.3]), r"std: 2 values, but the inputs have 784 features \(give one number, one per channel"),
        (np.nan, "std: holds NaN or infinite values"),
        ("wide", "std: <U4 values; expected numbers"),
        (0.5, r"train inputs \(train_x\) \* std \+ mean lie in .* the mean and std do not belong to these inputs"),
    ],
    ids=["zero", "wrong size", "nan", "text", "another std"],
)
def test_a_std_that_cannot_be_the_inputs_is_refused_naming_it(mnist, std, expected):
    _, inputs, mean, _, labels = _normalised(mnist, 1)
    with pytest.raises(DataError, match=expected):
        audit_data(inputs, labels, mean=mean, std=std)


def test_the_audit_shows_normalised_inputs_as_their_pixels(small_victim):
    _, data = small_victim
    std = 0.3081
    pixels = data.train_x + data.mean
    model = nn.Sequential(nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 1)).double()
    auditor = Auditor(KKTAttack(steps=20, restarts=1), device="cpu")
    result = auditor.audit(model, train=((pixels - 0.1307) / std, data.train_y), mean=0.1307, std=std)
    np.testing.assert_allclose(result.train_images.reshape(len(pixels), -1), pixels, atol=1e-9)
    assert result.evidence["std"].shape == (784,)


def _saved_user_model(mnist, folder):
    """A user's script: 20 digits normalised by mean and std, a tutorial MLP trained a little, saved as the
    tutorial's checkpoint dict; the data file with non-members and a held-out test set."""
    images, digits = mnist
    members = np.concatenate([np.flatnonzero(digits % 2 == parity)[:10] for parity in (0, 1)])
    others = np.setdiff1d(np.arange(len(images)), members)[::20][:150]
    scaled = (images - 0.1307) / 0.3081
    torch.manual_seed(0)
    model = TutorialMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.tensor(scaled[members], dtype=torch.float32), torch.tensor(digits[members] % 2, dtype=torch.float32)
    for _ in range(100):
        optimizer.zero_grad()
        F.binary_cross_entropy_with_logits(model(x), y).backward()
        optimizer.step()
    torch.save({"model_state_dict": model.state_dict(), "epoch": 1}, folder / "checkpoint.pt")
    np.savez(folder / "data.npz", train_x=scaled[members], train_y=digits[members] % 2, nonmember_x=scaled[others],
             test_x=scaled[others[:50]], test_y=digits[others[:50]] % 2, mean=0.1307, std=0.3081)  # fmt: skip


def _cli(folder, *arguments, env=None):
    from click.testing import CliRunner

    from auditkit.cli import main

    command = ["audit", str(folder / "checkpoint.pt"), "--data", str(folder / "data.npz"), "--steps", "20", "--quiet"]
    return CliRunner().invoke(main, [*command, *arguments], env=env)


def test_dp_settings_on_the_command_line_give_epsilon_and_where_the_ceiling_starts(mnist, tmp_path):
    from auditkit import RunResult

    _saved_user_model(mnist, tmp_path)
    (tmp_path / "dp.yaml").write_text("noise_multiplier: 1.1\nsample_rate: 0.05\nsteps: 400\naccountant: prv\n")
    ran = _cli(tmp_path, "--out", str(tmp_path / "out"), "--dp", str(tmp_path / "dp.yaml"), "--delta", "1e-5")
    assert ran.exit_code == 0, ran.output
    result = RunResult.load(tmp_path / "out")["checkpoint"]
    assert result.privacy.noise_multiplier == 1.1 and result.privacy.accountant == "prv"
    assert 0 < result.privacy.epsilon < 10 and result.privacy.delta == 1e-5
    assert "The model was trained with DP (epsilon" in result.summary().finding
    assert (
        "the ceiling falls below 1 only at epsilon under" in result.summary().finding
        or not result.bounds.identified.vacuous
    )


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--dp-noise", "1.0", "--delta", "1e-5"], "error: --dp-sample-rate, --dp-steps: missing"),
        (["--dp-noise", "-1", "--dp-sample-rate", "0.1", "--dp-steps", "10", "--delta", "1e-5"], "error: --dp-noise: "),
        (
            ["--dp-noise", "1", "--dp-sample-rate", "1.5", "--dp-steps", "10", "--delta", "1e-5"],
            "error: --dp-sample-rate: ",
        ),
        (["--dp", "FOLDER/bad.yaml"], "error: FOLDER/bad.yaml: sigma: unknown key"),
    ],
    ids=["missing", "negative noise", "rate over 1", "unknown key in the file"],
)
def test_dp_settings_that_cannot_be_are_named_in_one_line(mnist, tmp_path, arguments, expected):
    _saved_user_model(mnist, tmp_path)
    (tmp_path / "bad.yaml").write_text("sigma: 1.0\nnoise_multiplier: 1.0\nsample_rate: 0.1\nsteps: 5\ndelta: 1e-5\n")
    arguments = [argument.replace("FOLDER", str(tmp_path)) for argument in arguments]
    ran = _cli(tmp_path, "--out", str(tmp_path / "out"), *arguments)
    assert ran.exit_code == 2 and ran.output.count("\n") == 1, ran.output
    assert ran.output.startswith(expected.replace("FOLDER", str(tmp_path)))
    assert not (tmp_path / "out").exists()


def test_the_gate_writes_junit_xml_and_the_github_job_summary(mnist, tmp_path):
    import xml.etree.ElementTree as ElementTree

    _saved_user_model(mnist, tmp_path)
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    ran = _cli(tmp_path, "--out", str(tmp_path / "out"), "--fail-if", "identified_fraction > 0.5", "--junit-xml",
               str(tmp_path / "junit.xml"), env={"GITHUB_STEP_SUMMARY": str(summary)})  # fmt: skip
    assert ran.exit_code == 1  # a 20-step attack is not conclusive: the gate fails on the verdict
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {"checkpoint", "checkpoint.span"} and suite.get("tests") == "2"
    failure = cases["checkpoint"].find("failure")
    assert failure is not None and "[checkpoint] verdict" in failure.get("message")
    assert suite.get("failures") == str(sum(case.find("failure") is not None for case in cases.values()))
    assert "identified" in cases["checkpoint"].find("system-out").text
    text = summary.read_text()
    assert text.startswith("earlier step\n### auditkit: audit of checkpoint.pt")  # appended, as GitHub reads it
    assert "| checkpoint | inconclusive |" in text and "Release gate: failed" in text


def test_saved_results_name_input_files_without_the_users_absolute_paths(mnist, tmp_path, monkeypatch):
    _saved_user_model(mnist, tmp_path)
    monkeypatch.chdir(tmp_path)
    ran = _cli(tmp_path, "--out", "out")
    assert ran.exit_code == 0, ran.output
    for written in ("out/summary.json", "out/report.html"):
        assert str(tmp_path) not in (tmp_path / written).read_text()
    assert '"model": "checkpoint.pt"' in (tmp_path / "out" / "summary.json").read_text()


def test_a_failed_premise_says_what_to_do_next(small_victim):
    model, data = small_victim
    untrained = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 1)).double()
    result = Auditor(KKTAttack(steps=20, restarts=1), device="cpu").audit(untrained, data)
    assert "premise fails (next: a model trained by minibatch SGD is read by the owner's attack: give the weights " \
        "training started from (--init, init=)" in result.summary().finding  # fmt: skip


def test_pytest_helper_failures_name_the_samples_the_verdict_and_the_saved_report(small_victim, tmp_path):
    from auditkit.testing import assert_leaks, assert_leaks_at_most, audit

    model, data = small_victim
    result = audit(model, data, attack=KKTAttack(steps=50, restarts=1), device="cpu")
    summary = result.summary()
    with pytest.raises(AssertionError) as failed:
        assert_leaks(result, at_least=1.0, report_to=tmp_path)
    message = str(failed.value)
    assert f"attack identified {summary.identified}/20, expected >= 20 (100%)" in message
    found = result.frame.loc[result.frame["identified"], "sample"].tolist()
    assert f"identified samples: {', '.join(map(str, found)) or 'none'}" in message
    assert f"verdict {summary.verdict}: {summary.finding}" in message
    assert f"report: {tmp_path / result.name / 'report.html'}" in message
    assert (tmp_path / result.name / "report.html").is_file()
    assert_leaks_at_most(result, at_most=1.0, allow_inconclusive=True)  # a fraction: all 20 pass
    with pytest.raises(AssertionError, match=f"expected <= {summary.identified - 1}"):
        assert_leaks_at_most(result, at_most=summary.identified - 1, allow_inconclusive=True)
    with pytest.raises(ValueError, match=r"at_most: a fraction of the training samples lies in \[0, 1\], got 1.5"):
        assert_leaks_at_most(result, at_most=1.5)
    with pytest.raises(TypeError, match="at_least: expected a count"):
        assert_leaks(result, at_least=True)


def test_help_answers_within_a_second_of_a_bare_interpreter():
    import subprocess
    import sys
    import time

    def fastest(arguments: list[str]) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run([sys.executable, *arguments], capture_output=True, check=True)
            times.append(time.perf_counter() - started)
        return min(times)

    bare = fastest(["-c", "pass"])
    for command in (["--help"], ["audit", "--help"], ["run", "--help"]):
        assert fastest(["-c", "from auditkit.cli import entry; entry()", *command]) - bare < 1.0, command


def test_messages_cite_nothing_an_installed_package_lacks():
    from auditkit import OwnerAttack
    from auditkit.environment import DTYPE_NOTES

    for text in (KKTAttack(steps=10).warning(), OwnerAttack(steps=10).warning(), *DTYPE_NOTES.values()):
        assert "benchmarks/" not in text and "README" not in text


class Interrupted(Exception):
    """Stands for Ctrl-C (KeyboardInterrupt would stop pytest itself)."""


@pytest.mark.parametrize(
    "settings, stop_at",
    [
        (dict(steps=60, restarts=4, log_every=10), 30),
        (dict(steps=60, restarts=4, early_stop_step=20, log_every=10), 30),
        (dict(steps=60, restarts=2, refine_steps=20, log_every=10), 50),
        (dict(steps=40, restarts=2, passes=2, log_every=10), 60),
    ],
    ids=["plain", "after early stopping", "after the float64 refinement", "in the second pass"],
)
def test_an_interrupted_attack_continues_bit_for_bit_from_its_checkpoint(settings, stop_at, tmp_path, monkeypatch):
    import auditkit.attacks.kkt.checkpoint as checkpoint
    from auditkit.attacks.base import AttackerKnowledge

    monkeypatch.setattr(checkpoint, "CHECKPOINT_SECONDS", 0.0)  # every step, so the stop below loses none
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3)).double()
    public = np.random.default_rng(1).random((30, 64)) - 0.5
    knowledge = AttackerKnowledge(12, np.full(64, -0.5), np.full(64, 0.5), public)
    attack = KKTAttack(**settings)
    run = functools.partial(attack.run, model, knowledge, seed=3, device="cpu", dtype=torch.float32)
    whole = run()

    def stop(step, loss):
        if step == stop_at:
            raise Interrupted

    with pytest.raises(Interrupted):
        run(progress=stop, checkpoint=tmp_path)
    steps = []
    resumed = run(progress=lambda step, loss: steps.append(step), checkpoint=tmp_path)
    assert 0 < steps[0] <= stop_at  # it continued, not started over
    for name in ("candidates", "lambdas", "labels", "restart", "loss_history", "history_steps"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(whole, name), err_msg=name)
    for name in ("restart_scores", "final_loss", "relative_residual", "diverged", "early_stopped_restarts"):
        assert np.array_equal(getattr(resumed.facts, name), getattr(whole.facts, name), equal_nan=True), name


def test_a_checkpoint_of_another_search_is_not_continued(tmp_path, monkeypatch):
    import auditkit.attacks.kkt.checkpoint as checkpoint
    from auditkit.attacks.base import AttackerKnowledge

    monkeypatch.setattr(checkpoint, "CHECKPOINT_SECONDS", 0.0)
    model = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 1)).double()
    knowledge = AttackerKnowledge(4, np.full(64, -0.5), np.full(64, 0.5), np.zeros((5, 64)))
    KKTAttack(steps=20, restarts=1).run(
        model, knowledge, seed=0, device="cpu", dtype=torch.float32, checkpoint=tmp_path
    )
    steps = []
    again = KKTAttack(steps=20, restarts=1)
    again.run(model, knowledge, seed=1, device="cpu", dtype=torch.float32, checkpoint=tmp_path,
              progress=lambda step, loss: steps.append(step))  # fmt: skip
    assert steps[0] == 0  # another seed: started afresh
    (tmp_path / "pass0.safetensors").write_bytes(b"damaged")
    assert checkpoint.SearchCheckpoint(tmp_path).load(KKTAttack().config, "cpu") is None


def test_run_resume_continues_an_interrupted_attack_to_the_same_result(tmp_path, monkeypatch):
    from conftest import TINY

    import auditkit.attacks.kkt.checkpoint as checkpoint
    from auditkit import load_scenario, run_scenario
    from auditkit.progress import Progress
    from auditkit.running.cache import cache_root

    (tmp_path / "tiny.yaml").write_text(TINY.replace("steps: 10", "steps: 60"))
    scenario = load_scenario(str(tmp_path / "tiny.yaml"))
    whole = run_scenario(scenario, tmp_path / "whole", progress=Progress(False))
    monkeypatch.setattr(checkpoint, "CHECKPOINT_SECONDS", 0.0)
    keep, saves = checkpoint.SearchCheckpoint.keep, []

    def interrupted_keep(self, state, ended=False):
        keep(self, state, ended)
        saves.append(state.step)
        if len(saves) == 30:
            raise Interrupted

    monkeypatch.setattr(checkpoint.SearchCheckpoint, "keep", interrupted_keep)
    with pytest.raises(Interrupted):
        run_scenario(scenario, tmp_path / "resumed", progress=Progress(False))
    monkeypatch.setattr(checkpoint.SearchCheckpoint, "keep", keep)
    load, continued = checkpoint.SearchCheckpoint.load, []

    def recorded_load(self, cfg, device):
        state = load(self, cfg, device)
        continued.append(None if state is None else state.step)  # the loop moves the state's step on
        return state

    monkeypatch.setattr(checkpoint.SearchCheckpoint, "load", recorded_load)
    resumed = run_scenario(scenario, tmp_path / "resumed", resume=True, progress=Progress(False))
    assert continued == [30]  # from the checkpoint, not from step 0
    (first,), (second,) = whole.victims, resumed.victims
    np.testing.assert_array_equal(second.candidates, first.candidates)
    assert second.frame.equals(first.frame)
    assert not any((cache_root().parent / "attacks").iterdir())  # removed once the audit was saved
