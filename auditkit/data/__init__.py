"""Data: the audit's data contract, the registered data sets and the tasks drawn from them, a user's arrays, and
feature data (embeddings of a frozen backbone)."""

from auditkit.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    globals(),
    {
        "auditkit.data.audit_data": ("AuditData",),
        "auditkit.data.datasets": ("load_data", "register_dataset", "toy_colors"),
        "auditkit.data.features": ("feature_data",),
        "auditkit.data.mnist": ("load_mnist_images",),
        "auditkit.data.tasks": ("binary_task", "multiclass_task"),
        "auditkit.data.user_data": ("audit_data",),
        "auditkit.data.files": ("load_audit_data",),
    },
)
