"""Recording a training run for the audit: the recorder a training loop attaches, and the record the audit reads
(a Lightning callback over the same recorder: :func:`auditkit.recording.lightning.recorder_callback`)."""

from auditkit.recording.record import RecordError, TrainingRecord
from auditkit.recording.recorder import TrainingRecorder

__all__ = ["RecordError", "TrainingRecord", "TrainingRecorder"]
