"""The .npz data file ``auditkit audit`` reads: its keys for image data and for feature data, read without
unpickling and checked as arrays given in Python are."""

from __future__ import annotations

import re
from pathlib import Path

from auditkit.data.audit_data import AuditData
from auditkit.data.features import feature_data
from auditkit.data.user_data import audit_data
from auditkit.errors import DataError
from auditkit.storage.safe_load import not_a_file, read_npz

FILE_KEYS = ("train_x", "train_y", "nonmember_x", "test_x", "test_y", "mean", "std", "image_shape")
FEATURE_KEYS = ("train_images", "nonmember_images")  # feature data only: the images behind the embeddings


def load_audit_data(path: str | Path, outputs: int = 1, inputs: int | None = None, features: bool = False) -> AuditData:
    """An .npz (``allow_pickle=False``) with ``train_x`` (the model's inputs), ``train_y`` and optionally
    ``nonmember_x``, ``test_x`` with ``test_y`` (held-out labelled data: the test accuracy), ``mean`` and
    ``std`` (the normalisation of [0, 1] pixels that made ``train_x``: checked) and ``image_shape``, for a model with
    ``outputs`` outputs and ``inputs`` inputs. Feature data (``features``, or a file with ``train_images`` or
    ``nonmember_images``): ``train_x`` and ``nonmember_x`` are embeddings, the images behind them optional
    (:func:`auditkit.data.features.feature_data`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {not_a_file(path)}")
    arrays = read_npz(path, DataError, ".npz without pickled objects")
    missing = [key for key in ("train_x", "train_y") if key not in arrays]
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)} (found: {', '.join(arrays) or 'none'})")
    features = features or any(key in arrays for key in FEATURE_KEYS)
    unknown = set(arrays) - {*FILE_KEYS, *FEATURE_KEYS}
    if unknown:
        raise DataError(f"{path}: unknown array(s) {', '.join(sorted(unknown))}")
    elsewhere = set(arrays) & ({"mean", "std", "image_shape"} if features else set(FEATURE_KEYS))
    if elsewhere:
        kind = "feature data (embeddings as given)" if features else "image data"
        raise DataError(f"{path}: array(s) {', '.join(sorted(elsewhere))} are not read for {kind}")
    if ("test_x" in arrays) != ("test_y" in arrays):
        given, lacking = ("test_x", "test_y") if "test_x" in arrays else ("test_y", "test_x")
        raise DataError(f"{path}: {given} without {lacking} (the held-out data needs both)")
    common = {
        "nonmembers": arrays.get("nonmember_x"),
        "test": (arrays["test_x"], arrays["test_y"]) if "test_x" in arrays else None,
        "name": re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem),
        "outputs": outputs,
        "inputs": inputs,
    }
    if features:
        images = {key: arrays.get(key) for key in FEATURE_KEYS}
        return feature_data(arrays["train_x"], arrays["train_y"], **common, **images)
    return audit_data(
        arrays["train_x"],
        arrays["train_y"],
        mean=arrays.get("mean"),
        std=arrays.get("std"),
        image_shape=arrays.get("image_shape"),
        **common,
    )
