"""A model the user trained and saved: a state_dict (safetensors or weights-only torch) becomes a ReLU MLP, or
loads into the user's own class (a CNN: its state_dict does not say how it is wired)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from auditkit.errors import DataError, UnsupportedModelError
from auditkit.storage.safe_load import load_weights

WRAPPER_PREFIXES = ("_module.", "_orig_mod.", "module.")  # Opacus, torch.compile, DataParallel
MAX_PARAMETERS = 500_000_000  # 2 GB of float32 weights: a larger MLP is refused before any copy is made


def _check_tensor(tensor: torch.Tensor, what: str) -> None:
    """Weights the attack can use as they are: real floating point, dense, in memory, no overlapping strides."""
    if tensor.layout != torch.strided or tensor.device.type == "meta":
        raise UnsupportedModelError(f"{what}: a {tensor.layout} tensor on {tensor.device.type}; save dense weights")
    if not tensor.is_floating_point():
        raise UnsupportedModelError(f"{what}: {tensor.dtype} values; weights must be real floating point")
    if any(stride <= 0 and size > 1 for stride, size in zip(tensor.stride(), tensor.shape)):
        raise UnsupportedModelError(f"{what}: an expanded (stride 0) tensor; save the weights themselves")


def unwrapped_name(name: str) -> str:
    """A parameter's or module's name without the wrappers' prefixes (``WRAPPER_PREFIXES``)."""
    for prefix in WRAPPER_PREFIXES:
        name = name.removeprefix(prefix)
    return name


def unwrapped_state_dict(state: Mapping, source: str = "state_dict") -> dict[str, torch.Tensor]:
    """``state`` with wrapper prefixes dropped from its names (``WRAPPER_PREFIXES``), every entry a tensor the
    attack can use as it is; two entries that are one name once unwrapped are refused, not one dropped."""
    cleaned: dict[str, torch.Tensor] = {}
    for original, tensor in state.items():
        name = unwrapped_name(str(original))
        if not isinstance(tensor, torch.Tensor):
            raise UnsupportedModelError(f"{source}: entry {name!r} is {type(tensor).__name__}, not a tensor")
        if name in cleaned:
            raise UnsupportedModelError(f"{source}: {original!r} and another entry are both {name!r} once unwrapped")
        _check_tensor(tensor, f"{source}: {original!r}")
        cleaned[name] = tensor
    return cleaned


def mlp_from_state_dict(state: dict[str, torch.Tensor], source: str = "state_dict") -> nn.Sequential:
    """The ``Linear, ReLU, ..., Linear`` network a state_dict describes (layout from names and shapes).

    Activations cannot be read from weights: ReLU is assumed (the attack needs it). Anything else than a
    chain of 2-D weights with optional 1-D biases gets an error naming the tensor.
    """
    if not isinstance(state, dict) or not state:
        raise UnsupportedModelError(f"{source}: expected a non-empty state_dict (names -> tensors)")
    cleaned = unwrapped_state_dict(state, source)
    parameters = sum(t.numel() for t in cleaned.values())
    if parameters > MAX_PARAMETERS:
        raise UnsupportedModelError(f"{source}: {parameters:,} parameters, more than the {MAX_PARAMETERS:,} audited")
    layers: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    for name, tensor in cleaned.items():
        if name.endswith(".bias"):
            if name.removesuffix(".bias") + ".weight" not in cleaned:
                raise UnsupportedModelError(f"{source}: bias {name!r} has no weight")
            continue
        if not name.endswith(".weight") or tensor.ndim != 2:
            raise UnsupportedModelError(
                f"{source}: {name!r} with shape {tuple(tensor.shape)} is not a Linear weight; auditkit audits "
                "ReLU MLPs (Linear layers only)"
            )
        bias = cleaned.get(name.removesuffix(".weight") + ".bias")
        if bias is not None and bias.shape != (tensor.shape[0],):
            raise UnsupportedModelError(f"{source}: bias of {name!r} has shape {tuple(bias.shape)}")
        layers.append((tensor, bias))
    modules: list[nn.Module] = []
    for index, (weight, bias) in enumerate(layers):
        if index and weight.shape[1] != layers[index - 1][0].shape[0]:
            raise UnsupportedModelError(
                f"{source}: layer {index} takes {weight.shape[1]} inputs but layer {index - 1} gives "
                f"{layers[index - 1][0].shape[0]}"
            )
        if not (torch.isfinite(weight).all() and (bias is None or torch.isfinite(bias).all())):
            raise UnsupportedModelError(f"{source}: layer {index} holds NaN or infinite weights")
        if 0 in weight.shape:
            raise UnsupportedModelError(f"{source}: layer {index}'s weight has shape {tuple(weight.shape)}: no units")
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias)
        modules += [linear, nn.ReLU()]
    for index, (weight, _) in enumerate(layers):
        if not (weight.abs() >= torch.finfo(torch.float32).tiny).any():
            raise UnsupportedModelError(
                f"{source}: layer {index}'s weight is all zero or subnormal (every |w| under float32's smallest normal "
                f"number, {torch.finfo(torch.float32).tiny:.3g}): the layer passes nothing on, so no attack can read "
                "the training inputs through it"
            )
    return nn.Sequential(*modules[:-1])


CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")  # where training checkpoints keep the weights
FOLDER_WEIGHTS = "model.safetensors"  # the weights file of a saved model folder (Hugging Face's layout)


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict read safely (:func:`auditkit.storage.safe_load.load_weights`: never unpickles objects): a
    state_dict file, a training checkpoint that holds one under ``CHECKPOINT_KEYS`` (the PyTorch tutorial's
    ``model_state_dict``; Lightning's ``state_dict``, its ``model.`` prefix dropped), or a folder holding
    ``model.safetensors``. A checkpoint with none of those keys is refused naming the keys it has."""
    path = Path(path)
    if path.is_dir() and (path / FOLDER_WEIGHTS).is_file():
        path = path / FOLDER_WEIGHTS
    loaded = load_weights(path, UnsupportedModelError)
    if not isinstance(loaded, Mapping) or all(isinstance(value, torch.Tensor) for value in loaded.values()):
        return loaded
    nested = next((loaded[key] for key in CHECKPOINT_KEYS if isinstance(loaded.get(key), Mapping)), None)
    if nested is None:
        found = ", ".join(repr(str(key)) for key in list(loaded)[:8])
        raise UnsupportedModelError(
            f"{path}: a checkpoint (keys {found}) with no state_dict under {', '.join(CHECKPOINT_KEYS)}: save "
            "model.state_dict(), or put it under one of those keys"
        )
    if nested and all(str(name).startswith("model.") for name in nested):  # a LightningModule's self.model
        nested = {str(name).removeprefix("model."): tensor for name, tensor in nested.items()}
    return dict(nested)


def model_from_class(spec: str, arguments: Mapping, state: Mapping, source: str = "state_dict") -> nn.Module:
    """The user's own network class, built and loaded with a saved state_dict: how a state_dict that does not
    say how it is wired (a CNN) is audited.

    Args:
        spec: ``module:Class``: a dotted module importable from the current folder, or a ``.py`` file's path.
        arguments: keyword arguments for the class.
        state: its state_dict (wrapper prefixes dropped, every tensor checked: :func:`unwrapped_state_dict`).
        source: how errors name the state_dict (its file).

    Returns:
        The model in eval mode with the saved weights; a class that cannot be imported or built, or that does not
        take the state_dict exactly (a missing, extra or differently shaped tensor), raises
        :class:`UnsupportedModelError` in one line.
    """
    module_name, _, class_name = spec.rpartition(":")
    if not module_name or not class_name:
        raise UnsupportedModelError(f"--arch: {spec!r} is not module:Class (e.g. mynets:SmallCNN or nets.py:SmallCNN)")
    try:
        module = _import(module_name)
    except Exception as error:  # the user's module: any error in it is theirs, said in one line
        raise UnsupportedModelError(
            f"--arch: cannot import {module_name!r} ({type(error).__name__}: {error})"
        ) from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UnsupportedModelError(f"--arch: {module_name!r} has no torch.nn.Module class {class_name!r}")
    try:
        model = cls(**dict(arguments))
    except Exception as error:
        raise UnsupportedModelError(
            f"--arch: {class_name}(**{dict(arguments)}) failed ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(state, Mapping) or not state:
        raise UnsupportedModelError(f"{source}: expected a non-empty state_dict (names -> tensors)")
    cleaned = fitting_state(
        state, model, source, class_name, ("it lacks", f" (--arch {spec} is another architecture?)")
    )
    model = model.to(next(iter(cleaned.values())).dtype)
    model.load_state_dict(cleaned)
    return model.eval()


def fitting_state(
    state: Mapping, model: nn.Module, source: str, owner: str, missing: tuple[str, str]
) -> dict[str, torch.Tensor]:
    """``state`` unwrapped (:func:`unwrapped_state_dict`) and checked against ``model``'s own: the same names and
    shapes, finite values; the first mismatch is one line naming the tensor.

    Args:
        state: the tensors to load.
        model: what they must fit.
        source: how errors name ``state`` (a file, an argument).
        owner: how errors name ``model``.
        missing: (what lacks a tensor, e.g. "the initial weights lack"; a hint after a name mismatch).
    """
    cleaned = unwrapped_state_dict(state, source)
    expected = model.state_dict()
    for name in sorted(set(expected) ^ set(cleaned)):
        where = f"{owner} has no tensor" if name in cleaned else f"{missing[0]} {owner}'s tensor"
        raise UnsupportedModelError(f"{source}: {where} {name!r}{missing[1]}")
    for name, tensor in cleaned.items():
        if tensor.shape != expected[name].shape:
            shapes = f"{tuple(tensor.shape)} but {owner}'s is {tuple(expected[name].shape)}"
            raise UnsupportedModelError(f"{source}: tensor {name!r} is {shapes}")
        if not torch.isfinite(tensor).all():
            raise DataError(f"{source}: tensor {name!r} holds NaN or infinite values")
    return cleaned


def _import(name: str):
    """A module by dotted name (the current folder first on the path) or from a ``.py`` file."""
    import importlib
    import importlib.util
    import sys

    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"no file {name}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    return importlib.import_module(name)
