"""The KKT reconstruction attack (Haim et al., NeurIPS 2022), registered as ``kkt``.

Fixes the victim's weights theta and optimises m candidate inputs x_j with multipliers lambda_j so
that theta = (1/m) sum_j lambda_j y_j grad_theta Phi(x_j) (stationarity of the max-margin problem),
with a pixel-range prior and a lambda_min hinge. A C-output victim gets the multiclass version
(Buzaglo et al., NeurIPS 2023): each candidate carries a class y_j and one multiplier per other class k,
on the gradient of its margin Phi_{y_j} - Phi_k at x_j (or, ``multiclass_margins: runner_up``, one
multiplier on the margin against max_{k != y_j} Phi_k; see :func:`auditkit.attacks.kkt.kernel.margin_coefficients`).
R restarts advance together as one batched program. The closed-form MLP kernel is its fast path: a model
it runs on is traced to its Linear/ReLU chain (:mod:`auditkit.attacks.kkt.tracing`); any other ReLU network
(convolutions, pooling) takes the generic autograd path (:mod:`auditkit.attacks.kkt.network`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from auditkit.attacks.base import Attack, AttackerKnowledge, AttackOutput, ModelShape, ProgressCallback
from auditkit.attacks.kkt.checkpoint import SearchCheckpoint, SearchState, search_key
from auditkit.attacks.kkt.config import SELECTION_RULES, KKTConfig
from auditkit.attacks.kkt.control import run_start_control
from auditkit.attacks.kkt.convergence import measure, short_attack_warning
from auditkit.attacks.kkt.deflation import BestRestart, Pass, deflated_search
from auditkit.attacks.kkt.facts import KKTFacts
from auditkit.attacks.kkt.kernel import MLPLayers, Objective, as_objective, candidate_lambdas
from auditkit.attacks.kkt.network import victim_network
from auditkit.attacks.kkt.optimizer import BatchedOptimizer
from auditkit.attacks.kkt.residual import kkt_residual, residual_bytes
from auditkit.attacks.kkt.selection import selection_scorer
from auditkit.attacks.kkt.starts import alpha_scale, initial_candidates, restart_settings
from auditkit.attacks.kkt.step import losses_function, take_step
from auditkit.attacks.registry import register_attack
from auditkit.environment import DEFAULT_DTYPE, resolve_dtype

ACTIVATION_COPIES = 8  # per candidate and unit, what a step keeps alive at once (an upper estimate)


@register_attack
class KKTAttack(Attack):
    """Reconstruct training inputs of a ReLU network from its weights via the KKT conditions.

    Example:
        >>> attack = KKTAttack(steps=2000, restarts=2)
        >>> attack.config.restarts
        2
    """

    name = "kkt"
    keeps_checkpoints = True
    config_type = KKTConfig
    facts_type = KKTFacts
    config: KKTConfig

    def warning(self) -> str:
        """A warning when the steps are fewer than the recorded runs needed to converge."""
        return short_attack_warning(self.config.steps)

    def memory_bytes(self, n_train: int, widths: list[int], itemsize: int) -> int:
        """R restarts x m candidates x every layer's width, kept ACTIVATION_COPIES times (activations, smoothed
        derivatives, deltas, gradients, the optimiser's moments), plus the multipliers."""
        itemsize = 8 if self.config.refine_steps else itemsize
        searched = self.pooled_candidates(n_train, widths[-1]) * (ACTIVATION_COPIES * sum(widths) + widths[-1])
        return max(searched * itemsize, residual_bytes(n_train, widths))  # the premise is measured after the search

    def pooled_candidates(self, n_train: int, outputs: int) -> int:
        """Every restart's candidates (the most the selection pools)."""
        return self.config.restarts * (max(2, self.config.candidates_per_sample * n_train) + max(2, outputs))

    def check(self, model: nn.Module) -> ModelShape:
        """The network's input width, outputs and every ReLU's width; anything but a ReLU network of the
        supported layers (:mod:`auditkit.attacks.kkt.network`) raises UnsupportedModelError."""
        network = victim_network(model)
        if isinstance(network, MLPLayers):
            widths = tuple(w.shape[0] for w in network.weights)
        else:
            zeros = torch.zeros(1, network.input_dim, dtype=network.parameters[0].dtype)
            widths = (*(z[0].numel() for z in network.preactivations(zeros)), network.outputs)
        return ModelShape(network.input_dim, network.outputs, (network.input_dim, *widths))

    def objective(self, model: nn.Module | MLPLayers, knowledge: AttackerKnowledge) -> Objective:
        """What the candidates' gradients must explain: the KKT condition, the victim's weights at themselves."""
        return as_objective(model if isinstance(model, MLPLayers) else victim_network(model))

    def assess(
        self, model: nn.Module, knowledge: AttackerKnowledge, output: AttackOutput, train: tuple
    ) -> AttackOutput:
        """The victim's KKT residual at its true training set (multipliers fitted: the ``kkt_lambda`` column)
        and how far the attack got (:func:`auditkit.attacks.kkt.convergence.measure`)."""
        if output.facts.linear:
            return output
        objective = self.objective(model, knowledge)
        residual, fitted = kkt_residual(objective, *train)
        found = output.candidates, output.labels, output.restart
        history = output.loss_history, output.history_steps
        bounds = (knowledge.lower, knowledge.upper)
        own = output.facts.relative_residual
        convergence = measure(objective, found, own, history, bounds, residual, self.config.steps)
        facts = dataclasses.replace(output.facts, victim_residual=residual, convergence=convergence)
        per_sample = {**output.per_sample, "kkt_lambda": fitted.numpy()}
        return dataclasses.replace(output, facts=facts, per_sample=per_sample)

    def control(self, model, knowledge, output, train, nonmembers, *, seed, device, dtype) -> AttackOutput:
        """The start control (:mod:`auditkit.attacks.kkt.control`) in the facts' ``start_control``."""
        if output.facts.linear:
            return output
        found = run_start_control(self, model, knowledge, train, nonmembers, seed=seed, device=device, dtype=dtype)
        return dataclasses.replace(output, facts=dataclasses.replace(output.facts, start_control=found))

    @property
    def steps(self) -> int:
        """Optimisation steps per run: every pass's together."""
        return self.config.steps * self.config.passes

    def run(
        self,
        model: nn.Module | MLPLayers,
        knowledge: AttackerKnowledge,
        *,
        seed: int = 0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | str = DEFAULT_DTYPE,
        progress: ProgressCallback | None = None,
        initial: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
        checkpoint: Path | None = None,
    ) -> AttackOutput:
        """Run the attack on a victim (a ReLU MLP, or its layers already extracted).

        The relative alpha is set from ``knowledge.reference_inputs`` (uniform draws in the valid range
        when None). initial: (x, lambdas, labels) to start every restart from instead of the random
        init (tests and diagnostics, e.g. starting at the true training set; first pass only). With
        ``passes`` > 1 the search deflates (:mod:`auditkit.attacks.kkt.deflation`).
        """
        if self._linear(model):  # before the objective: a linear model has nothing to search
            return self._not_applicable(len(knowledge.lower), seed, device, dtype)
        victim, cfg = self.objective(model, knowledge), self.config
        kept = (lambda index: SearchCheckpoint(checkpoint, index)) if checkpoint is not None else (lambda index: None)
        if cfg.passes == 1:
            return self.search(victim, victim, knowledge, seed, device, dtype, progress, initial, kept(0)).output

        def one_pass(objective: Objective, index: int, shifted: ProgressCallback | None) -> Pass:
            start = initial if index == 0 else None
            return self.search(objective, victim, knowledge, seed + index, device, dtype, shifted, start, kept(index))

        return deflated_search(victim, cfg.passes, cfg.deflate_fraction, one_pass, progress, cfg.steps)

    def search(
        self,
        victim: Objective,
        classifier: Objective,
        knowledge: AttackerKnowledge,
        seed: int,
        device: torch.device | str,
        dtype: torch.dtype | str,
        progress: ProgressCallback | None,
        initial: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
        checkpoint: SearchCheckpoint | None = None,
    ) -> Pass:
        """One pass of the search on ``victim`` (an objective; ``classifier``'s target, the trained model,
        assigns the public starts their classes), with its best restart as it left it; ``checkpoint`` keeps its
        state as it runs and continues a search of the same key from where it was interrupted."""
        cfg, started = self.config, time.perf_counter()
        requested = dtype = resolve_dtype(dtype)  # requested: kept for the float64 refinement
        generator = torch.Generator(device="cpu").manual_seed(seed)
        objective, lower, upper = self._placed(victim, knowledge, device, dtype)
        reference = None if knowledge.reference_inputs is None else torch.as_tensor(knowledge.reference_inputs)
        scale = 1.0
        if cfg.alpha_relative:  # alpha relative to the victim's median |pre-activation|
            scale = alpha_scale(objective.at, lower, upper, reference, generator, device, dtype)
        settings = restart_settings(cfg, generator)
        x, lam, labels = initial_candidates(
            cfg, objective, classifier, reference, settings, knowledge.n_train, generator, initial
        )
        state = self._fresh_state(x, lam, settings, device, dtype)
        if checkpoint is not None:
            checkpoint.key = search_key(cfg, seed, device, requested, objective, knowledge, x, initial)
            state = checkpoint.load(cfg, device) or state
        refine_at = max(0, cfg.steps - cfg.refine_steps) if cfg.refine_steps and dtype != torch.float64 else -1
        if state.x.dtype != dtype:  # continued past the float64 refinement
            dtype = torch.float64
            objective, lower, upper = self._placed(victim, knowledge, device, dtype)
        labels = labels.to(device=device, dtype=dtype)
        scorer = selection_scorer(self.config.select, objective, labels, lower, upper, knowledge, device, dtype)
        target_norm = objective.norm().item()
        compute_losses = losses_function(cfg.compile, objective, device)

        for step in range(state.step, cfg.steps + 1):
            if 0 < step == cfg.early_stop_step < cfg.steps and len(state.alive) > 1:
                keep = self._best(scorer(state.x.detach(), state.losses), state.active, cfg.early_stop_keep)
                state.narrow(keep)  # scored with the latest losses (one step old) and the current candidates
            if step == refine_at:  # from here on float64, placed afresh from the caller's weights and settings
                dtype = torch.float64
                objective, lower, upper = self._placed(victim, knowledge, device, dtype)
                state.refine(self._per_restart(settings, device, dtype))
                labels = labels.to(dtype)
                scorer = selection_scorer(self.config.select, objective, labels, lower, upper, knowledge, device, dtype)
            alpha, floor = (
                state.hyper["alpha"] / scale,
                state.hyper["lambda_min"] if cfg.lambda_sign == "positive" else None,
            )
            terms = (alpha, lower, upper, floor, cfg.prior_weight, cfg.lambda_weight)
            state.losses, stationarity = take_step(
                compute_losses,
                objective,
                state.x,
                state.lam,
                labels,
                *terms,
                active=state.active,
                backward=step < cfg.steps,
            )
            if step == 0:
                state.initial = state.losses  # take_step's losses: detached, a new tensor every step
            if step % cfg.log_every == 0 or step in (cfg.steps, cfg.early_stop_step - 1):
                logged = state.record(step, (stationarity.cpu().double().sqrt() / target_norm).numpy())
                if progress is not None:
                    progress(step, float(np.nanmin(logged)) if np.isfinite(logged).any() else math.nan)
                if not bool(state.active.any()):
                    break
            if step == cfg.steps:
                break
            state.optimizer.step(state.active)
            state.step = step + 1
            if checkpoint is not None:
                checkpoint.keep(state)
        state.step = cfg.steps + 1
        if checkpoint is not None:
            checkpoint.keep(state, ended=True)
        return self._pass(state, scorer, labels, settings, scale, target_norm, seed, device, requested, started)

    def _fresh_state(self, x, lam, settings, device, dtype) -> SearchState:
        """The search at step 0: the candidates and multipliers as leaves on ``device``, the optimiser at rest."""
        restarts, hyper = self.config.restarts, self._per_restart(settings, device, dtype)
        x = x.to(device=device, dtype=dtype).requires_grad_(True)
        lam = lam.to(device=device, dtype=dtype).requires_grad_(True)
        return SearchState(
            step=0,
            x=x,
            lam=lam,
            optimizer=BatchedOptimizer(self.config, [x, lam], [hyper["lr_x"], hyper["lr_lambda"]]),
            hyper=hyper,
            alive=torch.arange(restarts),
            active=torch.ones(restarts, dtype=torch.bool, device=device),
            losses=torch.zeros(restarts, dtype=dtype, device=device),
            initial=None,
            diverged=[],
            early_stopped=[],
            history=[],
            steps_logged=[],
            final_loss=np.full(restarts, np.nan),
            residual=np.full(restarts, np.nan),
        )

    def _pass(
        self, state: SearchState, scorer, labels, settings, scale, target_norm, seed, device, dtype, started
    ) -> Pass:
        """The pass's output: the best restarts' candidates pooled (diverged ones never), the facts, and the
        best restart as it stands (for deflation)."""
        cfg, restarts, alive, active = self.config, self.config.restarts, state.alive, state.active
        scores = np.full(restarts, np.nan)
        with torch.no_grad():
            current = scorer(state.x.detach(), state.losses)
        scores[alive.numpy()] = torch.where(active, current, -torch.inf).cpu().double().numpy()
        top = cfg.select_top if cfg.select_top > 0 else len(alive)
        chosen = self._best(current, active, top / len(alive))
        chosen = chosen[active[chosen]]  # diverged restarts are never pooled
        kept = chosen.cpu()
        candidates = state.x.detach()[chosen].cpu().double().reshape(-1, state.x.shape[-1]).numpy()
        facts = self.facts_type(
            name=self.name,
            selection_rule=cfg.select,
            selection=SELECTION_RULES[cfg.select],
            restarts=restarts,
            candidates=len(candidates),
            restart_settings=settings,
            restart_scores=scores.tolist(),
            final_loss=state.final_loss.tolist(),
            relative_residual=state.residual.tolist(),
            selected_restarts=sorted(int(r) for r in alive[kept]),
            early_stopped_restarts=state.early_stopped,
            diverged=state.diverged,
            alpha_scale=float(scale),
            seconds=time.perf_counter() - started,
            device=str(device),
            dtype=str(dtype).removeprefix("torch."),
            seed=seed,
        )
        output = AttackOutput(
            candidates=candidates,
            lambdas=candidate_lambdas(state.lam, labels).detach()[chosen].cpu().double().flatten().numpy(),
            labels=labels.cpu().repeat(len(kept)).double().numpy(),
            restart=alive[kept].repeat_interleave(len(labels)).numpy(),
            loss_history=np.array(state.history),
            history_steps=np.array(state.steps_logged),
            facts=facts,
        )
        top = int(self._best(current, active, 0.0)[0])
        alpha = state.hyper["alpha"] / scale
        best = (
            BestRestart(state.x.detach()[top], state.lam.detach()[top], labels, alpha[top])
            if bool(active[top])
            else None
        )
        return Pass(output, best, target_norm)

    def _linear(self, model: nn.Module | MLPLayers) -> bool:
        """Whether the model has no hidden layer (one Linear layer: a linear probe)."""
        return len(self.check(model).widths) < 3 if isinstance(model, nn.Module) else len(model.weights) < 2

    def _not_applicable(self, width: int, seed: int, device, dtype) -> AttackOutput:
        """An output without candidates whose facts say the model is linear: the verdict reads 'not applicable'."""
        where = {"seed": seed, "device": str(device), "dtype": str(resolve_dtype(dtype)).removeprefix("torch.")}
        facts = self.facts_type.of_linear_model(self.name, self.config.select, **where)
        return AttackOutput(candidates=np.zeros((0, width)), labels=np.zeros(0), facts=facts)

    def _placed(self, victim: Objective, knowledge: AttackerKnowledge, device, dtype) -> tuple:
        """The objective and the prior's per-pixel bounds (lower, upper), on ``device`` in ``dtype``."""
        lower = torch.as_tensor(knowledge.lower).to(device=device, dtype=dtype).flatten()
        upper = torch.as_tensor(knowledge.upper).to(device=device, dtype=dtype).flatten()
        if self.config.prior == "box":
            lower, upper = torch.full_like(lower, -1.0), torch.full_like(upper, 1.0)
        return victim.to(device, dtype), lower, upper

    def _per_restart(self, settings: dict[str, list[float]], device, dtype) -> dict[str, torch.Tensor]:
        """Each restart's settings as (R,) tensors, with the (shared) multipliers' learning rate beside them."""
        hyper = {k: torch.tensor(v, dtype=dtype, device=device) for k, v in settings.items()}
        return hyper | {"lr_lambda": torch.full_like(hyper["lr_x"], self.config.lr_lambda)}

    @staticmethod
    def _best(scores: torch.Tensor, active: torch.Tensor, fraction: float) -> torch.Tensor:
        """Batch positions of the best ceil(fraction * R) restarts (diverged ones last)."""
        ranked = torch.where(active, scores, -torch.inf)
        count = max(1, math.ceil(fraction * len(scores) - 1e-9))
        return torch.argsort(ranked, descending=True, stable=True)[:count].sort().values
