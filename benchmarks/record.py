"""Benchmark records: one markdown row per record as it runs, then results/NAME.{json,md} with the command."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def command_line() -> str:
    """How this benchmark was started: ``python benchmarks/SCRIPT.py ARGS`` (what a result file names first)."""
    return " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *map(shlex.quote, sys.argv[1:])])


def cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def header(columns: list[str]) -> str:
    return "| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|"


def row(record: dict, columns: list[str]) -> str:
    return "| " + " | ".join(cell(record.get(c)) for c in columns) + " |"


def write(name: str, command: str, records: list[dict], columns: list[str], note: str = "") -> None:
    """results/NAME.json (every field) and results/NAME.md (the command, a note, the table)."""
    (RESULTS / f"{name}.json").write_text(json.dumps(records, indent=2) + "\n")
    table = "\n".join([header(columns), *(row(r, columns) for r in records)])
    (RESULTS / f"{name}.md").write_text(f"`{command}`" + (f" {note}" if note else "") + f"\n\n{table}\n")
