"""The span attack: row spaces read from synthetic layers, the membership distance, the linear programs, and
the attack end to end on a real victim and on models it cannot read."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from auditkit import Auditor, SpanAttack, load_scenario
from auditkit.attacks.span.rebuild import rebuild_inputs, template_costs
from auditkit.attacks.span.residual import span_residuals
from auditkit.attacks.span.spectrum import read_span
from auditkit.cli import main
from auditkit.errors import ScenarioError, UnsupportedModelError
from auditkit.scoring.roc import DistanceROC, tpr_at_fpr
from auditkit.victims import build_mlp


def _layer_in_span(rng, n: int = 5, width: int = 40, outputs: int = 30) -> tuple[np.ndarray, np.ndarray]:
    inputs = rng.normal(size=(n, width))
    return rng.normal(size=(outputs, n)) @ inputs, inputs


def test_a_layer_trained_from_n_inputs_has_their_span_as_its_row_space():
    rng = np.random.default_rng(0)
    weight, inputs = _layer_in_span(rng)
    span, basis = read_span("fc", torch.as_tensor(weight), None, 5, 0.01)
    assert span.applicable and span.rank == span.dimension == 5 and span.tail < 1e-20 and span.gap > 1e6
    assert span_residuals(inputs, basis).max() < 1e-10  # every training input lies in it
    assert span_residuals(rng.normal(size=(20, 40)), basis).min() > 0.5  # other inputs do not


def test_the_initial_weights_multiple_is_fitted_and_the_span_read_beside_it():
    rng = np.random.default_rng(1)
    added, inputs = _layer_in_span(rng)
    start = rng.normal(size=added.shape)
    without, _ = read_span("fc", torch.as_tensor(0.9 * start + added), None, 5, 0.01)
    span, basis = read_span("fc", torch.as_tensor(0.9 * start + added), torch.as_tensor(start), 5, 0.01)
    assert not without.applicable and "beyond 5 directions" in without.reason  # W_T alone fills every direction
    assert span.applicable and abs(span.init_multiple - 0.9) < 1e-3
    assert span_residuals(inputs, basis).max() < 1e-3


@pytest.mark.parametrize(
    "shape, n, expected",
    [((3, 40), 5, "3 output rows are no more than the 5 training samples"), ((30, 4), 5, "span all of its 4 input")],
)
def test_a_layer_that_cannot_single_inputs_out_says_why(shape, n, expected):
    span, _ = read_span("fc", torch.randn(*shape, generator=torch.Generator().manual_seed(0)), None, n, 0.01)
    assert not span.applicable and expected in span.reason


def test_the_programs_reach_vertices_inside_the_span_and_the_box():
    rng = np.random.default_rng(2)
    sparse = rng.uniform(0, 1, (4, 60)) * (rng.uniform(size=(4, 60)) < 0.2)  # mostly exact zeros, as digits
    sparse /= sparse.max(1, keepdims=True)  # and a saturated pixel each, as digits: the box fixes their scale
    basis = np.linalg.svd(sparse, full_matrices=False)[2]
    lower, upper = np.zeros(60), np.ones(60)
    found = rebuild_inputs(basis, lower, upper, template_costs(sparse, lower, upper, 8, seed=0), 1e-9)
    assert found.shape[1] == 60 and len(found) > 0
    assert span_residuals(found, basis).max() < 1e-8 and found.min() > -1e-6 and found.max() < 1 + 1e-6
    nearest = np.abs(found[:, None] - sparse[None]).max(2).min(0)
    assert (nearest < 1e-6).sum() >= 3  # a template shaped like a sparse vertex ends at it


def test_roc_numbers_read_distances_with_thresholds_from_the_nonmembers_alone():
    members, nonmembers = np.zeros(10), np.linspace(0.1, 1, 1000)
    assert DistanceROC.of(members, nonmembers) == DistanceROC(1.0, 1.0, 1.0)
    same = DistanceROC.of(np.linspace(0.1, 1, 1000), nonmembers)
    assert same.auc == pytest.approx(0.5) and same.tpr_at_0_1pct_fpr <= 0.002
    assert tpr_at_fpr(np.array([0.105, 0.5]), nonmembers, 0.01) == 0.5  # the threshold: the 11th non-member, 0.109
    assert np.isnan(DistanceROC.of(members, np.zeros(0)).auc)


@pytest.fixture(scope="module")
def span_audit(small_victim):
    """The small victim read by its owner: the initial weights are build_mlp's at seed 0."""
    model, data = small_victim
    initial = build_mlp(784, [200, 200], "none", seed=0, dtype=torch.float64)
    return Auditor(SpanAttack(programs=120), device="cpu", seed=0).audit(model, data, init=initial)


def test_the_span_attack_confirms_and_rebuilds_the_small_victims_digits(span_audit):
    summary, frame = span_audit.summary(), span_audit.frame
    assert summary.attack == "span" and summary.verdict == "conclusive"
    assert abs(span_audit.attack.read()["init_multiple"] - 0.997**1500) < 1e-3  # weight decay's shrinking of W_0
    assert summary.auc >= 0.999 and summary.tpr_at_0_1pct_fpr >= 0.95  # measured: 1.0 and 1.0
    assert summary.confirmed == 20 and summary.nonmembers_identified <= 2  # measured: 20 and 0
    assert summary.rebuilt >= 14  # measured: 17 of 20 in 120 programs
    assert "Anyone holding these weights can confirm 20 of your 20" in summary.finding
    rebuilt = frame.loc[frame["rebuilt"]]
    assert ((rebuilt["max_abs_error"] <= 0.05) | (rebuilt["ssim"] >= 0.9)).all() and rebuilt["identified"].all()


def test_without_the_initial_weights_the_small_victims_span_is_read_but_weak(small_victim):
    model, data = small_victim  # 1,500 epochs of weight decay leave 1 % of W_0 beside the span
    summary = Auditor(SpanAttack(programs=0), device="cpu", seed=0).audit(model, data).summary()
    assert summary.verdict == "weak" and "only near a 20-dimensional span" in summary.finding
    assert "no linear programs were run" in summary.finding and summary.auc >= 0.999


def test_a_saved_span_result_reads_back_the_same(span_audit, tmp_path):
    from auditkit import AuditResult

    again = AuditResult.load(span_audit.save(tmp_path / "span"))
    assert again.summary() == span_audit.summary() and again.attack == span_audit.attack


def test_a_model_whose_rows_fill_its_inputs_is_not_applicable_never_clean(small_victim):
    _, data = small_victim
    untrained = build_mlp(784, [200, 200], "none", seed=5, dtype=torch.float64)  # random weights: a full row space
    result = Auditor(SpanAttack(programs=5), device="cpu", seed=0).audit(untrained, data)
    summary = result.summary()
    assert summary.verdict == "not applicable" and summary.confirmed == 0 and summary.rebuilt == 0
    assert "does not apply" in summary.finding and "no evidence either way" in summary.finding
    assert "0: " in result.attack.reason and result.attack.candidates == 0


def test_initial_weights_of_another_shape_get_one_line(small_victim):
    model, data = small_victim
    other = build_mlp(784, [100, 200], "none", seed=0, dtype=torch.float64)
    with pytest.raises(UnsupportedModelError) as error:
        Auditor(SpanAttack(programs=5), device="cpu", seed=0).audit(model, data, init=other)
    assert "\n" not in str(error.value)


def test_the_default_scenario_runs_the_span_attack_beside_and_attacks_are_chosen():
    assert [attack.name for attack in load_scenario("mnist_quick").beside] == ["span"]
    assert load_scenario("mnist_quick", {"beside": []}).beside == []
    with pytest.raises(ScenarioError, match="names one twice"):
        load_scenario("mnist_quick", {"beside": [{"name": "kkt"}]})


def test_the_command_line_runs_the_attacks_named(tmp_path):
    model = nn.Sequential(nn.Linear(48, 30, bias=False), nn.ReLU(), nn.Linear(30, 1, bias=False))
    torch.save(model.state_dict(), tmp_path / "model.pt")
    rng = np.random.default_rng(0)
    pixels = rng.uniform(size=(10, 48))
    others = rng.uniform(size=(40, 48))
    np.savez(
        tmp_path / "data.npz", train_x=pixels, train_y=np.array([0, 1] * 5), nonmember_x=others, image_shape=[3, 4, 4]
    )
    arguments = ["audit", str(tmp_path / "model.pt"), "--data", str(tmp_path / "data.npz"), "--device", "cpu"]
    twice = CliRunner().invoke(main, [*arguments, "--attack", "span,span", "--out", str(tmp_path / "a")])
    assert twice.exit_code == 2 and "distinct attack presets" in twice.output
    alone = CliRunner().invoke(main, [*arguments, "--attack", "span", "--out", str(tmp_path / "b")])
    assert alone.exit_code == 0, alone.output
    assert sorted(p.name for p in (tmp_path / "b").iterdir() if p.is_dir()) == ["model"]
    assert "not applicable" in alone.output  # random weights: the row space is everything


def test_a_model_without_a_dense_layer_is_not_applicable(small_victim):
    _, data = small_victim
    convolutions = nn.Sequential(nn.Unflatten(1, (1, 28, 28)), nn.Conv2d(1, 1, 28, bias=False), nn.Flatten()).double()
    result = Auditor(SpanAttack(programs=5), device="cpu", seed=0).audit(convolutions, data)
    assert result.summary().verdict == "not applicable" and "no dense layer" in result.summary().finding


def test_a_gate_reads_past_a_span_attack_that_does_not_apply(small_victim):
    from auditkit.results.run import RunResult
    from auditkit.running.gate import Condition, gate_failures

    _, data = small_victim
    untrained = build_mlp(784, [200, 200], "none", seed=5, dtype=torch.float64)
    result = Auditor(SpanAttack(programs=0), device="cpu", seed=0).audit(untrained, data)
    run = RunResult(None, [result])
    assert gate_failures(run, [Condition.parse("confirmed > 0")]) == []  # no reading, no failure
    assert Condition.parse("rebuilt > 0").metric == "rebuilt" and Condition.parse("auc >= 0.9").value == 0.9


def test_a_scenario_run_reports_the_span_attack_beside_the_owners(tmp_path):
    import yaml
    from conftest import TINY

    from auditkit import RunResult, run_scenario
    from auditkit.progress import Progress

    settings = yaml.safe_load(TINY) | {
        "attack": {"name": "owner", "steps": 10, "restarts": 1},
        "beside": [{"name": "span"}],
    }
    (tmp_path / "owner.yaml").write_text(yaml.safe_dump(settings))
    run = run_scenario(load_scenario(tmp_path / "owner.yaml"), tmp_path / "out", progress=Progress(enabled=False))
    assert [result.name for result in run.victims] == ["none", "none.span"]
    span = run["none.span"]
    assert span.attack.read()["init_multiple"] == 1.0  # GD without weight decay: W_0 kept whole, given by the owner
    assert span.summary().auc >= 0.99 and span.summary().verdict in ("conclusive", "weak")
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Anyone holding these weights can confirm" in page and "membership ROC curve" in page
    assert (tmp_path / "out" / "none.span" / "roc.png").is_file()
    assert "span_residual" in (tmp_path / "out" / "none.span" / "per_sample.csv").read_text().splitlines()[0]
    again = RunResult.load(tmp_path / "out")
    assert again["none.span"].summary() == span.summary()
