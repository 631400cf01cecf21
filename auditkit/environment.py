"""Seeds, devices and versions: what a report needs to be reproducible."""

from __future__ import annotations

import platform
import random
from importlib import metadata

import numpy as np
import torch

from auditkit.errors import ConfigError

DEFAULT_DTYPE = "float32"  # victims and attack alike; float64 is the thorough setting (benchmarks/results)
DTYPE_NOTES = {
    "float32": "the CPU default; float64 identified a few more samples at a multiple of the time (measured)",
    "float64": "the thorough setting: slower than float32 on a CPU (measured)",
}


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA). Data selection, model init, the attack and Opacus
    take explicit generators derived from the same seed as well."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device) -> torch.device:
    """ "auto" is CUDA when present, else the CPU; "cuda" without a GPU is an error, not a silent fallback."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device: {device!r} is not a device; allowed: auto, cpu, cuda, cuda:N") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ConfigError(f"device: {device!r} is not supported; allowed: auto, cpu, cuda, cuda:N")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {str(device)!r} was asked for but no CUDA GPU is available; use 'auto' or 'cpu'")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device: {str(device)!r} does not exist ({torch.cuda.device_count()} GPU(s) found)")
    return resolved


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``float32``/``float64`` (a name or a torch dtype) as a torch dtype; anything else is refused."""
    if isinstance(dtype, torch.dtype):
        if str(dtype).removeprefix("torch.") not in DTYPE_NOTES:
            raise ConfigError(f"dtype: {dtype} is not supported; allowed: {', '.join(DTYPE_NOTES)}")
        return dtype
    if not isinstance(dtype, str) or dtype not in DTYPE_NOTES:
        raise ConfigError(f"dtype: {dtype!r} is not supported; allowed: {', '.join(DTYPE_NOTES)}")
    return {"float32": torch.float32, "float64": torch.float64}[dtype]


def versions() -> dict[str, str]:
    """The versions of Python and the packages a result depends on."""
    found = {"python": platform.python_version()}
    for package in ("auditkit", "torch", "numpy", "opacus", "dp-accounting", "scipy", "pandas", "mlxtend"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def describe_device(device: torch.device) -> str:
    """The device in words (its name, and the thread count on a CPU)."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
