"""python -m auditkit: the command line (see auditkit.cli)."""

from auditkit.cli import entry

entry()
