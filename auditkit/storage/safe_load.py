"""Reading files that may come from anyone without running their code: JSON objects, .npz archives with
no pickled objects, and weights (safetensors, or ``torch.load(weights_only=True)``).

Each reader raises the caller's error type (``error``) with one line naming the file and what is wrong.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

MAX_ARRAY_BYTES = 4 * 2**30  # the largest array (and archive) read from an .npz: 4 GiB

# what reading a damaged weights file raises: truncated or foreign files, refused pickles, bad archives
_UNREADABLE_WEIGHTS = (
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    zipfile.BadZipFile,
    ValueError,
    OSError,
    KeyError,
    IndexError,  # the weights-only unpickler's reading of a truncated or foreign stream
    TypeError,
    AttributeError,
    struct.error,
)


def read_json_object(path: Path, error: type[Exception], missing: str = "not found") -> dict:
    """The JSON object in ``path``; ``missing``: what to say when the file is absent.

    Args:
        path: the file.
        error: the exception type raised, with a one-line message naming ``path``.
        missing: the message's words for a missing file (e.g. a hint at what the folder should be).

    Returns:
        The parsed mapping.
    """
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except OSError:  # a folder, a link loop, a name too long, unreadable
        raise error(f"{path}: {not_a_file(path)}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as problem:
        raise error(f"{path}: not valid JSON ({problem})") from None
    if not isinstance(values, dict):
        raise error(f"{path}: expected a JSON object, got {type(values).__name__}")
    return values


# a dataclass field's annotation -> the JSON values it takes (float: null is NaN written out)
JSON_TYPES = {"int": (int,), "float": (int, float, type(None)), "str": (str,), "bool": (bool,)}


def from_json_fields(cls, values: dict):
    """The dataclass ``cls`` from a JSON object read back: keys it does not have ignored (derived values
    written for readers), each field annotated int, float, str or bool checked to hold such a value, so a
    damaged file fails here (a TypeError naming the field), not later where the value is used."""
    chosen = {}
    for item in dataclasses.fields(cls):
        if item.name not in values:
            continue
        value, allowed = values[item.name], JSON_TYPES.get(str(item.type), (object,))
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise TypeError(f"{item.name}: expected {item.type}, got {type(value).__name__} {value!r:.40}")
        chosen[item.name] = value
    return cls(**chosen)


def read_npz(
    path: Path, error: type[Exception], what: str = "NPZ archive", max_bytes: int = MAX_ARRAY_BYTES
) -> dict[str, np.ndarray]:
    """Every array of an .npz archive, read with ``allow_pickle=False`` (an object array is refused), each
    array's size read from its header and checked against ``max_bytes`` and the archive before it is loaded.

    Args:
        path: the archive.
        error: the exception type raised, with a one-line message naming ``path``.
        what: how the message names the expected format.
        max_bytes: the largest array (and the largest sum of arrays) read.

    Returns:
        Array name -> array.
    """
    if path.is_file() and not zipfile.is_zipfile(path):
        raise error(f"{path}: not a readable {what}: not a zip of .npy arrays (what numpy.savez writes)")
    try:
        with np.load(path, allow_pickle=False) as stored:
            sizes = {key: _npy_bytes(stored.zip, key) for key in stored.files}
            too_large = next((key for key, (size, held) in sizes.items() if size > min(held, max_bytes)), None)
            if too_large is None and sum(size for size, _ in sizes.values()) <= max_bytes:
                return {key: stored[key] for key in stored.files}
    except FileNotFoundError:
        raise error(f"{path}: not found") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as problem:
        raise error(f"{path}: not a readable {what} ({problem})") from None
    declared = sizes[too_large][0] if too_large else sum(size for size, _ in sizes.values())
    raise error(
        f"{path}: {too_large or 'the arrays'} declare {declared:,} bytes (more than held, or over {max_bytes:,})"
    )


def npz_shapes(path: Path, error: type[Exception], what: str = "NPZ archive") -> dict[str, tuple[int, ...]]:
    """Every array's shape as the archive's headers declare it, read without loading (or inflating) any array:
    what a budget is checked against before a file is read.

    Args:
        path: the archive.
        error: the exception type raised, with a one-line message naming ``path``.
        what: how the message names the expected format.

    Returns:
        Array name -> declared shape.
    """
    if not path.is_file() or not zipfile.is_zipfile(path):
        return {}  # read_npz names the problem
    try:
        with zipfile.ZipFile(path) as archive:
            return {name.removesuffix(".npy"): _npy_header(archive, name)[0] for name in archive.namelist()}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as problem:
        raise error(f"{path}: not a readable {what} ({problem})") from None


def _npy_header(archive: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """An archived array's declared shape and dtype, from its header alone."""
    with archive.open(archive.getinfo(name)) as handle:
        version = np.lib.format.read_magic(handle)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = header(handle)
    return tuple(int(side) for side in shape), dtype


def _npy_bytes(archive: zipfile.ZipFile, key: str) -> tuple[int, int]:
    """An archived array's size as its header declares it, and the uncompressed bytes the archive holds for it."""
    shape, dtype = _npy_header(archive, f"{key}.npy")
    return int(np.prod(shape, dtype=np.float64)) * dtype.itemsize, archive.getinfo(f"{key}.npy").file_size


def load_weights(path: Path, error: type[Exception]) -> dict[str, torch.Tensor]:
    """A state_dict from a ``.safetensors`` file (the format made for weights from untrusted sources), or
    ``torch.load(path, weights_only=True)``: a pickle with code or objects in it is refused, never run.

    Args:
        path: the weights file (safetensors recognised by its suffix or its header).
        error: the exception type raised, with a one-line message naming ``path``.

    Returns:
        Parameter name -> tensor, on the CPU.
    """
    if not path.is_file():
        raise error(f"{path}: {not_a_file(path)}")
    if _is_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as problem:
            raise error(f"{path}: not a readable safetensors file ({first_line(problem)})") from None
        # the format keeps no order (names come back sorted as strings: body.10 before body.2): numbered
        # names in their numbers' order, which is how torch names the layers of Sequential and ModuleList
        return {name: tensors[name] for name in sorted(tensors, key=natural_order)}
    with path.open("rb") as handle:
        head = handle.read(2)
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":  # neither torch.save's zip nor its legacy pickle
        raise error(
            f"{path}: not a weights file (neither what torch.save writes nor safetensors): save the weights with "
            "torch.save(model.state_dict(), 'model.pt') or safetensors"
        )
    try:
        with warnings.catch_warnings():  # torch warns about a foreign pickle protocol before refusing it
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except _UNREADABLE_WEIGHTS as problem:
        pickled = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(problem))
        if pickled:
            raise error(
                f"{path}: holds a pickled {pickled.group(1)} object, not a state_dict; auditkit never unpickles "
                "objects (loading one can run code): save the weights with torch.save(model.state_dict(), "
                "'model.pt') or safetensors.torch.save_file(model.state_dict(), 'model.safetensors') and audit "
                "that file"
            ) from None
        raise error(f"{path}: not a weights-only state_dict ({first_line(problem)})") from None


def natural_order(name: str) -> tuple:
    """A sort key that compares the digit runs of ``name`` as numbers: ``body.2`` before ``body.10``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part)


def _is_safetensors(path: Path) -> bool:
    """By name, or by content: an 8-byte little-endian header length, then the JSON header's '{'."""
    if path.suffix == ".safetensors":
        return True
    with path.open("rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < path.stat().st_size


def not_a_file(path: Path) -> str:
    """Why ``path`` cannot be read as a file: absent, a link that leads nowhere, a name the file system refuses,
    or something else (a folder, a device, a pipe)."""
    try:
        path.stat()
    except FileNotFoundError:
        return "a symbolic link to nothing" if path.is_symlink() else "file not found"
    except OSError as problem:  # a link loop, a name too long, a component that is not a folder
        return f"cannot be read ({problem.strerror or problem})"
    return "a folder, not a file" if path.is_dir() else "not a regular file (a folder, device or pipe)"


def first_line(error: Exception) -> str:
    """An exception's first line (at most 200 characters), or its type's name when it has no text."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
