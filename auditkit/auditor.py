"""The Auditor runs the KKT attack against a trained model and scores every training sample."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from auditkit.attack import AttackOutput, KKTAttack
from auditkit.data import AuditData
from auditkit.environment import resolve_device, resolve_dtype
from auditkit.io import write_json, write_npz, write_text
from auditkit.kernel import UnsupportedModelError, extract_layers, forward, kkt_residual
from auditkit.metrics import match, minmax, ssim, standardize

PAPER_REFERENCE = {
    "source": "Haim, Vardi, Yehudai, Shamir, Irani, NeurIPS 2022, Fig. 4",
    "setting": "MNIST parity, n=500, 784-1000-1000-1, full-batch GD lr 0.01, 1e6 epochs, float64",
    "finding": "a large fraction of the training set reconstructed (SSIM > 0.4 with a 3x3 window); "
    "the reconstructed samples are the ones with the smallest margins",
    "note": "the paper counts raw SSIM > 0.4, which the mean image alone also passes: compare "
    "ssim_above_threshold with baseline_ssim_above_threshold, and use `identified` as the headline",
}


@dataclass
class AuditResult:
    """Per-sample leakage of one victim, with the evidence to re-render or re-score it.

    ``to_frame()`` has one row per training sample; ``summary()`` the headline counts. Headline
    leakage is ``identified`` (0 when nothing leaked); the raw SSIM > threshold count is reported
    next to its no-attack baseline (the training mean as the only candidate).
    """

    name: str
    frame: pd.DataFrame
    info: dict
    candidates: np.ndarray  # pixel space, (K, *image_shape)
    train_images: np.ndarray  # pixel space, (n, *image_shape)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        return self.frame.copy()

    def summary(self) -> dict:
        return dict(self.info)

    def save(self, directory: str | Path) -> Path:
        """Write per_sample.csv, reconstructions.npz, reconstructions.png and summary.json (last,
        so a directory with a summary.json is complete)."""
        from auditkit.plots import reconstruction_grid

        directory = Path(directory)
        write_text(directory / "per_sample.csv", self.frame.to_csv(index=False))
        write_npz(
            directory / "reconstructions.npz",
            candidates=self.candidates,
            train_images=self.train_images,
            **self.arrays,
        )
        reconstruction_grid(self, directory / "reconstructions.png")
        write_json(directory / "summary.json", self.info)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> AuditResult:
        directory = Path(directory)
        info = json.loads((directory / "summary.json").read_text())
        frame = pd.read_csv(directory / "per_sample.csv")
        with np.load(directory / "reconstructions.npz", allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
        candidates, train_images = arrays.pop("candidates"), arrays.pop("train_images")
        return cls(info["name"], frame, info, candidates, train_images, arrays)


SELECTION_RULES = {
    "kkt_residual": "restarts ranked by how much of the weights their candidates explain (KKT residual, "
    "multipliers refitted, exact ReLU): what an outside attacker has",
    "kkt_loss": "restarts ranked by their attack loss (what an outside attacker has; fair only between "
    "restarts with the same settings)",
    "ground_truth": "restarts ranked by how close their candidates come to the training set (mean NCC "
    "distance of the 10 best matches, as the authors' sweeps did): the auditor's view, not an outsider's",
}


def ground_truth_scorer(train_pixels: np.ndarray, mean: np.ndarray, device: torch.device, dtype: torch.dtype):
    """The authors' sweep score: minus the mean NCC distance of the 10 best-matched training images."""
    train = standardize(torch.as_tensor(train_pixels, device=device, dtype=dtype))
    offset = torch.as_tensor(mean, device=device, dtype=dtype)

    def score(candidates: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            pixels = standardize(candidates + offset)  # (R, m, d)
            distance = 2 - 2 * pixels @ train.T  # (R, m, n)
            nearest = distance.min(1).values  # (R, n)
            best = nearest.sort(1).values[:, : min(10, nearest.shape[1])]
            return torch.nan_to_num(-best.mean(1), nan=-torch.inf)

    return score


class Auditor:
    """Attack a trained ReLU MLP and report, per training sample, whether it can be pulled back out.

    device: "auto" (CUDA when present), "cpu" or "cuda"; dtype of the attack ("float32"/"float64").
    """

    def __init__(
        self,
        attack: KKTAttack | None = None,
        *,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "float32",
        ssim_threshold: float = 0.4,
        seed: int = 0,
        reference_size: int = 512,
    ) -> None:
        self.attack = attack or KKTAttack()
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.ssim_threshold = ssim_threshold
        self.seed = seed
        self.reference_size = reference_size

    def audit(
        self,
        model: nn.Module,
        data: AuditData,
        *,
        name: str = "victim",
        victim_info: dict | None = None,
        progress: Callable[[int, float], None] | None = None,
    ) -> AuditResult:
        """Run the attack on ``model`` (trained on ``data.train_x``) and score every training sample."""
        layers = extract_layers(model)
        if layers.input_dim != data.train_x.shape[1]:
            raise UnsupportedModelError(
                f"the model takes {layers.input_dim} inputs but the data has {data.train_x.shape[1]} features"
            )
        train_x = torch.as_tensor(data.train_x, dtype=torch.float64)
        train_y = torch.as_tensor(data.train_y, dtype=torch.float64)
        with torch.no_grad():
            margins = (forward(layers.to("cpu", torch.float64), train_x) * train_y).numpy()
        residual, fitted_lambda = kkt_residual(layers, train_x, train_y)

        reference = torch.as_tensor(data.pool_x[: self.reference_size]) if len(data.pool_x) else None
        scorer = None
        if self.attack.config.select == "ground_truth":
            scorer = ground_truth_scorer(data.train_x + data.mean, data.mean, self.device, self.dtype)
        output = self.attack.run(
            layers,
            len(data.train_x),
            torch.as_tensor(data.lower),
            torch.as_tensor(data.upper),
            reference,
            seed=self.seed,
            device=self.device,
            dtype=self.dtype,
            progress=progress,
            scorer=scorer,
        )
        train_images = data.to_pixels(data.train_x)
        candidates = data.to_pixels(output.candidates) if len(output.candidates) else train_images[:0]
        frame = self._per_sample(data, train_images, candidates, output, margins, fitted_lambda.numpy())
        info = self._summary(name, frame, output, residual, victim_info or {})
        arrays = {
            "candidate_lambdas": output.lambdas,
            "candidate_labels": output.labels,
            "candidate_restart": output.restart,
            "loss_history": output.loss_history,
            "history_steps": output.history_steps,
            "mean": data.mean,
        }
        return AuditResult(name, frame, info, candidates, train_images, arrays)

    def _per_sample(self, data, train_images, candidates, output: AttackOutput, margins, fitted_lambda):
        n = len(train_images)
        mean_image = data.mean.reshape(1, *data.image_shape)
        baseline = ssim(np.repeat(minmax(mean_image), n, 0), train_images)
        frame = pd.DataFrame(
            {
                "sample": np.arange(n),
                "source_index": data.train_index,
                "label": data.train_y.astype(int),
                "margin": margins,
                "normalized_margin": margins / _smallest_positive(margins),
                "kkt_lambda": fitted_lambda,
                "baseline_ssim": baseline,
            }
        )
        if len(candidates) == 0:
            frame["ssim"] = np.nan
            frame["identified"] = False
            frame["reconstructed"] = False
            return frame
        scores = match(train_images, candidates, data.to_pixels(data.pool_x))
        frame["ssim"] = scores["ssim"]
        frame["dssim"] = (1 - scores["ssim"]) / 2
        frame["reconstructed"] = scores["ssim"] > self.ssim_threshold
        frame["identified"] = scores["identified"]
        frame["candidate"] = scores["candidate"]
        frame["candidate_lambda"] = output.lambdas[scores["candidate"]]
        frame["candidate_restart"] = output.restart[scores["candidate"]]
        frame["ncc_distance"] = scores["ncc_distance"]
        frame["control_ssim"] = scores["control_ssim"]
        return frame

    def _summary(self, name, frame, output: AttackOutput, residual, victim_info) -> dict:
        n = len(frame)
        ssim_scores = frame["ssim"].to_numpy()
        finite = np.isfinite(ssim_scores)
        identified = int(frame["identified"].sum())
        best_restart = int(np.nanargmin(output.final_loss)) if np.isfinite(output.final_loss).any() else None
        info = {
            "name": name,
            "n": n,
            "identified": identified,
            "identified_fraction": identified / n,
            "ssim_threshold": self.ssim_threshold,
            "ssim_above_threshold": int((ssim_scores[finite] > self.ssim_threshold).sum()),
            "baseline_ssim_above_threshold": int((frame["baseline_ssim"] > self.ssim_threshold).sum()),
            "median_ssim": float(np.median(ssim_scores)) if finite.all() else math.nan,
            "top10_mean_ssim": float(np.sort(ssim_scores[finite])[-10:].mean()) if finite.any() else math.nan,
            "identified_median_normalized_margin": float(frame.loc[frame["identified"], "normalized_margin"].median())
            if identified
            else math.nan,
            "victim_kkt_residual": residual,
            "attack_relative_residual": float(output.relative_residual[best_restart])
            if best_restart is not None
            else math.nan,
            "attack": {
                "alpha_scale": output.alpha,
                "candidates": int(len(output.candidates)),
                "restarts": len(output.final_loss),
                "diverged": output.diverged,
                "selection_rule": self.attack.config.select,
                "selection": SELECTION_RULES[self.attack.config.select],
                "selected_restarts": output.selected,
                "early_stopped_restarts": output.early_stopped,
                "restart_settings": output.settings,
                "restart_scores": output.scores,
                "final_loss": output.final_loss,
                "seconds": output.seconds,
                "device": str(self.device),
                "dtype": str(self.dtype).removeprefix("torch."),
            },
            "victim": victim_info,
            "paper_reference": PAPER_REFERENCE,
        }
        if not len(output.candidates):
            info["warning"] = "every attack restart diverged (NaN/inf): no candidates to score"
        return info


def _smallest_positive(values: np.ndarray) -> float:
    """The margin the normalisation divides by: the smallest one among correctly classified samples."""
    positive = values[values > 0]
    return float(positive.min()) if len(positive) else math.nan
