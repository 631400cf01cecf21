"""One hash of settings: what the victim cache keys entries by and what ``--resume`` compares."""

from __future__ import annotations

import hashlib
import json

from auditkit.storage.files import to_jsonable

FINGERPRINT_LENGTH = 20  # hex digits kept


def fingerprint(content: dict) -> str:
    """A short stable hash of ``content`` (JSON with sorted keys; NaN and numpy values made plain first).

    Args:
        content: the settings that determine a result.

    Returns:
        The first FINGERPRINT_LENGTH hex digits of its SHA-256.
    """
    text = json.dumps(to_jsonable(content), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_LENGTH]
