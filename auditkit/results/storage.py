"""Reading a saved result back: every file checked (present, parseable, the columns and arrays a result
needs, of the right kinds), every problem one :class:`ResultError` line naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from auditkit.errors import AuditkitError
from auditkit.storage.safe_load import read_json_object, read_npz


class ResultError(AuditkitError):
    """A saved result cannot be read (missing or damaged file); the message names the file."""


# per_sample.csv columns a result needs, with the numpy kinds allowed (integer, float, bool)
FRAME_COLUMNS = {
    "sample": "iu",
    "label": "iu",
    "margin": "iuf",
    "normalized_margin": "iuf",
    "baseline_ssim": "iuf",
    "ssim": "iuf",
    "identified": "b",
}
PER_CANDIDATE = ("candidate_lambdas", "candidate_labels", "candidate_restart")
DISPLAYS = ("train_display", "control_display")  # feature data: the images behind the embeddings, per member
ARRAYS = {"candidates": "f", "train_images": "f", "nonmember_identified": "b", "mean": "f"}  # name: numpy kinds allowed


def read_frame(path: Path, candidates: int, samples: int) -> pd.DataFrame:
    """per_sample.csv, checked for the columns a result needs, a row per one of the ``samples`` training
    images, and the candidates it points to."""
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise ResultError(f"{path}: not found") from None
    except (ValueError, UnicodeDecodeError) as error:  # pandas' parser errors are ValueErrors
        raise ResultError(f"{path}: not a readable CSV ({error})") from None
    for column, kinds in FRAME_COLUMNS.items():
        if column not in frame:
            raise ResultError(f"{path}: column '{column}' is missing")
        if frame[column].dtype.kind not in kinds:
            raise ResultError(f"{path}: column '{column}' has {frame[column].dtype} values")
    if len(frame) != samples:
        raise ResultError(f"{path}: {len(frame)} rows, but reconstructions.npz holds {samples} training images")
    if "candidate" in frame and not frame["candidate"].between(0, candidates - 1).all():
        raise ResultError(f"{path}: column 'candidate' points outside the {candidates} saved candidates")
    return frame


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of reconstructions.npz, checked for the ones a result needs and for agreeing with each
    other: candidates and training images of one image shape, the mean of that size, one multiplier, label
    and restart per candidate, the training images and the mean finite."""
    arrays = read_npz(path, ResultError)
    for key, kinds in ARRAYS.items():
        if key not in arrays or arrays[key].dtype.kind not in kinds:
            raise ResultError(f"{path}: array '{key}' is missing or of the wrong type")
    candidates, images, mean = arrays["candidates"], arrays["train_images"], arrays["mean"]
    if images.ndim < 2 or candidates.shape[1:] != images.shape[1:] or mean.size != np.prod(images.shape[1:]):
        raise ResultError(
            f"{path}: candidates {candidates.shape}, train_images {images.shape} and mean {mean.shape} do not "
            "share one image shape"
        )
    for key in DISPLAYS:
        shown = arrays.get(key)
        if shown is not None and (shown.ndim not in (3, 4) or len(shown) != len(images) or shown.dtype.kind != "f"):
            raise ResultError(f"{path}: array '{key}' is not an image per training sample")
    for key in PER_CANDIDATE:
        if key in arrays and arrays[key].shape != (len(candidates),):
            raise ResultError(f"{path}: array '{key}' has shape {arrays[key].shape}, not one per candidate")
    history, steps = arrays.get("loss_history"), arrays.get("history_steps")
    if history is not None and steps is not None:
        if not (history.ndim == 2 and steps.ndim == 1 and len(history) == len(steps)):
            raise ResultError(
                f"{path}: loss_history {history.shape} is not a row per step of history_steps {steps.shape}"
            )
    if arrays["nonmember_identified"].ndim != 1:
        raise ResultError(f"{path}: array 'nonmember_identified' is not one flag per non-member")
    labels = arrays.get("nonmember_labels")
    if labels is not None and (labels.dtype.kind not in "iuf" or labels.shape != arrays["nonmember_identified"].shape):
        raise ResultError(f"{path}: array 'nonmember_labels' is not one number per non-member")
    if not (np.isfinite(images).all() and np.isfinite(mean).all() and np.isfinite(candidates).all()):
        raise ResultError(f"{path}: candidates, train_images or mean hold NaN or infinite values")
    return arrays


def read_json(path: Path) -> dict:
    """A result's JSON object (result.json or summary.json)."""
    return read_json_object(path, ResultError, f"not found; is {path.parent} the output of a finished audit?")
