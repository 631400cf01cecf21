"""The span attack, registered as ``span``: membership and training inputs read from dense layers' row spaces.

For every dense layer it reads the row space of the weights (or of ``W_T - c W_0`` with the initial weights,
:mod:`auditkit.attacks.span.spectrum`); the first layer whose row space is a proper subspace spanned by at
most n inputs is read. Its membership test is an input's residual outside that row space
(:mod:`auditkit.attacks.span.residual`); when that layer takes the
inputs themselves, linear programs steered by public templates rebuild training inputs inside its row space
(:mod:`auditkit.attacks.span.rebuild`). Nothing reads the training set; the search is seconds on a CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import time

import numpy as np
import torch
from torch import nn

from auditkit.attacks.base import Attack, AttackerKnowledge, AttackOutput, ModelShape, ProgressCallback
from auditkit.attacks.kkt.network import victim_network
from auditkit.attacks.registry import register_attack
from auditkit.attacks.span.config import SpanConfig
from auditkit.attacks.span.facts import NO_LAYER, OUTSIDE, SpanFacts
from auditkit.attacks.span.rebuild import rebuild_inputs, template_costs
from auditkit.attacks.span.residual import layer_inputs, span_residuals
from auditkit.attacks.span.spectrum import LayerSpan, dense_layers, read_span
from auditkit.errors import ConfigError, UnsupportedModelError
from auditkit.victims.models import assigned_classes, outputs_tensor
from auditkit.victims.user_model import unwrapped_name

INPUT_LAYER_TOLERANCE = 1e-6  # a layer takes the inputs themselves when its inputs equal them to this


@register_attack
class SpanAttack(Attack):
    """Read the training set's subspace from the victim's dense layers, test membership in it, rebuild inputs.

    Example:
        >>> SpanAttack(programs=200).config.programs
        200
    """

    name = "span"
    config_type = SpanConfig
    facts_type = SpanFacts
    reads_initial = True
    config: SpanConfig

    @property
    def steps(self) -> int:
        """One step per linear program."""
        return self.config.programs

    def check(self, model: nn.Module) -> ModelShape:
        """The model's input width and outputs as the network reads them (a CNN's first Linear does not take
        the inputs); any model whose graph the KKT attack cannot read falls back to its first and last Linear."""
        try:
            network = victim_network(model)
        except UnsupportedModelError:
            return super().check(model)
        widths = (network.input_dim, *(layer.out_features for _, layer in dense_layers(model)))
        return ModelShape(network.input_dim, network.outputs, widths)

    def pooled_candidates(self, n_train: int, outputs: int) -> int:
        """One candidate per program at most."""
        return self.config.programs

    def memory_bytes(self, n_train: int, widths: list[int], itemsize: int) -> int:
        """The largest layer's SVD (three float64 copies) and the programs' bounds over the first layer's span."""
        largest = max((a * b for a, b in zip(widths, widths[1:])), default=0)
        return 8 * (3 * largest + 2 * widths[0] * min(n_train, widths[0]))

    def run(
        self,
        model: nn.Module,
        knowledge: AttackerKnowledge,
        *,
        seed: int,
        device: torch.device | str,
        dtype: torch.dtype,
        progress: ProgressCallback | None = None,
    ) -> AttackOutput:
        """Read every dense layer's row space, test membership in the first that applies, rebuild inputs in it.

        Args:
            model: the victim (left unchanged).
            knowledge: its n, the valid input range, public inputs (the templates), and the
                initial weights when the owner gives them.
            seed: the shifts (or random weights) of the templates reused past the first pass.
            device: where the network runs (spectra: on the CPU).
            dtype: the network's precision (spectra: float64).
            progress: called as ``(program, inputs found)``.

        Returns:
            The rebuilt inputs and the facts; ``distance`` scores any input (its residual).
        """
        started = time.perf_counter()
        spans, bases = self._read_layers(model, knowledge)
        network = copy.deepcopy(model).to(device, dtype).eval()  # the forward passes' copy; the weights read in float64
        modules = [layer for _, layer in dense_layers(network)]
        chosen = next((index for index, span in enumerate(spans) if span.applicable), None)
        facts = SpanFacts(
            name=self.name,
            candidates=0,
            seconds=0.0,
            device=str(torch.device(device)),
            dtype=str(dtype).removeprefix("torch."),
            seed=seed,
            layers=[dataclasses.asdict(span) for span in spans],
            clean_tail=self.config.clean_tail,
            reason=NO_LAYER if not spans else "" if chosen is not None else _no_layer_reads(spans),
        )
        empty = np.zeros((0, len(knowledge.lower)))
        if chosen is None:
            facts = dataclasses.replace(facts, seconds=time.perf_counter() - started)
            return AttackOutput(empty, np.zeros(0), facts)
        module, basis = modules[chosen], bases[chosen]

        def distance(inputs: np.ndarray) -> np.ndarray:
            return span_residuals(layer_inputs(network, module, np.asarray(inputs), device, dtype), basis)

        candidates, takes_inputs = empty, _takes_inputs(network, module, knowledge, device, dtype)
        if takes_inputs:
            templates = self._templates(knowledge, seed)
            shape = knowledge.image_shape
            costs = template_costs(templates, knowledge.lower, knowledge.upper, self.steps, seed, shape)
            candidates = rebuild_inputs(basis, knowledge.lower, knowledge.upper, costs, self.config.box_slack, progress)
        facts = dataclasses.replace(
            facts,
            layer=spans[chosen].name,
            programs=self.steps if takes_inputs else 0,
            reads_inputs=takes_inputs,
            candidates=len(candidates),
            seconds=time.perf_counter() - started,
        )
        labels = _predicted(network, candidates, device, dtype)
        return AttackOutput(candidates, labels, facts, distance=distance)

    def assess(
        self, model: nn.Module, knowledge: AttackerKnowledge, output: AttackOutput, train: tuple
    ) -> AttackOutput:
        """The auditor's check of the premise: how many training samples lie off the row space read (raw pixels'
        dominant mean direction can push some members' share under float32 rounding)."""
        if output.distance is None:
            return output
        residuals = output.distance(train[0].numpy())
        facts = dataclasses.replace(output.facts, members_outside=int((residuals > OUTSIDE).sum()))
        return dataclasses.replace(output, facts=facts)

    def _read_layers(self, model: nn.Module, knowledge: AttackerKnowledge) -> tuple[list[LayerSpan], list[np.ndarray]]:
        """Every dense layer's span and basis, against the initial weights' same layer when given."""
        layers = dense_layers(model)
        starts = dense_layers(knowledge.initial) if knowledge.initial is not None else None
        if starts is not None and [m.weight.shape for _, m in starts] != [m.weight.shape for _, m in layers]:
            raise ConfigError("init: its dense layers' shapes differ from the model's; give the same architecture")
        spans, bases = [], []
        updates = {unwrapped_name(name): update for name, update in (knowledge.updates or {}).items()}
        for index, (name, layer) in enumerate(layers):
            initial = starts[index][1].weight if starts is not None else None
            weight, update = layer.weight, updates.get(unwrapped_name(name))
            if update is not None:  # a record's: what training added, the optimiser's rescaling undone
                weight, initial = update, None
            span, basis = read_span(name, weight, initial, knowledge.n_train, self.config.max_tail)
            spans.append(span)
            bases.append(basis)
        return spans, bases

    @staticmethod
    def _templates(knowledge: AttackerKnowledge, seed: int) -> np.ndarray:
        """The public inputs, or (without any) inputs drawn uniformly from the valid range by ``seed``."""
        if knowledge.reference_inputs is not None and len(knowledge.reference_inputs):
            return np.asarray(knowledge.reference_inputs, dtype=np.float64)
        rng = np.random.default_rng(seed)
        return rng.uniform(knowledge.lower, knowledge.upper, (knowledge.n_train, len(knowledge.lower)))


def _no_layer_reads(spans: list[LayerSpan]) -> str:
    """Why no layer applies, naming each: the one line of a not-applicable verdict."""
    return (
        "no dense layer's row space singles out the training inputs ("
        + "; ".join(f"{span.name}: {span.reason}" for span in spans)
        + ")"
    )


def _takes_inputs(network: nn.Module, module: nn.Module, knowledge: AttackerKnowledge, device, dtype) -> bool:
    """Whether ``module`` receives the model's inputs unchanged (then its row space holds inputs to rebuild)."""
    probe = np.stack([knowledge.lower, knowledge.upper, (knowledge.lower + knowledge.upper) / 2])
    seen = layer_inputs(network, module, probe, device, dtype)
    return seen.shape == probe.shape and bool(np.allclose(seen, probe, atol=INPUT_LAYER_TOLERANCE))


def _predicted(network: nn.Module, inputs: np.ndarray, device, dtype) -> np.ndarray:
    """The class the victim assigns each input: -1/+1 for one output, 0..C-1 for C."""
    if not len(inputs):
        return np.zeros(0)
    with torch.no_grad():
        outputs = outputs_tensor(network(torch.as_tensor(inputs, device=device, dtype=dtype)))
    return assigned_classes(outputs.cpu()).numpy()
