"""The training recorder as a Lightning callback: a ``Trainer.fit`` recorded with no change to the module."""

from __future__ import annotations

from pathlib import Path

from auditkit.errors import ConfigError
from auditkit.recording.recorder import TrainingRecorder


def recorder_callback(folder: str | Path, *, every: int = 500, **settings):
    """A ``lightning.pytorch.Callback`` that attaches a :class:`TrainingRecorder` to the LightningModule and its
    first optimiser when training starts and closes it when training ends (its ``record`` then holds the
    checked :class:`auditkit.recording.TrainingRecord`). Needs Lightning (``pip install 'auditkit[lightning]'``).

    Args:
        folder, every, settings: as :class:`TrainingRecorder` takes them (``batch_size``, ``privacy_engine``,
            ``delta``).

    Example:
        >>> trainer = lightning.Trainer(callbacks=[recorder_callback("record")])  # doctest: +SKIP
        >>> trainer.fit(module, loader)  # doctest: +SKIP
        >>> Auditor(build_attack({"name": "span"})).audit(module, train=(x, y), record="record")  # doctest: +SKIP
    """
    try:
        from lightning.pytorch import Callback
    except ImportError:
        raise ConfigError("recorder_callback needs Lightning: pip install 'auditkit[lightning]'") from None

    class RecorderCallback(Callback):
        """Records the fit it is given to (see :func:`recorder_callback`)."""

        def __init__(self) -> None:
            self.recorder, self.record = None, None

        def on_train_start(self, trainer, pl_module) -> None:
            optimizer = trainer.optimizers[0]
            self.recorder = TrainingRecorder(pl_module, optimizer, folder, every=every, **settings)

        def on_train_end(self, trainer, pl_module) -> None:
            self.record = self.recorder.close()

    return RecorderCallback()
