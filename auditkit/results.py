"""The results contract: typed facts of a trained victim, an attack and an audit, and of a whole run.

Counts are derived from the per-sample frame on demand (``AuditResult.summary()``), never stored
twice. ``to_dict()``/``from_dict()`` are the JSON form; ``save()``/``load()`` write and read data only
(figures and report.html are the report package's job).
"""

from __future__ import annotations

import dataclasses
import json
import math
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from auditkit.bounds import ReconstructionBounds
from auditkit.convergence import Convergence
from auditkit.environment import DTYPE_NOTES, describe_device, versions
from auditkit.errors import AuditkitError
from auditkit.io import inside, to_jsonable, write_json, write_npz, write_text
from auditkit.membership import MembershipTest
from auditkit.verdict import Verdict, premise_verdict

RESULT_FILE = "result.json"
RUN_FILE = "summary.json"
CENTRED_TOLERANCE = 0.02  # mean |input mean| per feature; raw MNIST pixels: 0.13


class ResultError(AuditkitError):
    """A saved result cannot be read (missing or damaged file); the message names the file."""


def _from_fields(cls, values: dict):
    """Build a dataclass from a dict, ignoring keys it does not have (derived values written for readers)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


@dataclass(frozen=True)
class PrivacyFacts:
    """What DP-SGD training guarantees, as its accountant says, at the configured delta."""

    epsilon: float
    delta: float
    accountant: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    accountant_note: str = ""


@dataclass(frozen=True)
class TrainingLog:
    """What training recorded: accuracies, final loss, epochs and time, the recipe actually run."""

    train_accuracy: float
    test_accuracy: float
    final_loss: float
    epochs: int
    seconds: float
    recipe: dict = field(default_factory=dict)  # optimizer settings (lr, weight_decay, compiled, ...)
    privacy: PrivacyFacts | None = None

    def to_dict(self) -> dict:
        return to_jsonable(asdict(self))

    @classmethod
    def from_dict(cls, values: dict) -> TrainingLog:
        privacy = values.get("privacy")
        return _from_fields(cls, {**values, "privacy": PrivacyFacts(**privacy) if privacy else None})


@dataclass(frozen=True)
class VictimFacts:
    """The victim an audit attacked: the defense that produced it and what its training recorded."""

    defense: dict
    training: TrainingLog
    cached: bool = False  # loaded from the victim cache instead of trained in this run

    def to_dict(self) -> dict:
        return {"defense": to_jsonable(self.defense), "training": self.training.to_dict(), "cached": self.cached}

    @classmethod
    def from_dict(cls, values: dict) -> VictimFacts:
        return cls(values["defense"], TrainingLog.from_dict(values["training"]), bool(values.get("cached", False)))

    @classmethod
    def trained_elsewhere(
        cls, privacy: PrivacyFacts | None, train_accuracy: float, test_accuracy: float = math.nan
    ) -> VictimFacts:
        """A model the user trained: its privacy as given (when trained with DP-SGD), its accuracies as
        measured on the data given (NaN without a test set), the rest unknown (NaN, 0 epochs)."""
        log = TrainingLog(train_accuracy, test_accuracy, math.nan, 0, math.nan, {}, privacy)
        if privacy is None:
            return cls({"kind": "none", "description": "trained by the user"}, log)
        return cls({"kind": "dp_sgd", "description": "trained by the user with DP-SGD"}, log)


@dataclass(frozen=True)
class AttackFacts:
    """How the attack ran: restarts, their settings and scores, which were pooled, time and precision."""

    name: str
    selection_rule: str
    selection: str  # what the rule means
    restarts: int
    candidates: int  # pooled candidates
    restart_settings: dict[str, list[float]]
    restart_scores: list[float]
    final_loss: list[float]
    relative_residual: list[float]  # sqrt(stationarity) / ||theta|| per restart
    selected_restarts: list[int]
    early_stopped_restarts: list[int]
    diverged: list[dict]  # [{"restart": r, "step": s}]
    alpha_scale: float
    seconds: float
    device: str
    dtype: str
    seed: int | None = None  # None in results saved before it was recorded

    @property
    def best_restart(self) -> int | None:
        """The restart with the lowest final attack loss (None when every restart diverged)."""
        losses = np.array(self.final_loss, dtype=float)
        return int(np.nanargmin(losses)) if np.isfinite(losses).any() else None

    def to_dict(self) -> dict:
        return to_jsonable(asdict(self))

    @classmethod
    def from_dict(cls, values: dict) -> AttackFacts:
        def floats(items: list) -> list[float]:
            return [math.nan if v is None else float(v) for v in items]

        return _from_fields(
            cls,
            {
                **values,
                "restart_scores": floats(values["restart_scores"]),
                "final_loss": floats(values["final_loss"]),
                "relative_residual": floats(values["relative_residual"]),
                "alpha_scale": math.nan if values["alpha_scale"] is None else values["alpha_scale"],
            },
        )


@dataclass(frozen=True)
class LeakageSummary:
    """The headline counts of one audit, derived from its per-sample frame.

    ``identified`` is the headline (0 when nothing leaked); ``ssim_above_threshold`` is the paper's
    count, shown beside ``baseline_ssim_above_threshold`` (the training mean as the only candidate).
    """

    name: str
    n: int
    identified: int
    identified_fraction: float
    ssim_threshold: float
    ssim_above_threshold: int
    baseline_ssim_above_threshold: int
    median_ssim: float
    median_ssim_same_class: float  # each sample matched only among candidates carrying its label
    top10_mean_ssim: float
    identified_median_normalized_margin: float
    victim_kkt_residual: float
    attack_kkt_residual: float  # the best restart's stationarity residual: its own or refitted, the lower
    attack_convergence: str  # converged, unsettled or not_converged (see :mod:`auditkit.convergence`)
    attack_relative_residual: float
    train_accuracy: float  # from the margins: the premise needs 1
    nonmembers: int
    nonmembers_identified: int  # false positives: the members' criterion applied to every non-member
    fpr: float
    p_value: float  # one-sided Fisher exact: members identified more often than non-members
    epsilon_lower: float  # the privacy loss the counts imply at 95 %
    verdict: str  # the premise check: conclusive, weak or inconclusive
    finding: str  # what the counts mean, in plain words
    warning: str

    def to_dict(self) -> dict:
        return to_jsonable(asdict(self))


@dataclass
class AuditResult:
    """Per-sample leakage of one victim, with the evidence to re-render or re-score it."""

    name: str
    frame: pd.DataFrame  # one row per training sample
    candidates: np.ndarray  # pixel space, (K, *image_shape)
    train_images: np.ndarray  # pixel space, (n, *image_shape)
    evidence: dict[str, np.ndarray]  # candidate lambdas, labels, restarts, loss history, mean image
    attack: AttackFacts
    victim_kkt_residual: float
    ssim_threshold: float
    convergence: Convergence | None = None  # None in results saved before it was measured
    victim: VictimFacts | None = None
    bounds: ReconstructionBounds | None = None
    fingerprint: str = ""  # of the settings that produced it: --resume reuses only an equal one
    data_notes: tuple[str, ...] = ()  # assumptions about the data (label encoding, input preparation)

    def to_frame(self) -> pd.DataFrame:
        return self.frame.copy()

    @property
    def privacy(self) -> PrivacyFacts | None:
        """What DP training guarantees, for a DP-trained victim."""
        return self.victim.training.privacy if self.victim else None

    def membership(self) -> MembershipTest:
        """Identified members against identified non-members (see :mod:`auditkit.membership`)."""
        privacy = self.privacy
        flags = self.evidence["nonmember_identified"]
        return MembershipTest(
            len(self.frame),
            int(self.frame["identified"].sum()),
            len(flags),
            int(flags.sum()),
            privacy.delta if privacy else 0.0,
        )

    @property
    def train_accuracy(self) -> float:
        """The fraction of training samples on the right side of the boundary (positive margin)."""
        return float((self.frame["margin"] > 0).mean())

    @property
    def centred(self) -> bool:
        """Whether the model's inputs were centred (their mean over the training set is about 0)."""
        inputs = self.train_images.reshape(len(self.train_images), -1) - self.evidence["mean"].reshape(1, -1)
        return bool(np.abs(inputs.mean(0)).mean() < CENTRED_TOLERANCE)

    def verdict(self, test: MembershipTest | None = None) -> Verdict:
        """The premise check (KKT residual, zero training error, centred inputs) and the finding
        (``test``: this result's membership test, when the caller has it already)."""
        privacy = self.privacy
        return premise_verdict(
            self.victim_kkt_residual,
            self.train_accuracy,
            test or self.membership(),
            privacy.epsilon if privacy else None,
            self.centred,
            self.bounds.identified.bound if self.bounds is not None else None,
            self.convergence_facts,
            self._recognisable(),
        )

    def _recognisable(self) -> int:
        """How many identified samples' matches resemble them more than the mean image does (SSIM)."""
        found = self.frame.loc[self.frame["identified"]]
        return int((found["ssim"] > found["baseline_ssim"]).sum())

    @property
    def convergence_facts(self) -> Convergence:
        """How far the attack got; for a result saved before that was measured, 'unknown' (never converged)."""
        if self.convergence is not None:
            return self.convergence
        return Convergence(math.nan, self.victim_kkt_residual, math.nan, 0)

    def summary(self) -> LeakageSummary:
        frame, threshold = self.frame, self.ssim_threshold
        test = self.membership()
        verdict = self.verdict(test)
        ssim_scores = frame["ssim"].to_numpy(dtype=float)
        finite = np.isfinite(ssim_scores)
        identified = int(frame["identified"].sum())
        above = int((ssim_scores[finite] > threshold).sum())
        baseline = int((frame["baseline_ssim"] > threshold).sum())
        best = self.attack.best_restart
        return LeakageSummary(
            name=self.name,
            n=len(frame),
            identified=identified,
            identified_fraction=identified / len(frame),
            ssim_threshold=threshold,
            ssim_above_threshold=above,
            baseline_ssim_above_threshold=baseline,
            median_ssim=_median(frame["ssim"]),
            median_ssim_same_class=_median(frame.get("ssim_same_class")),
            top10_mean_ssim=float(np.sort(ssim_scores[finite])[-10:].mean()) if finite.any() else math.nan,
            identified_median_normalized_margin=float(frame.loc[frame["identified"], "normalized_margin"].median())
            if identified
            else math.nan,
            victim_kkt_residual=self.victim_kkt_residual,
            attack_kkt_residual=self.convergence_facts.attack_residual,
            attack_convergence=self.convergence_facts.level,
            attack_relative_residual=self.attack.relative_residual[best] if best is not None else math.nan,
            train_accuracy=self.train_accuracy,
            nonmembers=test.nonmembers,
            nonmembers_identified=test.nonmembers_identified,
            fpr=test.fpr,
            p_value=test.p_value,
            epsilon_lower=test.epsilon_lower,
            verdict=verdict.level,
            finding=verdict.finding + _resemblance(test, above, baseline, len(frame), threshold),
            warning="" if self.attack.candidates else "every attack restart diverged (NaN/inf): no candidates to score",
        )

    def per_class(self) -> pd.DataFrame:
        """One row per class label (the model's: -1/+1 for one output, 0..C-1 for C): its samples,
        how many were identified, median SSIM matched over all candidates and among its own class's."""
        rows = []
        for label, group in self.frame.groupby("label", sort=True):
            rows.append(
                {
                    "label": int(label),
                    "n": len(group),
                    "identified": int(group["identified"].sum()),
                    "identified_fraction": float(group["identified"].mean()),
                    "median_ssim": _median(group["ssim"]),
                    "median_ssim_same_class": _median(group.get("ssim_same_class")),
                    "train_accuracy": float((group["margin"] > 0).mean()),
                }
            )
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "summary": self.summary().to_dict(),  # derived, for readers of the JSON; recomputed on load
            "victim_kkt_residual": to_jsonable(self.victim_kkt_residual),
            "convergence": to_jsonable(self.convergence.to_dict()) if self.convergence else None,
            "ssim_threshold": self.ssim_threshold,
            "attack": self.attack.to_dict(),
            "victim": self.victim.to_dict() if self.victim else None,
            "bounds": self.bounds.to_dict() if self.bounds else None,
            "fingerprint": self.fingerprint,
            "data_notes": list(self.data_notes),
        }

    @classmethod
    def from_dict(cls, values: dict, frame: pd.DataFrame, arrays: dict[str, np.ndarray]) -> AuditResult:
        arrays = dict(arrays)
        residual = values["victim_kkt_residual"]
        return cls(
            name=values["name"],
            frame=frame,
            candidates=arrays.pop("candidates"),
            train_images=arrays.pop("train_images"),
            evidence=arrays,
            attack=AttackFacts.from_dict(values["attack"]),
            victim_kkt_residual=math.nan if residual is None else float(residual),
            convergence=_convergence(values.get("convergence")),
            ssim_threshold=float(values["ssim_threshold"]),
            victim=VictimFacts.from_dict(values["victim"]) if values.get("victim") else None,
            bounds=ReconstructionBounds.from_dict(values["bounds"]) if values.get("bounds") else None,
            fingerprint=values.get("fingerprint", ""),
            data_notes=tuple(str(note) for note in values.get("data_notes", ())),
        )

    def save(self, directory: str | Path) -> Path:
        """per_sample.csv, reconstructions.npz, then result.json (last: a directory with it is complete)."""
        directory = Path(directory)
        write_text(directory / "per_sample.csv", self.frame.to_csv(index=False))
        write_npz(
            directory / "reconstructions.npz",
            candidates=self.candidates,
            train_images=self.train_images,
            **self.evidence,
        )
        write_json(directory / RESULT_FILE, self.to_dict())
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> AuditResult:
        """Read a saved audit; a missing or damaged file raises :class:`ResultError` naming it."""
        directory = Path(directory)
        values = _read_json(directory / RESULT_FILE)
        arrays = _read_arrays(directory / "reconstructions.npz")
        frame = _read_frame(directory / "per_sample.csv", len(arrays["candidates"]))
        try:
            return cls.from_dict(values, frame, arrays)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ResultError(f"{directory / RESULT_FILE}: missing or wrong field ({error!r})") from None


@dataclass(frozen=True)
class RunFacts:
    """What makes a run reproducible, stored once per run: scenario, seed, device, versions, config."""

    scenario: str
    seed: int
    device: str
    dtype: str
    dtype_note: str
    threads: int
    versions: dict[str, str]
    config: dict  # the resolved scenario
    seconds: float = math.nan
    executor: str = "local"  # where the victims ran: this process, or Ray tasks of `threads` CPUs each
    reused: int = 0  # victims whose finished audit a resumed run reused: `seconds` is this call's work only

    @classmethod
    def collect(
        cls, name: str, seed: int, device, dtype: str, config: dict, seconds: float, executor: str = "local"
    ) -> RunFacts:
        """The facts of a run happening in this process (device description, threads, versions)."""
        return cls(
            executor=executor,
            scenario=name,
            seed=seed,
            device=describe_device(device),
            dtype=dtype,
            dtype_note=DTYPE_NOTES[dtype],
            threads=torch.get_num_threads(),
            versions=versions(),
            config=to_jsonable(config),
            seconds=seconds,
        )

    def to_dict(self) -> dict:
        return to_jsonable(asdict(self))

    @classmethod
    def of_saved_audit(cls, result: AuditResult) -> RunFacts:
        """Facts for one audit saved from the Python API (``result.save``), which records no run: the seed,
        device and precision are the attack's; threads and versions are this process's, and say so."""
        attack = result.attack
        facts = cls.collect(result.name, attack.seed, torch.device(attack.device), attack.dtype, {}, math.nan)
        note = "one audit saved from the Python API; threads and versions are those of the process that rendered it"
        return dataclasses.replace(facts, config={"note": note})

    @classmethod
    def from_dict(cls, values: dict) -> RunFacts:
        seconds = values.get("seconds")
        return _from_fields(cls, {**values, "seconds": math.nan if seconds is None else seconds})


@dataclass(frozen=True)
class VictimFailure:
    """A victim that could not be audited (its training diverged): reported, never cached."""

    name: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunResult:
    """Every victim's audit in one run, with the run's facts once (and the victims that failed)."""

    facts: RunFacts
    victims: list[AuditResult]
    failures: list[VictimFailure] = field(default_factory=list)

    def summary(self) -> list[LeakageSummary]:
        return [victim.summary() for victim in self.victims]

    def __getitem__(self, name: str) -> AuditResult:
        for victim in self.victims:
            if victim.name == name:
                return victim
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "run": self.facts.to_dict(),
            "victims": [victim.to_dict() for victim in self.victims],
            "failures": [failure.to_dict() for failure in self.failures],
        }

    def save(self, directory: str | Path, victims: bool = True) -> Path:
        """Each victim's data in its own folder (unless ``victims`` is False: the runner saves each one
        as it finishes), then summary.json (the same shape for any number of victims)."""
        directory = Path(directory)
        for victim in self.victims if victims else ():
            victim.save(directory / victim.name)
        write_json(directory / RUN_FILE, self.to_dict())
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> RunResult:
        """A run's folder (summary.json), or one audit's folder (result.json, e.g. from ``result.save``)."""
        directory = Path(directory)
        path = directory / RUN_FILE
        if not path.is_file() and (directory / RESULT_FILE).is_file():
            result = AuditResult.load(directory)
            return cls(RunFacts.of_saved_audit(result), [result])
        values = _read_json(path)
        try:
            names = [victim["name"] for victim in values["victims"]]
            folders = [inside(directory, name) for name in names]
            failures = [VictimFailure(**failure) for failure in values.get("failures", [])]
            facts = RunFacts.from_dict(values["run"])
        except (KeyError, TypeError, ValueError, AttributeError, AuditkitError) as error:
            raise ResultError(f"{path}: missing or wrong field ({error})") from None
        return cls(facts, [AuditResult.load(folder) for folder in folders], failures)


def _convergence(values: dict | None) -> Convergence | None:
    """The saved convergence facts (None for a result saved before they were measured)."""
    if values is None:
        return None

    def number(key: str) -> float:
        return math.nan if values[key] is None else float(values[key])

    return Convergence(number("attack_residual"), number("victim_residual"), number("loss_fall"), int(values["steps"]))


def _median(scores: pd.Series | None) -> float:
    """The median of per-sample scores; NaN when a score is missing (no candidate, or an older result)."""
    if scores is None or scores.isna().any():
        return math.nan
    return float(scores.median())


def _resemblance(test: MembershipTest, above: int, baseline: int, n: int, threshold: float) -> str:
    """What to add to a finding when reconstructions resemble training images (SSIM) without singling
    any out (e.g. classes whose images all look alike): the class leaks, not the samples."""
    if test.significant or above - baseline < n / 4:
        return ""
    return (
        f" The reconstructions do resemble training images (SSIM > {threshold:g} for {above} of {n}; {baseline} for "
        "the mean image) without singling any out from the non-members: they reveal what a class looks like, "
        "not which samples were trained on."
    )


# per_sample.csv columns a result needs, with the numpy kinds allowed (integer, float, bool)
FRAME_COLUMNS = {
    "sample": "iu",
    "label": "iu",
    "margin": "iuf",
    "normalized_margin": "iuf",
    "baseline_ssim": "iuf",
    "ssim": "iuf",
    "identified": "b",
}
ARRAYS = {"candidates": "f", "train_images": "f", "nonmember_identified": "b", "mean": "f"}  # name: numpy kinds allowed


def _read_frame(path: Path, candidates: int) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise ResultError(f"{path}: not found") from None
    except (ValueError, UnicodeDecodeError) as error:  # pandas' parser errors are ValueErrors
        raise ResultError(f"{path}: not a readable CSV ({error})") from None
    for column, kinds in FRAME_COLUMNS.items():
        if column not in frame:
            raise ResultError(f"{path}: column '{column}' is missing")
        if frame[column].dtype.kind not in kinds:
            raise ResultError(f"{path}: column '{column}' has {frame[column].dtype} values")
    if "candidate" in frame and not frame["candidate"].between(0, candidates - 1).all():
        raise ResultError(f"{path}: column 'candidate' points outside the {candidates} saved candidates")
    return frame


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except FileNotFoundError:
        raise ResultError(f"{path}: not found") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ResultError(f"{path}: not a readable NPZ archive ({error})") from None
    for key, kinds in ARRAYS.items():
        if key not in arrays or arrays[key].dtype.kind not in kinds:
            raise ResultError(f"{path}: array '{key}' is missing or of the wrong type")
    return arrays


def _read_json(path: Path) -> dict:
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultError(f"{path}: not found; is {path.parent} the output of a finished audit?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ResultError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(values, dict):
        raise ResultError(f"{path}: expected a JSON object, got {type(values).__name__}")
    return values
