"""Any ReLU network as a function of its parameters, through autograd: the generic path of the stationarity
objective, of which the MLP closed form (:mod:`auditkit.attacks.kkt.kernel`) is the fast case.

The network is read by tracing its ``forward`` (torch.fx); every ReLU it applies (a module, ``F.relu``,
``torch.relu`` or the method) is replaced, in a copy, by the smooth-step ReLU (exact forward, derivative
sigmoid(alpha z), the authors' ``ModifiedRelu``); the user's model is left untouched. Linear maps
(``Linear``, ``Conv1d``/``Conv2d``, average pooling), max pooling (piecewise linear, as ReLU), shape-only steps
and ``Dropout`` (the identity at evaluation) are what the objective's theory covers; anything else is named
in one line with its position in ``forward``.
"""

from __future__ import annotations

import copy
import operator

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.func import functional_call

from auditkit.attacks.kkt.kernel import (
    MLPLayers,
    Objective,
    as_objective,
    extract_layers,
    smooth_relu,
    stationarity_loss,
)
from auditkit.attacks.kkt.tracing import (
    RELU_FUNCTIONS,
    SKIPPED_FUNCTIONS,
    SKIPPED_METHODS,
    SKIPPED_MODULES,
    ModelGraphError,
    shape_reads,
    source_line,
    traced,
)
from auditkit.errors import UnsupportedModelError
from auditkit.victims.models import outputs_tensor, unwrap
from auditkit.victims.user_model import mlp_from_state_dict

LINEAR_MODULES = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.MaxPool1d,
    nn.MaxPool2d,
)
POOLING_FUNCTIONS = (F.avg_pool1d, F.avg_pool2d, F.max_pool1d, F.max_pool2d, F.adaptive_avg_pool2d)
NORMALISATION = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d)


class ReLUNetwork:
    """A ReLU network's ``forward`` with its parameters passed in, and with a smooth-step ReLU on request.

    Args:
        model: the network (an Opacus or DataParallel wrapper is unwrapped); it is copied, never changed.
        input_shape: one sample's shape as the network takes it (e.g. ``(1, 28, 28)`` for a CNN); inputs
            are given as flat rows and reshaped to it. Default: the first Linear layer's input width.

    Example:
        >>> net = ReLUNetwork(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1)))
        >>> net(torch.zeros(2, 4)).shape
        torch.Size([2])
    """

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...] | None = None) -> None:
        model = _without_hooks(copy.deepcopy(unwrap(model)).eval())
        graph = traced(model)
        modules = dict(model.named_modules())
        shape_nodes = shape_reads(graph.graph)
        for position, node in enumerate(graph.graph.nodes):
            if node not in shape_nodes:
                _check(node, modules, position)
        self.exact = graph.eval()
        self.smooth = _with_smooth_relu(graph, modules)
        self.relus = [node.name for node in graph.graph.nodes if _is_relu(node, modules)]
        self.names = [name for name, _ in self.exact.named_parameters()]
        if input_shape is None:
            width = flat_width(graph, modules)
            if width is None:
                raise ModelGraphError(
                    "the network takes images, not flat rows: give the inputs as (n, C, H, W) or give image_shape "
                    "(Auditor.audit's argument, or the data file's key 'image_shape')"
                )
            input_shape = (width,)
        self.input_shape = tuple(int(side) for side in input_shape)
        try:
            probe = self(torch.zeros(1, self.input_dim, dtype=self.parameters[0].dtype))
        except RuntimeError as error:  # the layers do not fit each other or the input shape
            first = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
            raise ModelGraphError(f"the network does not run on inputs of shape {self.input_shape} ({first})") from None
        self.outputs = int(probe.reshape(1, -1).shape[1])

    @property
    def parameters(self) -> list[torch.Tensor]:
        """The network's own parameters, in ``named_parameters`` order (detached)."""
        return [p.detach() for p in self.exact.parameters()]

    @property
    def input_dim(self) -> int:
        """Features per sample (the flat width of ``input_shape``)."""
        return int(torch.Size(self.input_shape).numel())

    def __call__(
        self, x: torch.Tensor, params: list[torch.Tensor] | None = None, alpha: float | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Outputs at flat inputs ``x`` (..., d): (...) for one output, (..., C) for C; at ``params`` (default
        the network's own); ``alpha``: None, the exact ReLU; a number, the smooth-step derivative."""
        values = dict(zip(self.names, params if params is not None else self.parameters))
        inputs = x.reshape(-1, *self.input_shape)
        if alpha is None:
            out = functional_call(self.exact, values, (inputs,))
        else:
            alpha = torch.as_tensor(alpha, dtype=x.dtype, device=x.device)
            out = functional_call(self.smooth, values, (inputs, alpha))
        out = outputs_tensor(out).reshape(*x.shape[:-1], -1)
        return out.squeeze(-1) if out.shape[-1] == 1 else out

    def to(self, device: torch.device | str, dtype: torch.dtype) -> ReLUNetwork:
        """A copy whose parameters are on ``device`` in ``dtype``, subnormal weights set to 0 (as
        :meth:`auditkit.attacks.kkt.kernel.MLPLayers.to` does, for the same reason: speed)."""
        moved = copy.copy(self)
        moved.exact = copy.deepcopy(self.exact).to(device=device, dtype=dtype)
        moved.smooth = copy.deepcopy(self.smooth).to(device=device, dtype=dtype)
        tiny = torch.finfo(dtype).tiny
        with torch.no_grad():
            for module in (moved.exact, moved.smooth):
                for parameter in module.parameters():
                    parameter.masked_fill_(parameter.abs() < tiny, 0.0)
        return moved

    def norm(self) -> torch.Tensor:
        """||theta||: the Euclidean norm of all parameters together (float64)."""
        return torch.sqrt(sum((p.double() ** 2).sum() for p in self.parameters))

    def preactivations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """What every ReLU receives at flat inputs ``x`` (m, d), in the order ``forward`` applies them."""
        recorder = _ReLUInputs(self.exact, set(self.relus))
        with torch.no_grad():
            recorder.run(x.reshape(-1, *self.input_shape))
        return recorder.seen

    def per_sample_gradients(self, x: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """(n, P): row i the gradient in theta of ``directions[i] . Phi(x_i)`` (exact ReLU), parameters in
        ``names`` order, flattened."""
        values = {name: p.detach() for name, p in zip(self.names, self.parameters)}

        def margin(values: dict, one: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
            out = functional_call(self.exact, values, (one.reshape(1, *self.input_shape),))
            return (out.reshape(-1) * direction).sum()

        rows = torch.func.vmap(torch.func.grad(margin), in_dims=(None, 0, 0))(values, x, directions)
        return torch.cat([rows[name].reshape(len(x), -1) for name in self.names], 1)

    def gradient_combination(
        self, x: torch.Tensor, coefficients: torch.Tensor, alpha: float | torch.Tensor, params: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """``sum_j c_j grad_theta f(theta; x_j)`` at ``params``: one backward pass with grad_outputs c (m,) or
        (m, C), kept differentiable in x and c (the attack's gradient is a second backward through it)."""
        params = [p.detach().requires_grad_(True) for p in params]
        out = self(x, params, alpha)
        weighted = (out.reshape(coefficients.shape) * coefficients).sum()
        return list(torch.autograd.grad(weighted, params, create_graph=True))


def mlp_network(layers: MLPLayers) -> ReLUNetwork:
    """The :class:`ReLUNetwork` of an MLP's layers (``Linear, ReLU, ..., Linear``) with their weights."""
    state = {}
    for index, (weight, bias) in enumerate(zip(layers.weights, layers.biases)):
        state[f"{2 * index}.weight"] = weight.detach()
        if bias is not None:
            state[f"{2 * index}.bias"] = bias.detach()
    return ReLUNetwork(mlp_from_state_dict(state).to(layers.weights[0].device))


def victim_network(model: nn.Module) -> MLPLayers | ReLUNetwork:
    """What the attack computes on: an MLP's layers (the closed form, the fast path) when ``model`` is a chain
    of Linear layers and ReLUs, else the generic :class:`ReLUNetwork`; anything else raises
    :class:`UnsupportedModelError` naming the layer or operation and its step."""
    try:
        return extract_layers(model)
    except UnsupportedModelError:
        try:
            return ReLUNetwork(model)
        except ModelGraphError as error:
            raise UnsupportedModelError(str(error)) from None


def takes_flat_rows(model: nn.Module) -> bool:
    """Whether ``model`` reads flat rows (its first layer a Linear, or an Unflatten in front) rather than images
    (a convolution first); a model that cannot be traced counts as flat (the attack's check names why)."""
    try:
        graph = traced(unwrap(model))
    except ModelGraphError:
        return True
    return flat_width(graph, dict(graph.named_modules())) is not None


def flat_width(graph: fx.GraphModule, modules: dict[str, nn.Module]) -> int | None:
    """The flat input width a traced network reads: an ``Unflatten`` or a reshape to a fixed sample shape
    (``x.reshape(-1, C, H, W)``, ``x.view(x.size(0), C, H, W)``) first gives it, else the first layer with
    weights when it is a Linear; None when the first such layer is a convolution (it takes images)."""
    batch = shape_reads(graph.graph)
    for node in graph.graph.nodes:
        reshaped = node.op == "call_method" and node.target in ("reshape", "view") or node.target is torch.reshape
        if reshaped and node.args and getattr(node.args[0], "op", None) == "placeholder":
            sizes = node.args[1] if len(node.args) == 2 and isinstance(node.args[1], tuple | list) else node.args[1:]
            leading = sizes and (sizes[0] == -1 or sizes[0] in batch)  # -1, x.size(0) or x.shape[0]
            if leading and len(sizes) > 1 and all(isinstance(side, int) and side > 0 for side in sizes[1:]):
                return int(torch.Size(sizes[1:]).numel())
        if node.op != "call_module":
            continue
        module = modules[node.target]
        if isinstance(module, nn.Unflatten):
            return int(torch.Size(module.unflattened_size).numel())
        if isinstance(module, nn.Linear):
            return module.in_features
        if isinstance(module, nn.Conv1d | nn.Conv2d):
            return None
    return None


def stationarity_loss_autograd(
    problem: MLPLayers | Objective | ReLUNetwork | nn.Module,
    x: torch.Tensor,
    lambdas: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
) -> torch.Tensor:
    """The stationarity loss of one restart through autograd, for any network: the generic path of
    :func:`kernel.stationarity_loss` on a network, here also for an MLP (what the closed form is tested and
    benchmarked against).

    Args:
        problem: a network (module or :class:`ReLUNetwork`: the KKT objective, its weights explained at
            themselves), or an MLP's :class:`Objective` (points averaged, the free direction projected out).
        x: candidates (m, d); lambdas: (m,) or (m, C) multipliers; labels: (m,); alpha: the smooth step's.

    Returns:
        ``||t - (1/m) sum_j lambda_j dmargin_j/dtheta||^2`` less the free direction's share, a scalar.
    """
    if isinstance(problem, MLPLayers | Objective):
        mlp = as_objective(problem)
        free = mlp_network(mlp.free) if mlp.free is not None else None
        objective = Objective(tuple(mlp_network(p) for p in mlp.points), mlp_network(mlp.target), free)
    else:
        network = problem if isinstance(problem, ReLUNetwork) else ReLUNetwork(problem)
        objective = as_objective(network)
    return stationarity_loss(objective, x[None], lambdas[None], labels, alpha)[0]


def _without_hooks(model: nn.Module) -> nn.Module:
    """``model`` (a copy) with every module's hooks removed: a model trained with Opacus keeps its per-sample
    gradient hooks on the layers, which would fire (and fail) inside the attack's own backward passes."""
    for module in model.modules():
        for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            getattr(module, hooks).clear()
    return model


def _is_relu(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    return (
        (node.op == "call_module" and isinstance(modules[node.target], nn.ReLU))
        or (node.op == "call_function" and node.target in RELU_FUNCTIONS)
        or (node.op == "call_method" and node.target in ("relu", "relu_"))
    )


class _ReLUInputs(fx.Interpreter):
    """Runs a traced network and keeps what each ReLU node (by name) receives."""

    def __init__(self, module: fx.GraphModule, relus: set[str]) -> None:
        super().__init__(module)
        self.relus, self.seen = relus, []

    def run_node(self, node: fx.Node):
        if node.name in self.relus:
            self.seen.append(self.fetch_args_kwargs_from_env(node)[0][0])
        return super().run_node(node)


def _check(node: fx.Node, modules: dict[str, nn.Module], position: int) -> None:
    """A step the objective's theory covers (a linear map, ReLU, max pooling, a shape-only step), else one
    line naming it, its position in ``forward`` and the source line that applies it."""
    if node.op in ("placeholder", "output"):
        return
    if node.op == "call_module":
        module = modules[node.target]
        if isinstance(module, (*LINEAR_MODULES, *SKIPPED_MODULES, nn.ReLU)):
            return
        reason = (
            "normalisation: fold it into the layer before it (torch.nn.utils.fusion.fuse_conv_bn_eval) first"
            if isinstance(module, NORMALISATION)
            else "not a linear map, ReLU or pooling"
        )
        raise ModelGraphError(
            f"layer {node.target!r} ({type(module).__name__}, step {position}){source_line(node)}: {reason}"
        )
    if node.op == "call_function" and (
        node.target in RELU_FUNCTIONS + SKIPPED_FUNCTIONS + POOLING_FUNCTIONS or node.target is operator.getitem
    ):
        return
    if node.op == "call_method" and node.target in (*SKIPPED_METHODS, "relu", "relu_"):
        return
    name = getattr(node.target, "__name__", str(node.target))
    raise ModelGraphError(
        f"operation {name!r} ({node.op}, step {position}){source_line(node)} is not supported: auditkit audits "
        "networks of linear maps, ReLU and pooling"
    )


def _with_smooth_relu(graph: fx.GraphModule, modules: dict[str, nn.Module]) -> fx.GraphModule:
    """A copy of the traced network taking ``alpha`` as a second input, each ReLU the smooth-step one."""
    smooth = copy.deepcopy(graph)
    nodes = list(smooth.graph.nodes)
    first = next(node for node in nodes if node.op == "placeholder")
    with smooth.graph.inserting_after(first):
        alpha = smooth.graph.placeholder("alpha")
    for node in nodes:
        is_relu = _is_relu(node, modules)
        if is_relu:
            with smooth.graph.inserting_after(node):
                replacement = smooth.graph.call_function(smooth_relu, (node.args[0], alpha))
            node.replace_all_uses_with(replacement)
            smooth.graph.erase_node(node)
    smooth.graph.lint()
    smooth.recompile()
    return smooth
