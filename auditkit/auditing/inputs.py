"""What a pipeline hands the Auditor: training pairs as arrays in the user's own index order (a pair of tensors
or arrays, a Dataset read item by item, a DataLoader's dataset read the same way whatever its sampler), the
initial weights as a copy of the model holding them, and a network that takes images as one that takes the
flat rows every attack works on."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler, SequentialSampler

from auditkit.attacks.kkt.network import takes_flat_rows
from auditkit.data.audit_data import AuditData
from auditkit.data.user_data import audit_data
from auditkit.errors import DataError, UnsupportedModelError
from auditkit.victims.models import unwrap
from auditkit.victims.user_model import fitting_state


def sample_pairs(train, what: str = "train") -> tuple:
    """(inputs, labels, note) in the user's index order: from a pair, from a Dataset item by item (index 0
    first), from a DataLoader's dataset read the same way whatever its sampler (shuffled, Poisson or
    weighted sampling would renumber, repeat or drop samples), or from any other iterable of pairs or
    batches in iteration order (the note says so). ``what``: the argument, as errors and notes name it."""
    if isinstance(train, tuple | list) and len(train) == 2:
        return train[0], train[1], ""
    note = ""
    source = train
    if isinstance(train, DataLoader):
        source = train.dataset
        drawer = train.batch_sampler if train.batch_sampler is not None else train.sampler
        drawer = drawer.sampler if isinstance(drawer, BatchSampler) else drawer
        if not isinstance(drawer, SequentialSampler | RandomSampler) or getattr(drawer, "replacement", False):
            note = (
                f"the DataLoader draws with {type(drawer).__name__}, which is not one pass over its dataset: the "
                "dataset was read directly, every item once, in index order"
            )
    batched = False
    if isinstance(source, Dataset) and not isinstance(source, IterableDataset) and hasattr(source, "__len__"):
        items = (source[index] for index in range(len(source)))
    else:
        items, batched = iter(source), True
        note = f"{what}: read in iteration order (not a Dataset with an index): sample i is the i-th item yielded"
    try:
        pairs = [(torch.as_tensor(x), torch.as_tensor(y)) for x, y in items]
    except (TypeError, ValueError) as error:
        raise DataError(f"{what}: expected (inputs, labels) or a Dataset/DataLoader of pairs ({error})") from None
    if not pairs:
        raise DataError(f"{what}: the Dataset/DataLoader is empty")
    join = torch.cat if batched and pairs[0][0].ndim > 1 and pairs[0][1].ndim == 1 else torch.stack
    return join([x for x, _ in pairs]), join([y for _, y in pairs]), note


def initial_model(model: nn.Module, init, source: str = "init") -> nn.Module:
    """A copy of ``model`` holding the weights training started from.

    Args:
        model: the trained model (left unchanged).
        init: a module of the same architecture at its initial weights, or its state_dict (wrapper prefixes
            such as Opacus's ``_module.`` are dropped, as for a saved model: ``unwrapped_state_dict``).
        source: how errors name it (the argument, or the file it was read from).

    Returns:
        The model's architecture with ``init``'s weights; every tensor checked against the model's: the
        same names and shapes, finite, and not all equal to the trained weights (nothing to explain).
    """
    if isinstance(init, nn.Module):
        init = unwrap(init).state_dict()
    if not isinstance(init, Mapping):
        raise DataError(
            f"{source}: expected the initial weights as a module or a state_dict, got {type(init).__name__}"
        )
    initial = copy.deepcopy(unwrap(model))
    trained = initial.state_dict()
    hint = " (initial weights of another architecture?)"
    state = fitting_state(init, initial, source, "the model", ("the initial weights lack", hint))
    if all(torch.equal(state[name].to(trained[name]), trained[name]) for name in trained):
        raise DataError(f"{source}: equals the trained weights, so training added nothing for the attack to explain")
    initial.load_state_dict({name: tensor.to(trained[name]) for name, tensor in state.items()})
    return initial


def input_shape(model: nn.Module, inputs, image_shape) -> tuple[int, ...] | None:
    """One sample's shape as ``model`` takes it, for a network that takes images (a convolution first); None
    for one that takes flat rows. Read from the training inputs when they are images (n, C, H, W) or (n, H, W),
    else from ``image_shape`` ((H, W) read as one channel)."""
    if takes_flat_rows(model):
        return None
    if inputs is not None and torch.as_tensor(inputs).ndim > 2:
        return tuple(int(side) for side in torch.as_tensor(inputs).shape[1:])
    if image_shape is None:
        raise UnsupportedModelError(
            "model: it takes images (a convolution first) but the inputs are flat rows: give them as (n, C, H, W) "
            "or give image_shape (Auditor.audit's argument, or the data file's key 'image_shape')"
        )
    shape = tuple(int(side) for side in image_shape)
    return (1, *shape) if len(shape) == 2 else shape


def flat_input(model: nn.Module, shape: tuple[int, ...] | None) -> nn.Module:
    """``model`` fed flat rows, reshaped to ``shape`` before its own ``forward`` (the model itself when
    ``shape`` is None): a shallow copy of the same class with that one step added, so its layers keep their
    names and its weights are the model's own (not copied)."""
    if shape is None:
        return model
    inner = unwrap(model)

    class FlatInput(type(inner)):
        def forward(self, x):
            return super().forward(x.reshape(-1, *shape))

    FlatInput.__name__ = FlatInput.__qualname__ = type(inner).__name__
    wrapped = copy.copy(inner)
    wrapped.__class__ = FlatInput
    return wrapped


def pipeline_data(pairs: tuple, shape, nonmembers, test, **preparation) -> AuditData:
    """AuditData from what a pipeline has: ``pairs`` (inputs, labels, note) from :func:`sample_pairs`, non-members
    as arrays or a Dataset/DataLoader of pairs, held-out ``test`` pairs, for a model of ``shape``.

    Args:
        pairs: the training inputs, labels and how they were read.
        shape: the model's :class:`auditkit.attacks.base.ModelShape` (its inputs and outputs).
        nonmembers: inputs not trained on, or a Dataset/DataLoader of pairs (their inputs are read).
        test: held-out labelled pairs, or None.
        **preparation: ``mean``, ``std``, ``image_shape``, as :func:`auditkit.data.user_data.audit_data` takes them.

    Returns:
        The audit's data, with the note on how the pairs were read.
    """
    x, y, note = pairs
    if nonmembers is not None and not isinstance(nonmembers, torch.Tensor | np.ndarray):
        nonmembers = sample_pairs(nonmembers, "nonmembers")[0]  # a Dataset/DataLoader of pairs: the inputs
    held_out = sample_pairs(test, "test")[:2] if test is not None else None
    widths = {"outputs": shape.outputs, "inputs": shape.inputs}
    data = audit_data(x, y, nonmembers=nonmembers, test=held_out, **preparation, **widths)
    return dataclasses.replace(data, notes=data.notes + ((note,) if note else ()))
