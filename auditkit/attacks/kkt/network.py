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
    margin_coefficients,
    parameter_dot,
    smooth_relu,
)
from auditkit.attacks.kkt.tracing import (
    RELU_FUNCTIONS,
    SHAPE_METHODS,
    SKIPPED_FUNCTIONS,
    SKIPPED_METHODS,
    SKIPPED_MODULES,
    ModelGraphError,
    traced,
)
from auditkit.victims.models import unwrap
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
        model = copy.deepcopy(unwrap(model)).eval()
        graph = traced(model)
        modules = dict(model.named_modules())
        for position, node in enumerate(graph.graph.nodes):
            _check(node, modules, position)
        self.exact = model
        self.smooth = _with_smooth_relu(graph, modules)
        self.names = [name for name, _ in model.named_parameters()]
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if input_shape is None and not linears:
            raise ModelGraphError("input_shape: needed for a network without a Linear layer to read it from")
        self.input_shape = tuple(input_shape) if input_shape is not None else (linears[0].in_features,)
        self.outputs = int(self(torch.zeros(1, self.input_dim, dtype=self.parameters[0].dtype)).reshape(1, -1).shape[1])

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
        """Outputs at flat inputs ``x`` (m, d): (m,) for one output, (m, C) for C; at ``params`` (default the
        network's own); ``alpha``: None, the exact ReLU; a number, the smooth-step derivative."""
        values = dict(zip(self.names, params if params is not None else self.parameters))
        inputs = x.reshape(len(x), *self.input_shape)
        if alpha is None:
            out = functional_call(self.exact, values, (inputs,))
        else:
            alpha = torch.as_tensor(alpha, dtype=x.dtype, device=x.device)
            out = functional_call(self.smooth, values, (inputs, alpha))
        out = out.reshape(len(x), -1)
        return out.squeeze(-1) if out.shape[1] == 1 else out

    def to(self, device: torch.device | str, dtype: torch.dtype) -> ReLUNetwork:
        """A copy whose parameters are on ``device`` in ``dtype``."""
        moved = copy.copy(self)
        moved.exact = copy.deepcopy(self.exact).to(device=device, dtype=dtype)
        moved.smooth = copy.deepcopy(self.smooth).to(device=device, dtype=dtype)
        return moved

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


def stationarity_loss_autograd(
    problem: MLPLayers | Objective | ReLUNetwork | nn.Module,
    x: torch.Tensor,
    lambdas: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
) -> torch.Tensor:
    """The stationarity loss of one restart through autograd, for any network: the generic path, and the
    reference the closed form (:func:`kernel.stationarity_loss`) is tested and benchmarked against.

    Args:
        problem: a network (module or :class:`ReLUNetwork`: the KKT objective, its weights explained at
            themselves), or an MLP's :class:`Objective` (points averaged, the free direction projected out).
        x: candidates (m, d); lambdas: (m,) or (m, C) multipliers; labels: (m,); alpha: the smooth step's.

    Returns:
        ``||t - (1/m) sum_j lambda_j dmargin_j/dtheta||^2`` less the free direction's share, a scalar.
    """
    if isinstance(problem, MLPLayers | Objective):
        objective = as_objective(problem)
        network = mlp_network(objective.at)
        points = [point.parameters for point in objective.points]
        target = objective.target.parameters
        free = objective.free.parameters if objective.free is not None else None
    else:
        network = problem if isinstance(problem, ReLUNetwork) else ReLUNetwork(problem)
        points, target, free = [network.parameters], network.parameters, None
    coefficients = margin_coefficients(network, x, lambdas, labels) / x.shape[0]
    per_point = [network.gradient_combination(x, coefficients, alpha, point) for point in points]
    grads = [sum(parts) / len(per_point) for parts in zip(*per_point)]
    residuals = [t.detach() - g for t, g in zip(target, grads)]
    total = sum(r.pow(2).sum() for r in residuals)
    if free is not None:
        total = total - parameter_dot(residuals, free) ** 2 / parameter_dot(free, free)
    return total


def _check(node: fx.Node, modules: dict[str, nn.Module], position: int) -> None:
    """A step the objective's theory covers (a linear map, ReLU, max pooling, a shape-only step), else one
    line naming it and its position in ``forward``."""
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
        raise ModelGraphError(f"layer {node.target!r} ({type(module).__name__}, step {position}): {reason}")
    if node.op == "call_function" and (
        node.target in RELU_FUNCTIONS + SKIPPED_FUNCTIONS + POOLING_FUNCTIONS or node.target is operator.getitem
    ):
        return
    if node.op == "call_method" and node.target in (*SKIPPED_METHODS, *SHAPE_METHODS, "relu", "relu_"):
        return
    name = getattr(node.target, "__name__", str(node.target))
    raise ModelGraphError(
        f"operation {name!r} ({node.op}, step {position}) is not supported: auditkit audits networks of linear "
        "maps, ReLU and pooling"
    )


def _with_smooth_relu(graph: fx.GraphModule, modules: dict[str, nn.Module]) -> fx.GraphModule:
    """A copy of the traced network taking ``alpha`` as a second input, each ReLU the smooth-step one."""
    smooth = copy.deepcopy(graph)
    nodes = list(smooth.graph.nodes)
    first = next(node for node in nodes if node.op == "placeholder")
    with smooth.graph.inserting_after(first):
        alpha = smooth.graph.placeholder("alpha")
    for node in nodes:
        is_relu = (node.op == "call_module" and isinstance(modules[node.target], nn.ReLU)) or (
            (node.op == "call_function" and node.target in RELU_FUNCTIONS)
            or (node.op == "call_method" and node.target in ("relu", "relu_"))
        )
        if is_relu:
            with smooth.graph.inserting_after(node):
                replacement = smooth.graph.call_function(smooth_relu, (node.args[0], alpha))
            node.replace_all_uses_with(replacement)
            smooth.graph.erase_node(node)
    smooth.graph.lint()
    smooth.recompile()
    return smooth
