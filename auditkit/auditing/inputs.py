"""What a pipeline hands the Auditor, as arrays in the user's own index order: a pair of tensors or arrays,
a Dataset read item by item, a DataLoader's dataset read the same way whatever its sampler."""

from __future__ import annotations

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler, SequentialSampler

from auditkit.errors import DataError


def sample_pairs(train) -> tuple:
    """(inputs, labels, note) in the user's index order: from a pair, from a Dataset item by item (index 0
    first), from a DataLoader's dataset read the same way whatever its sampler (shuffled, Poisson or
    weighted sampling would renumber, repeat or drop samples), or from any other iterable of pairs or
    batches in iteration order (the note says so)."""
    if isinstance(train, tuple | list) and len(train) == 2:
        return train[0], train[1], ""
    note = ""
    source = train
    if isinstance(train, DataLoader):
        source = train.dataset
        drawer = train.batch_sampler if train.batch_sampler is not None else train.sampler
        drawer = drawer.sampler if isinstance(drawer, BatchSampler) else drawer
        if not isinstance(drawer, SequentialSampler | RandomSampler) or getattr(drawer, "replacement", False):
            note = (
                f"the DataLoader draws with {type(drawer).__name__}, which is not one pass over its dataset: the "
                "dataset was read directly, every item once, in index order"
            )
    batched = False
    if isinstance(source, Dataset) and not isinstance(source, IterableDataset) and hasattr(source, "__len__"):
        items = (source[index] for index in range(len(source)))
    else:
        items, batched = iter(source), True
        note = "train: read in iteration order (not a Dataset with an index): sample i is the i-th item yielded"
    try:
        pairs = [(torch.as_tensor(x), torch.as_tensor(y)) for x, y in items]
    except (TypeError, ValueError) as error:
        raise DataError(f"train: expected (inputs, labels) or a Dataset/DataLoader of pairs ({error})") from None
    if not pairs:
        raise DataError("train: the Dataset/DataLoader is empty")
    join = torch.cat if batched and pairs[0][0].ndim > 1 and pairs[0][1].ndim == 1 else torch.stack
    return join([x for x, _ in pairs]), join([y for _, y in pairs]), note
