"""The Auditor runs an attack against a trained model and scores every training sample: the front door."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from auditkit.attacks.base import Attack, AttackerKnowledge, AttackOutput, ProgressCallback
from auditkit.attacks.registry import build_attack
from auditkit.auditing.inputs import flat_input, initial_model, input_shape, pipeline_data, sample_pairs
from auditkit.data.audit_data import AuditData
from auditkit.environment import DEFAULT_DTYPE, resolve_device, resolve_dtype
from auditkit.errors import ConfigError, DataError, UnsupportedModelError
from auditkit.progress import Progress
from auditkit.recording.record import record_inputs
from auditkit.results.audit import AuditResult
from auditkit.results.facts import VictimFacts
from auditkit.scoring.bounds import check_ceiling_memory, kappa_above, reconstruction_bounds
from auditkit.scoring.metrics import identified_nonmembers
from auditkit.scoring.samples import COSINE_THRESHOLD, per_sample_frame
from auditkit.storage.files import SAFE_NAME
from auditkit.victims.dp import privacy_facts
from auditkit.victims.models import model_margins

CONFIRMING_SHARE = 0.5  # a member is confirmed below this share of every public input's membership distance


class Auditor:
    """Attack a trained model and report, per training sample, whether it can be pulled back out.

    Args:
        attack: any registered attack (:mod:`auditkit.attacks.registry`); the KKT attack by default.
        device: "auto" (CUDA when present), "cpu" or "cuda".
        dtype: the attack's precision ("float32"/"float64").
        ssim_threshold: the paper's reconstruction threshold.
        seed: the attack's seed.
        reference_size: how many non-members the attack may use as public data.

    Example:
        >>> from auditkit import Auditor, KKTAttack
        >>> auditor = Auditor(KKTAttack(steps=8000), device="cpu", seed=0)
        >>> result = auditor.audit(model, (train_x, train_y), nonmembers=held_out_x)  # doctest: +SKIP
        >>> result.summary().identified  # doctest: +SKIP
    """

    def __init__(
        self,
        attack: Attack | None = None,
        *,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = DEFAULT_DTYPE,
        ssim_threshold: float = 0.4,
        seed: int = 0,
        reference_size: int = 512,
    ) -> None:
        if not isinstance(ssim_threshold, int | float) or not 0 < ssim_threshold < 1:
            raise ConfigError(f"ssim_threshold: expected a number between 0 and 1, got {ssim_threshold!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
            raise ConfigError(f"seed: expected an integer in [0, 2**32), got {seed!r}")
        if not isinstance(reference_size, int) or reference_size < 1:
            raise ConfigError(f"reference_size: expected a positive integer, got {reference_size!r}")
        if attack is not None and not isinstance(attack, Attack):
            raise ConfigError(f"attack: expected an Attack (e.g. KKTAttack()), got {type(attack).__name__}")
        self.attack = attack or build_attack()
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.ssim_threshold = ssim_threshold
        self.seed = seed
        self.reference_size = reference_size

    def audit(
        self,
        model: nn.Module,
        data: AuditData | None = None,
        *,
        train=None,
        nonmembers=None,
        test=None,
        mean=None,
        std=None,
        image_shape: tuple[int, ...] | None = None,
        name: str = "victim",
        victim: VictimFacts | None = None,
        privacy=None,
        delta: float | None = None,
        init=None,
        progress: bool | ProgressCallback | None = None,
        checkpoint: str | Path | None = None,
        record=None,
    ) -> AuditResult:
        """Run the attack on ``model`` and score every training sample.

        Args:
            model: the trained network (any ReLU network the attack reads; a linear one reads not applicable).
            data: an :class:`AuditData` (or feature data: :func:`auditkit.data.features.feature_data`); or, in
                its place, what ``train`` takes.
            train: the training samples as ``(inputs, labels)`` (tensors or arrays, any two-class label encoding)
                or a Dataset/DataLoader of such pairs (read in the dataset's index order whatever the loader's
                sampler, so sample i is the user's item i).
            nonmembers: inputs of the same distribution not trained on (the members-vs-non-members test needs
                them), as arrays or a Dataset/DataLoader of pairs.
            test: held-out labelled pairs, as ``train``: the test accuracy beside the leakage.
            mean: the normalisation of [0, 1] pixels (inputs ``(pixels - mean) / std``): a number, one per channel
                or one per feature; without a mean, inputs must be pixels in [0, 1].
            std: what the centred pixels were divided by, as ``mean`` (1 when not given).
            image_shape: one input as an image, (H, W) or (C, H, W).
            name: the audit's name (its folder when saved).
            victim: the victim's facts (how it was trained), when known (scenario runs give them).
            privacy: for a model trained with DP-SGD elsewhere, the Opacus ``PrivacyEngine`` that trained it (with
                ``delta``) or ``{noise_multiplier, sample_rate, steps, delta}``: the result then carries its
                epsilon and the reconstruction ceiling beside the measured counts.
            delta: the DP delta, with a ``PrivacyEngine``.
            init: the weights training started from (a module of the model's architecture, or its state_dict):
                what the owner's attack (``OwnerAttack``) explains the trained weights against.
            progress: True for a progress bar of the attack steps (on a terminal; elsewhere lines at intervals),
                or a callback ``(step, loss)``.
            checkpoint: a folder where the attack keeps its state as it runs (an attack whose
                ``keeps_checkpoints`` is True: the KKT and owner's, at most once a minute): the same audit run
                again continues from it, bit for bit, after an interruption.
            record: a training record (its folder, or a :class:`auditkit.recording.TrainingRecord`) kept by
                :class:`auditkit.recording.TrainingRecorder`: the initial weights (unless ``init`` is given), the
                DP settings (unless ``privacy`` is), and for Adam or AdamW what training added with the rescaling
                undone.

        Returns:
            The per-sample result with its evidence and the attack's facts; what was assumed about the data is
            stated in its ``data_notes``.

        Raises:
            DataError: naming the input that does not fit (labels, shapes, the normalisation, NaN).
            UnsupportedModelError: naming the layer or operation the attack cannot read.
            ConfigError: naming a setting that is not valid, or an audit over the memory budget.

        Example:
            >>> auditor = Auditor(device="cpu", seed=0)
            >>> result = auditor.audit(model, train=(x, y), nonmembers=x_heldout, mean=0.1307)  # doctest: +SKIP
            >>> result.summary().verdict  # doctest: +SKIP
        """
        self._check_call(model, name, progress, data)
        initial, updates, privacy, record_note = self._initial(model, init, record, privacy, victim)
        model, initial, data, shape = self._inputs(
            model, initial, data, train, nonmembers, test, mean, std, image_shape
        )
        victim, margins, train = self._victim(model, data, shape, name, victim, privacy, delta)
        knowledge = dataclasses.replace(self.knowledge(data), initial=initial, updates=updates or None)
        if record_note:
            data = dataclasses.replace(data, notes=data.notes + (record_note,))
        output = self._attack(model, knowledge, name, progress, checkpoint)
        output = self.attack.assess(model, knowledge, output, train)
        result, pool_images = self._assemble(data, output, margins, name, victim)
        if not result.membership().significant:  # a null result: does it back an all-clear?
            where = {"seed": self.seed, "device": self.device, "dtype": self.dtype}
            result.attack = self.attack.control(model, knowledge, output, train, data.pool_x, **where).facts
        if result.privacy is not None:
            result.bounds = self._ceiling(result, len(result.train_images) + len(pool_images), pool_images, data)
        return result

    @staticmethod
    def _check_call(model, name, progress, data) -> None:
        """The arguments checked before anything is read: a module with values, a safe name, a progress setting."""
        if not isinstance(model, nn.Module):
            raise UnsupportedModelError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(name, str) or not re.fullmatch(SAFE_NAME, name):
            raise ConfigError(f"name: {name!r} must match {SAFE_NAME} (it names the audit's folder)")
        if progress is not None and not isinstance(progress, bool) and not callable(progress):
            raise ConfigError(f"progress: expected True/False or a callback (step, loss), got {progress!r}")
        if isinstance(data, str | Path):
            raise DataError(f"data: {str(data)!r} is a path; load it first (auditkit.data.files.load_audit_data)")
        if any(tensor.is_meta for tensor in itertools.chain(model.parameters(), model.buffers())):
            raise UnsupportedModelError("model: its weights are on the meta device (no values): load them first")

    def _initial(self, model, init, record, privacy, victim) -> tuple:
        """The owner's knowledge: the initial weights (given, or from the training record), what training added
        with Adam's rescaling undone (a record's), the DP settings a record holds, and the record's note."""
        updates, note = None, ""
        if record is not None:
            record, updates, note = record_inputs(record, model)
            init = init if init is not None else record.initial_state
            privacy = privacy if privacy is not None or victim is not None else record.privacy()
        if init is None and self.attack.needs_initial:
            raise ConfigError(
                self.attack.missing_initial("init", "a module of the model's architecture, or its state_dict")
            )
        return (initial_model(model, init) if init is not None else None), updates, privacy, note

    def _inputs(self, model, initial, data, train, nonmembers, test, mean, std, image_shape) -> tuple:
        """The model (and initial weights) taking flat rows, the audit's data (built from a pipeline's pairs when
        no AuditData is given), and the model's shape, checked to fit each other."""
        if data is not None and not isinstance(data, AuditData):
            data, train = None, data  # (inputs, labels), a Dataset or a DataLoader given in data's place
        if data is None and train is None:
            raise DataError("audit: give data (AuditData) or train=(inputs, labels), a Dataset or a DataLoader")
        pairs = sample_pairs(train) if data is None else None
        sample_shape = input_shape(
            model, pairs[0] if pairs else None, image_shape or getattr(data, "image_shape", None)
        )
        model, initial = (flat_input(m, sample_shape) if m is not None else None for m in (model, initial))
        shape = self.attack.check(model)
        if data is None:
            image_shape = image_shape or (sample_shape if sample_shape and len(sample_shape) in (2, 3) else None)
            data = pipeline_data(pairs, shape, nonmembers, test, mean=mean, std=std, image_shape=image_shape)
        if (data.outputs == 1) != (shape.outputs == 1) or data.outputs > shape.outputs:
            raise UnsupportedModelError(
                f"the model has {shape.outputs} output(s) but the data's labels need {data.outputs} "
                "(one output: labels -1/+1; C outputs: labels 0..C-1)"
            )
        if shape.inputs != data.train_x.shape[1]:
            raise UnsupportedModelError(
                f"the model takes {shape.inputs} inputs but the data has {data.train_x.shape[1]} features"
            )
        return model, initial, data, shape

    def _victim(self, model, data: AuditData, shape, name: str, victim, privacy, delta) -> tuple:
        """The audit's memory checked, the members' margins, and the victim's facts (given, or what a model
        trained elsewhere shows: its accuracies and DP settings), with the training set as float64 tensors."""
        self.attack.check_memory(
            shape, len(data.train_x), self.dtype.itemsize, f"the audit of {name}", len(data.pool_x)
        )
        train = tuple(torch.as_tensor(a, dtype=torch.float64) for a in (data.train_x, data.train_y))
        margins = model_margins(model, *train)
        if privacy is not None and victim is not None:
            raise ConfigError("privacy: the victim's facts already say how it was trained; give one of the two")
        if victim is None and (privacy is not None or len(data.test_x)):
            facts = privacy_facts(privacy, delta) if privacy is not None else None
            victim = VictimFacts.trained_elsewhere(facts, float((margins > 0).mean()), self._accuracy(model, data))
        if victim is not None and victim.training.privacy is not None:
            given = victim.training.privacy
            check_ceiling_memory(given.noise_multiplier, given.sample_rate, given.steps)
        return victim, margins, train

    def _attack(self, model, knowledge: AttackerKnowledge, name: str, progress, checkpoint) -> AttackOutput:
        """The attack run, with a progress bar or callback, keeping its checkpoints in ``checkpoint`` if it can."""
        bar = Progress().task(f"[{name}] attack", self.attack.steps) if progress is True else None
        with bar or contextlib.nullcontext(progress or None) as update:
            keeps = checkpoint is not None and self.attack.keeps_checkpoints
            kept = {"checkpoint": Path(checkpoint)} if keeps else {}
            return self.attack.run(
                model, knowledge, seed=self.seed, device=self.device, dtype=self.dtype, progress=update, **kept
            )

    def _assemble(self, data: AuditData, output: AttackOutput, margins, name: str, victim) -> tuple:
        """The result: every member scored against the candidates (pixels, or embeddings), with the evidence; and
        the non-members as they were compared (what the DP ceiling's baseline reads)."""
        train_images = data.to_pixels(data.train_x)
        candidates = data.to_pixels(output.candidates) if len(output.candidates) else train_images[:0]
        pool_images = data.to_pixels(data.pool_x)
        frame, nearest = per_sample_frame(
            data, train_images, candidates, pool_images, output, margins, self.ssim_threshold
        )
        evidence = {
            **self._distances(frame, output, data),
            **self._displays(data, nearest),
            "nonmember_identified": identified_nonmembers(train_images, candidates, pool_images, data.similarity),
            "nonmember_labels": data.pool_y,  # the one-run test pairs within labels (NaN: unknown, no pairs)
            "candidate_lambdas": output.lambdas,
            "candidate_labels": output.labels,
            "candidate_restart": output.restart,
            "loss_history": output.loss_history,
            "history_steps": output.history_steps,
            "mean": data.mean,
            "std": data.std,
        }
        result = AuditResult(
            name=name,
            frame=frame,
            candidates=candidates,
            train_images=train_images,
            evidence=evidence,
            attack=output.facts,
            ssim_threshold=self.ssim_threshold,
            victim=victim,
            data_notes=data.notes,
        )
        return result, pool_images

    @staticmethod
    def _displays(data: AuditData, nearest: np.ndarray) -> dict[str, np.ndarray]:
        """Feature data with its images: the members' images and, per member, the image of the non-member
        nearest its matched candidate (the look-alike beside it), for the report."""
        if data.train_display is None:
            return {}
        shown = {"train_display": data.train_display}
        if data.pool_display is not None and len(data.pool_display) and (nearest >= 0).all():
            shown["control_display"] = data.pool_display[nearest]
        return shown

    @staticmethod
    def _accuracy(model: nn.Module, data: AuditData) -> float:
        """The model's accuracy on the held-out labelled data (NaN without any)."""
        if not len(data.test_x):
            return math.nan
        return float((model_margins(model, data.test_x, data.test_y) > 0).mean())

    def knowledge(self, data: AuditData) -> AttackerKnowledge:
        """What the attack may use of ``data``: the valid input range, the first ``reference_size`` non-members
        (public data, what a relative alpha is measured on) and the training set (the auditor's view)."""
        return AttackerKnowledge(
            n_train=len(data.train_x),
            lower=data.lower,
            upper=data.upper,
            reference_inputs=data.pool_x[: self.reference_size] if len(data.pool_x) else None,
            ground_truth=data.train_x,
            pixel_offset=data.mean,
            pixel_scale=data.std,
            image_shape=tuple(data.image_shape),
        )

    def _distances(self, frame: pd.DataFrame, output: AttackOutput, data: AuditData) -> dict[str, np.ndarray]:
        """For an attack with a membership distance: every member's (a column of ``frame``, which this adds with
        ``confirmed``) and non-member's, and the attacker's threshold: half the least distance of a public input
        (the first ``reference_size`` non-members; without any, nothing is confirmed)."""
        if output.distance is None:
            return {}
        members, nonmembers = (np.asarray(output.distance(x), dtype=float) for x in (data.train_x, data.pool_x))
        public = nonmembers[: self.reference_size]
        threshold = CONFIRMING_SHARE * float(public.min()) if len(public) else -math.inf
        frame[output.facts.DISTANCE] = members
        frame["confirmed"] = members < threshold
        return {
            "nonmember_distance": nonmembers,
            "nonmember_confirmed": nonmembers < threshold,
            "membership_threshold": np.array(threshold),
        }

    def _ceiling(self, result: AuditResult, identification_pool: int, pool_images: np.ndarray, data: AuditData):
        """The DP ceiling beside each success criterion (see :mod:`auditkit.scoring.bounds`): identification, and
        SSIM above its threshold (cosine above ``COSINE_THRESHOLD`` for embeddings)."""
        summary, privacy = result.summary(), result.privacy
        similarity = data.similarity
        threshold = COSINE_THRESHOLD if data.features else self.ssim_threshold
        return reconstruction_bounds(
            tries=result.attack.candidates,
            identification_pool=identification_pool,
            identified_fraction=summary.identified_fraction,
            kappa_above_threshold=kappa_above(pool_images, threshold, similarity, seed=self.seed),
            above_threshold_fraction=float(result.frame["reconstructed"].mean()),
            criterion=f"{similarity.name} > {threshold}",
            noise_multiplier=privacy.noise_multiplier,
            sample_rate=privacy.sample_rate,
            steps=privacy.steps,
        )
