"""The membership test of the span attack: how far an input's features at a layer lie outside its row space.

A training input's features at a layer whose rows are spanned by the training inputs lie in the row space
(residual 0 up to rounding); any other input's generally do not. The residual is ``||h - P h|| / ||h||``
for the layer's input ``h`` (computed by running the network up to the layer) and ``P`` the projector on
the row space's basis: lower is more likely a member.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from auditkit.victims.models import outputs_tensor

BATCH = 1024  # inputs per forward pass


def layer_inputs(
    model: nn.Module, layer: nn.Module, inputs: np.ndarray, device: torch.device | str, dtype: torch.dtype
) -> np.ndarray:
    """(N, width) the inputs ``layer`` (one of ``model``'s modules, which are on ``device`` in ``dtype``) receives
    when ``model`` runs on ``inputs`` (flat rows), float64; a layer applied to more than one vector per input
    gives them side by side."""
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda module, args, output: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            for start in range(0, len(inputs), BATCH):
                outputs_tensor(model(torch.as_tensor(inputs[start : start + BATCH], device=device, dtype=dtype)))
    finally:
        handle.remove()
    if not seen:  # no inputs, or a forward that skips the layer
        return np.zeros((len(inputs), layer.in_features))
    features = torch.cat([batch.reshape(-1, batch.shape[-1]) for batch in seen])
    return features.reshape(len(inputs), -1).to("cpu", torch.float64).numpy()


def span_residuals(features: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(N,) the relative residual of each row of ``features`` outside the row space of ``basis`` (k, width); 1 for
    a zero row (nothing of it lies in the span)."""
    outside = features - (features @ basis.T) @ basis
    norms = np.linalg.norm(features, axis=1)
    return np.divide(np.linalg.norm(outside, axis=1), norms, out=np.ones(len(features)), where=norms > 0)
