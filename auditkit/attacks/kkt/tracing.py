"""A model read by what it computes: torch.fx traces ``forward`` into the chain of Linear layers and ReLUs.

However the network is written (an ``nn.Sequential``, nested ones, a class whose ``forward`` calls
``F.relu`` or ``torch.relu``), what the KKT attack needs is the order in which ``forward`` applies its
Linear layers and ReLUs. Shape-only steps (``Flatten``, ``view``/``reshape`` with sizes read from
``x.shape`` or ``x.size(0)``, ``flatten``, ``squeeze``/``unsqueeze`` as methods or functions), ``Dropout``
(the identity at evaluation: the audit reads weights, not a training step) and ``Identity`` are skipped;
anything else is named in one line with the line of the user's source that applies it.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import fx, nn

from auditkit.errors import AuditkitError

SKIPPED_MODULES = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)
RELU_FUNCTIONS = (F.relu, torch.relu, torch.relu_, F.relu_)
SKIPPED_FUNCTIONS = (torch.flatten, F.dropout, torch.reshape, torch.squeeze, torch.unsqueeze)
SKIPPED_METHODS = ("view", "reshape", "flatten", "squeeze", "unsqueeze", "contiguous", "float", "double", "to")
SHAPE_METHODS = ("size", "dim")  # read the shape, compute nothing on the values
SHAPE_ATTRIBUTES = ("shape", "ndim")
TORCH_SOURCE = Path(torch.__file__).parent


class ModelGraphError(AuditkitError, ValueError):
    """The model computes something other than a chain of Linear layers and ReLUs."""


def linear_chain(model: nn.Module) -> list[nn.Linear]:
    """The Linear layers ``model.forward`` applies, in that order, checked to alternate with ReLUs
    (``Linear, ReLU, ..., Linear``).

    Args:
        model: an unwrapped network (no Opacus or DataParallel wrapper).

    Returns:
        The Linear modules, first applied first.

    Raises:
        ModelGraphError: naming the layer or operation that is not supported, or why tracing failed.
    """
    if isinstance(model, nn.Linear):
        return [model]
    graph = traced(model).graph
    modules = dict(model.named_modules())
    steps: list[nn.Linear | str] = []
    current: fx.Node | None = None
    shape_nodes = shape_reads(graph)
    for node in graph.nodes:
        if node.op == "placeholder":
            current = current or node
            continue
        if node.op == "get_attr":
            raise ModelGraphError(
                f"the model's forward reads the tensor {node.target!r} directly{source_line(node)}: not supported"
            )
        if node.op == "output":
            if node.args[0] is not current:
                raise ModelGraphError("the model's forward does not return the output of its last layer alone")
            break
        if node in shape_nodes:
            continue
        kind = _kind(node, modules)
        tensors = [arg for arg in node.all_input_nodes if arg not in shape_nodes]
        if tensors != [current]:
            raise ModelGraphError(f"{_describe(node, modules)} does not take the previous layer's output alone")
        current = node
        if kind == "linear":
            steps.append(modules[node.target])
        elif kind == "relu" and steps and steps[-1] != "relu":
            steps.append("relu")
    return _checked(steps)


def traced(model: nn.Module) -> fx.GraphModule:
    """``model``'s forward as a torch.fx graph; a forward that cannot be traced (control flow on the data,
    say) raises :class:`ModelGraphError` saying why, rather than being audited wrong."""
    tracer = fx.Tracer()
    tracer.record_stack_traces = True  # each node keeps the line of forward that made it, for the messages
    try:
        return fx.GraphModule(model, tracer.trace(model))
    except Exception as error:  # fx raises many kinds (TraceError, TypeError, NotImplementedError, ...)
        reason = f"{type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"
        frames = [(frame.filename, frame.lineno, frame.line) for frame in traceback.extract_tb(error.__traceback__)]
        raise ModelGraphError(
            f"the model could not be traced with torch.fx{_user_frame(frames)} ({reason}); "
            "auditkit reads a model by tracing its forward: write it without an `if` or loop on the input (its "
            "values or its shape), or pass an nn.Sequential of Linear and ReLU"
        ) from None


def shape_reads(graph: fx.Graph) -> set[fx.Node]:
    """The nodes that compute on the input's shape, not its values: ``x.shape``, ``x.size(0)``, ``x.dim()``,
    and indexing or arithmetic on those alone (``x.shape[0]``, ``x.size(1) * x.size(2)``)."""
    found: set[fx.Node] = set()
    for node in graph.nodes:
        reads = (node.op == "call_method" and node.target in SHAPE_METHODS) or (
            node.op == "call_function" and node.target is getattr and node.args[1] in SHAPE_ATTRIBUTES
        )
        on_shapes = node.op == "call_function" and getattr(node.target, "__module__", None) == "_operator"
        if reads or (on_shapes and node.all_input_nodes and set(node.all_input_nodes) <= found):
            found.add(node)
    return found


def source_line(node: fx.Node) -> str:
    """`` (at model.py line 12: x = x.tanh())``: the line of the user's ``forward`` that made ``node``, or ''."""
    lines = (node.stack_trace or "").splitlines()
    frames = []
    for index, text in enumerate(lines):
        if match := re.match(r'\s*File "(.+)", line (\d+), in ', text):
            code = (
                lines[index + 1]
                if index + 1 < len(lines) and not lines[index + 1].lstrip().startswith("File")
                else None
            )
            frames.append((match[1], int(match[2]), code))
    return _user_frame(frames)


def _user_frame(frames: list[tuple[str, int, str | None]]) -> str:
    """`` (at NAME line N: CODE)`` for the last of ``frames`` outside torch's source, or ''."""
    for filename, line, code in reversed(frames):
        if not Path(filename).is_relative_to(TORCH_SOURCE):
            return f" (at {Path(filename).name} line {line}{': ' + code.strip() if code else ''})"
    return ""


def _kind(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """linear, relu or skip (shape-only or the identity); otherwise refused."""
    if node.op == "call_module":
        module = modules[node.target]
        if isinstance(module, nn.Linear):
            return "linear"
        if isinstance(module, nn.ReLU):
            return "relu"
        if isinstance(module, SKIPPED_MODULES):
            return "skip"
    elif node.op == "call_function":
        if node.target in RELU_FUNCTIONS:
            return "relu"
        if node.target in SKIPPED_FUNCTIONS:
            return "skip"
    elif node.op == "call_method":
        if node.target in ("relu", "relu_"):
            return "relu"
        if node.target in SKIPPED_METHODS:
            return "skip"
    raise ModelGraphError(
        f"{_describe(node, modules)} is not supported: the KKT attack audits ReLU MLPs (Linear and ReLU, with "
        "Flatten, Dropout, Identity, view/reshape between them)"
    )


def _describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"layer {node.target!r} ({type(modules[node.target]).__name__}){source_line(node)}"
    name = getattr(node.target, "__name__", str(node.target))
    return f"operation {name!r} ({'method' if node.op == 'call_method' else 'function'}){source_line(node)}"


def _checked(steps: list[nn.Linear | str]) -> list[nn.Linear]:
    """Linear, ReLU, ..., Linear: no two Linear layers in a row, no ReLU at either end, no layer twice."""
    names = ["ReLU" if step == "relu" else "Linear" for step in steps]
    expected = ["Linear" if index % 2 == 0 else "ReLU" for index in range(len(steps))]
    if not steps or names != expected or names[-1] != "Linear":
        applied = ", ".join(names) or "nothing"
        raise ModelGraphError(f"the KKT attack needs Linear, ReLU, ..., Linear; the model's forward applies {applied}")
    linears = [step for step in steps if step != "relu"]
    if len({id(layer) for layer in linears}) != len(linears):
        raise ModelGraphError("the model's forward applies one Linear layer twice (shared weights): not supported")
    return linears
