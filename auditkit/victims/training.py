"""Training a victim to (near) zero training error: full-batch GD, or the usual optimizers on minibatches."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from auditkit.results.facts import PrivacyFacts, TrainingLog


def logistic_loss(output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on logits with labels in {-1, +1}: mean log(1 + exp(-y Phi))."""
    return F.softplus(-labels * output).mean()


def classification_loss(output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The victim's loss on the model's raw output: logistic for one output (labels -1/+1),
    cross-entropy for C outputs (labels 0..C-1)."""
    if output.shape[-1] == 1:
        return logistic_loss(output.squeeze(-1), labels)
    return F.cross_entropy(output, labels.long())


def predictions(output: torch.Tensor) -> torch.Tensor:
    """Predicted labels in the labels' encoding: the sign for one output, the argmax class for C."""
    return torch.sign(output.squeeze(-1)) if output.shape[-1] == 1 else output.argmax(-1).to(output.dtype)


def accuracy(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of ``x`` that ``model`` labels as ``labels`` say (NaN for no samples)."""
    if len(x) == 0:
        return math.nan
    with torch.no_grad():
        return (predictions(model(x)) == labels).double().mean().item()


OptimizerName = Literal["gd", "sgd", "adam", "adamw"]
Schedule = Literal["constant", "cosine"]


def make_optimizer(
    model: nn.Module, optimizer: OptimizerName, *, lr: float, weight_decay: float = 0.0, momentum: float = 0.0
) -> torch.optim.Optimizer:
    """gd and sgd: ``torch.optim.SGD`` (L2 weight decay in the gradient); adam (L2 in the gradient) and
    adamw (decoupled weight decay) as PyTorch defines them."""
    parameters = model.parameters()
    if optimizer in ("gd", "sgd"):
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if optimizer == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)


def train_mlp(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    lr: float,
    epochs: int,
    optimizer: OptimizerName = "gd",
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    batch_size: int | None = None,
    schedule: Schedule = "constant",
    seed: int = 0,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    progress: Callable[[int, float], None] | None = None,
    log_every: int = 100,
    compile: bool = False,
) -> TrainingLog:
    """Train on the logistic (one output) or cross-entropy (C outputs) loss: full-batch GD (``batch_size``
    None) or shuffled minibatches, as people train (SGD with momentum, Adam, AdamW), optionally with a
    cosine learning-rate decay to 0.

    Args:
        model: the network, trained in place.
        x: the training inputs (flat rows), on the model's device.
        labels: -1/+1 (one output) or 0..C-1 (C outputs).
        lr: the learning rate.
        epochs: passes over the training set.
        optimizer: "gd" (full batch), "sgd", "adam" or "adamw".
        weight_decay: L2 in the gradient (adamw: decoupled).
        momentum: SGD's momentum.
        batch_size: the minibatch size (None: full batch).
        schedule: "constant", or "cosine" (the learning rate decays to 0).
        seed: drives the minibatch order (a generator of its own, so the global RNG stays untouched).
        test: held-out (inputs, labels), for the test accuracy.
        progress: called with (epoch, loss of the epoch's last step) every ``log_every`` epochs.
        log_every: how often ``progress`` is called, in epochs.
        compile: run the step through torch.compile (with CUDA graphs on a GPU, where kernel launches
            dominate a small full-batch step), at the cost of a one-off compilation.

    Returns:
        The training log: final loss, train and test accuracy, seconds, the recipe.
    """
    start = time.perf_counter()
    n = len(x)
    batch = min(batch_size or n, n)
    steps_per_epoch = math.ceil(n / batch)
    optim = make_optimizer(model, optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum)
    decay = None  # made before the step function, which keeps the optimizer's (scheduler-wrapped) step
    if schedule == "cosine":
        decay = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=epochs * steps_per_epoch)
    step = training_step(model, optim, compile=compile)
    order_generator = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        if batch == n:
            loss = step(x, labels)
            if decay is not None:
                decay.step()
        else:
            order = torch.randperm(n, generator=order_generator).to(x.device)
            for first in range(0, n, batch):
                index = order[first : first + batch]
                loss = step(x[index], labels[index])
                if decay is not None:
                    decay.step()
        if progress is not None and (epoch % log_every == 0 or epoch == epochs):
            progress(epoch, loss.item())
    recipe = {
        "optimizer": optimizer,
        "lr": lr,
        "weight_decay": weight_decay,
        "momentum": momentum,
        "batch_size": batch,
        "schedule": schedule,
        "steps": epochs * steps_per_epoch,
        "compiled": compile,
    }
    return finish_training(model, x, labels, test, epochs, start, recipe)


def training_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, *, compile: bool = False
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A function doing one optimizer step on a batch and returning the loss before it."""

    def objective(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return classification_loss(model(x), labels)

    update = optimizer.step
    graphs = compile and next(model.parameters()).device.type == "cuda"
    if compile:
        objective = torch.compile(objective, mode="reduce-overhead" if graphs else None)
        update = torch.compile(optimizer.step)

    def step(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if graphs:  # a new iteration: the previous replay's outputs (loss, grads) are consumed
            torch.compiler.cudagraph_mark_step_begin()
        optimizer.zero_grad(set_to_none=True)
        loss = objective(x, labels)
        loss.backward()
        update()
        return loss

    return step


def finish_training(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    test: tuple[torch.Tensor, torch.Tensor] | None,
    epochs: int,
    start: float,
    recipe: dict,
    privacy: PrivacyFacts | None = None,
) -> TrainingLog:
    """Final loss and accuracies of a trained victim, with the time since ``start``."""
    with torch.no_grad():
        final_loss = classification_loss(model(x), labels).item()
    return TrainingLog(
        train_accuracy=accuracy(model, x, labels),
        test_accuracy=accuracy(model, *test) if test is not None else math.nan,
        final_loss=final_loss,
        epochs=epochs,
        seconds=time.perf_counter() - start,
        recipe=recipe,
        privacy=privacy,
    )
