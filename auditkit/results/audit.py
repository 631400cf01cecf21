"""One audit's result: the per-sample frame, the evidence to re-render or re-score it, the attack's typed
facts, and the headline counts derived from them on demand (``AuditResult.summary()``, never stored twice).

``to_dict()``/``from_dict()`` are the JSON form; ``save()``/``load()`` write and read data only (figures and
report.html are the report package's job).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from auditkit.attacks.base import AttackFacts
from auditkit.attacks.registry import facts_from_dict
from auditkit.results.facts import PrivacyFacts, VictimFacts
from auditkit.results.storage import ResultError, read_arrays, read_frame, read_json
from auditkit.results.summary import LeakageSummary
from auditkit.scoring.bounds import ReconstructionBounds, bounding_epsilon
from auditkit.scoring.membership import MembershipTest
from auditkit.scoring.roc import DistanceROC
from auditkit.scoring.verdict import Concern, Verdict, judge, resemblance_note
from auditkit.storage.checksums import verify_checksums, write_checksums
from auditkit.storage.files import SAFE_NAME, ensure_writable, write_json, write_npz, write_text

RESULT_FILE = "result.json"
FRAME_FILE = "per_sample.csv"
ARRAYS_FILE = "reconstructions.npz"
RESULT_FILES = (FRAME_FILE, ARRAYS_FILE, RESULT_FILE)  # what a result is read from: each under its checksum
CENTRED_TOLERANCE = 0.02  # mean |input mean| per feature; raw MNIST pixels: 0.13


@dataclass
class AuditResult:
    """Per-sample leakage of one victim, with the evidence to re-render or re-score it."""

    name: str
    frame: pd.DataFrame  # one row per training sample
    candidates: np.ndarray  # pixel space, (K, *image_shape); feature data: embeddings (K, d)
    train_images: np.ndarray  # pixel space, (n, *image_shape); feature data: embeddings (n, d)
    evidence: dict[str, np.ndarray]  # candidate lambdas, labels, restarts, loss history, mean image
    attack: AttackFacts  # the attack's typed facts: how it ran and its premise for this victim
    ssim_threshold: float
    victim: VictimFacts | None = None
    bounds: ReconstructionBounds | None = None
    fingerprint: str = ""  # of the settings that produced it: --resume reuses only an equal one
    data_notes: tuple[str, ...] = ()  # assumptions about the data (label encoding, input preparation)

    def to_frame(self) -> pd.DataFrame:
        """A copy of the per-sample frame (one row per training sample)."""
        return self.frame.copy()

    @property
    def privacy(self) -> PrivacyFacts | None:
        """What DP training guarantees, for a DP-trained victim."""
        return self.victim.training.privacy if self.victim else None

    def membership(self) -> MembershipTest:
        """Identified members against identified non-members (see :mod:`auditkit.scoring.membership`); for an
        attack with a membership distance, members against non-members below its threshold."""
        privacy, labels = self.privacy, self.evidence.get("nonmember_labels")
        flag = "confirmed" if "confirmed" in self.frame else "identified"
        return MembershipTest.from_flags(
            self.frame[flag].to_numpy(dtype=bool),
            self.evidence[f"nonmember_{flag}"],
            privacy.delta if privacy else 0.0,
            self.attack.seed or 0,
            (self.frame["label"].to_numpy(), labels) if labels is not None else None,
        )

    @property
    def train_accuracy(self) -> float:
        """The fraction of training samples on the right side of the boundary (positive margin)."""
        return float((self.frame["margin"] > 0).mean())

    @property
    def centred(self) -> bool:
        """Whether the model's inputs were centred (their mean over the training set is about 0)."""
        pixels = self.train_images.reshape(len(self.train_images), -1)
        std = self.evidence.get("std", np.ones(pixels.shape[1]))  # results saved before std was kept: unscaled
        inputs = (pixels - self.evidence["mean"].reshape(1, -1)) / std.reshape(1, -1)
        return bool(np.abs(inputs.mean(0)).mean() < CENTRED_TOLERANCE)

    def _settled_elsewhere(self, test: MembershipTest) -> list[Concern]:
        """A fatal concern when no leak was found but a quarter or more of the candidates are nearest to a
        non-member: the attack explained the weights with other images (its public starts, say), which says
        nothing about whether the training set is also a solution (measured on ``mnist_cnn``: public starts
        settle near themselves, yet started at the training set the attack keeps it: the manual's measurements page)."""
        count = len(self.candidates)
        if test.significant or not count or 4 * test.nonmembers_identified < count or "confirmed" in self.frame:
            return []
        reason = (
            f"{test.nonmembers_identified} of its {count} candidates settled on non-member images: the attack "
            "explained the weights with other inputs than the training set"
        )
        return [Concern(reason, True)]

    def distances(self) -> tuple[np.ndarray, np.ndarray]:
        """The members' and the non-members' membership distances (both empty for an attack without one)."""
        column = self.attack.DISTANCE
        if not column or column not in self.frame:
            return np.zeros(0), np.zeros(0)
        return self.frame[column].to_numpy(dtype=float), self.evidence["nonmember_distance"]

    def roc(self) -> DistanceROC:
        """The membership distance's ROC numbers (NaN for an attack without one)."""
        return DistanceROC.of(*self.distances())

    def verdict(self, test: MembershipTest | None = None) -> Verdict:
        """The attack's premise check for this victim and the finding (``test``: this result's membership
        test, when the caller has it already)."""
        privacy, test = self.privacy, test or self.membership()
        backing, backed = ([], "") if test.significant else self.attack.null_evidence()
        return judge(
            self.attack.concerns(self.train_accuracy, self.centred) + self._settled_elsewhere(test) + backing,
            test,
            privacy.epsilon if privacy else None,
            self.bounds.identified.bound if self.bounds is not None else None,
            self._recognisable(),
            backed,
            inapplicable=self.attack.inapplicable(),
            confirmed="confirmed" in self.frame,
            rebuilt=self._rebuilt(),
            bounding_epsilon=self._bounding_epsilon(),
        )

    def _bounding_epsilon(self) -> float | None:
        """The epsilon below which a DP ceiling would bound this attack's identified count (None without DP)."""
        if self.privacy is None or self.bounds is None:
            return None
        identified = self.bounds.identified
        return bounding_epsilon(identified.kappa, identified.tries, self.privacy.delta)

    def _rebuilt(self) -> int:
        """How many samples were rebuilt almost exactly (0 in results saved before it was counted)."""
        return int(self.frame["rebuilt"].sum()) if "rebuilt" in self.frame else 0

    @property
    def compared_by(self) -> str:
        """How candidates were scored: "cosine" for feature data (embeddings), "ssim" for images."""
        return "cosine" if "cosine" in self.frame else "ssim"

    def _recognisable(self) -> int | None:
        """How many identified samples' matches resemble them more than the mean image does (SSIM; None for
        embeddings, which have no mean-image baseline)."""
        if self.compared_by == "cosine":
            return None
        found = self.frame.loc[self.frame["identified"]]
        return int((found["ssim"] > found["baseline_ssim"]).sum())

    def summary(self) -> LeakageSummary:
        """The headline counts, the verdict and the finding, derived from the frame and the attack's facts.

        Returns:
            The typed summary (``identified``, ``confirmed``, ``verdict``, ``finding``, ...).
        """
        frame, threshold = self.frame, self.ssim_threshold
        test = self.membership()
        verdict = self.verdict(test)
        ssim_scores = frame["ssim"].to_numpy(dtype=float)
        finite = np.isfinite(ssim_scores)
        identified = int(frame["identified"].sum())
        above = int((ssim_scores[finite] > threshold).sum())
        baseline = int((frame["baseline_ssim"] > threshold).sum())
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
            train_accuracy=self.train_accuracy,
            nonmembers=test.nonmembers,
            nonmembers_identified=test.nonmembers_identified,
            fpr=test.fpr,
            p_value=test.p_value,
            epsilon_lower=test.epsilon_lower,
            verdict=verdict.level,
            finding=verdict.finding + resemblance_note(test, above, baseline, len(frame), threshold),
            warning=""
            if self.attack.candidates or self.attack.inapplicable()
            else "every attack restart diverged (NaN/inf): no candidates to score",
            attack=self.attack.name,
            premise=self.attack.headline(),
            confirmed=test.members_identified,
            rebuilt=self._rebuilt(),
            compared_by=self.compared_by,
            median_cosine=_median(frame.get("cosine")),
            **self.roc().to_dict(),
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
        """The JSON form of result.json (the summary is derived, for readers; it is recomputed on load)."""
        return {
            "name": self.name,
            "summary": self.summary().to_dict(),
            "ssim_threshold": self.ssim_threshold,
            "attack": self.attack.to_dict(),
            "victim": self.victim.to_dict() if self.victim else None,
            "bounds": self.bounds.to_dict() if self.bounds else None,
            "fingerprint": self.fingerprint,
            "data_notes": list(self.data_notes),
        }

    @classmethod
    def from_dict(cls, values: dict, frame: pd.DataFrame, arrays: dict[str, np.ndarray]) -> AuditResult:
        """Read back :meth:`to_dict` with the frame and arrays saved beside it. A KKT result saved before the
        attack's facts held its premise has the victim's residual and the convergence at the top level."""
        if not isinstance(values["name"], str) or not re.fullmatch(SAFE_NAME, values["name"]):
            raise ValueError(f"name {values['name']!r} must match {SAFE_NAME} (it names the audit's folder)")
        arrays = dict(arrays)
        attack = {"victim_residual": values.get("victim_kkt_residual"), **values["attack"]}
        attack.setdefault("convergence", values.get("convergence"))
        return cls(
            name=values["name"],
            frame=frame,
            candidates=arrays.pop("candidates"),
            train_images=arrays.pop("train_images"),
            evidence=arrays,
            attack=facts_from_dict(attack),
            ssim_threshold=_threshold(values["ssim_threshold"]),
            victim=VictimFacts.from_dict(values["victim"]) if values.get("victim") else None,
            bounds=ReconstructionBounds.from_dict(values["bounds"]) if values.get("bounds") else None,
            fingerprint=values.get("fingerprint", ""),
            data_notes=tuple(str(note) for note in values.get("data_notes", ())),
        )

    def save(self, directory: str | Path) -> Path:
        """Write per_sample.csv, reconstructions.npz, result.json, then their checksums (last: a directory with
        them is complete, and :meth:`load` refuses it once any of its files changed).

        Args:
            directory: the audit's folder (made when missing).

        Returns:
            The folder.
        """
        directory = ensure_writable(directory, "result folder")
        write_text(directory / FRAME_FILE, self.frame.to_csv(index=False))
        write_npz(
            directory / ARRAYS_FILE,
            candidates=self.candidates,
            train_images=self.train_images,
            **self.evidence,
        )
        write_json(directory / RESULT_FILE, self.to_dict())
        write_checksums(directory, RESULT_FILES)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> AuditResult:
        """Read a saved audit.

        Args:
            directory: a folder :meth:`save` wrote.

        Returns:
            The result, checked against its checksums.

        Raises:
            ResultError: naming a missing or damaged file.
        """
        directory = Path(directory)
        values = read_json(directory / RESULT_FILE)
        arrays = read_arrays(directory / ARRAYS_FILE)
        frame = read_frame(directory / FRAME_FILE, len(arrays["candidates"]), len(arrays["train_images"]))
        try:
            result = cls.from_dict(values, frame, arrays)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ResultError(f"{directory / RESULT_FILE}: missing or wrong field ({error!r})") from None
        verify_checksums(directory, RESULT_FILES, ResultError)
        return result


def _threshold(value) -> float:
    """A saved SSIM threshold, checked as the Auditor checks a given one (between 0 and 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValueError(f"ssim_threshold: expected a number between 0 and 1, got {value!r}")
    return float(value)


def _median(scores: pd.Series | None) -> float:
    """The median of per-sample scores; NaN when a score is missing (no candidate, or an older result)."""
    if scores is None or scores.isna().any():
        return math.nan
    return float(scores.median())
