"""The frozen backbone of the feature scenarios: a small ReLU CNN trained on a slice of the digits that no task
draws from, cached, whose last hidden layer gives each image its embedding."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from auditkit.storage.files import atomic_path, cache_folder, ensure_writable
from auditkit.storage.fingerprint import fingerprint
from auditkit.storage.safe_load import load_weights
from auditkit.victims.models import ConvLayer, build_cnn
from auditkit.victims.training import train_mlp

BACKBONE_VERSION = 1
SLICE_PER_DIGIT = 100  # images per digit the backbone trains on; no member or non-member is one of them
SLICE_SEED = 0  # the slice and the backbone are the same for every scenario seed (one public model)
EMBEDDING_WIDTH = 256
CONVOLUTIONS = (ConvLayer(16, 5, 2), ConvLayer(32, 5, 2))
RECIPE = {"optimizer": "adam", "lr": 1e-3, "epochs": 30, "batch_size": 50}


def backbone_slice(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The positions the backbone trains on (``SLICE_PER_DIGIT`` of each digit, drawn by ``SLICE_SEED``) and
    the rest, in their order: the only positions a task may draw members and non-members from."""
    rng = np.random.default_rng(SLICE_SEED)
    chosen = np.concatenate(
        [rng.permutation(np.flatnonzero(classes == digit))[:SLICE_PER_DIGIT] for digit in np.unique(classes)]
    )
    kept = np.ones(len(classes), dtype=bool)
    kept[chosen] = False
    return np.sort(chosen), np.flatnonzero(kept)


def trained_backbone(images: np.ndarray, classes: np.ndarray, image_shape: tuple[int, ...]) -> nn.Sequential:
    """The backbone trained on ``images`` (flat pixel rows) to tell their ``classes`` apart (float32, CPU),
    from the cache under ``$AUDITKIT_CACHE/backbones`` when an entry of the same images and recipe is there.

    Returns:
        The whole classifier; :func:`embed` reads its last hidden layer.
    """
    key = fingerprint(
        {
            "version": BACKBONE_VERSION,
            "images": hashlib.sha256(np.ascontiguousarray(images, dtype=np.float32).tobytes()).hexdigest(),
            "classes": hashlib.sha256(np.ascontiguousarray(classes, dtype=np.int64).tobytes()).hexdigest(),
            "shape": list(image_shape),
            "recipe": RECIPE,
            "width": EMBEDDING_WIDTH,
        }
    )
    digits = int(classes.max()) + 1
    model = build_cnn(image_shape, list(CONVOLUTIONS), [EMBEDDING_WIDTH], "all", None, 0, torch.float32, digits)
    path = cache_folder("backbones") / f"{key}.safetensors"
    if path.is_file():
        try:
            model.load_state_dict(load_weights(path, ValueError))
            return model.eval()
        except (ValueError, RuntimeError, KeyError):
            pass  # a damaged entry: trained again and replaced below
    x = torch.as_tensor(images, dtype=torch.float32)
    y = torch.as_tensor(classes, dtype=torch.float32)
    train_mlp(model, x, y, seed=SLICE_SEED, **RECIPE)
    from safetensors.torch import save_file

    ensure_writable(path.parent, "backbone cache (set AUDITKIT_CACHE to move it)")
    with atomic_path(path) as temporary:
        save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(temporary))
    return model.eval()


def embed(backbone: nn.Sequential, images: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Each flat pixel row's embedding: the backbone's last hidden layer (after its ReLU), unnormalised (as DINO-style
    features are), float64 (N, width)."""
    features = backbone[:-1]
    with torch.no_grad():
        rows = [
            features(torch.as_tensor(images[first : first + batch], dtype=torch.float32))
            for first in range(0, len(images), batch)
        ]
    return torch.cat(rows).double().numpy() if rows else np.zeros((0, EMBEDDING_WIDTH))
