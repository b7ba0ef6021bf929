"""Print a benchmark table and append it, with the machine and the command, to RESULTS.md."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

from jepa_world import provenance

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [cpu, f"{os.cpu_count()} cores", f"Python {platform.python_version()}"]
    try:
        import torch

        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
        if torch.cuda.is_available():
            parts.append(torch.cuda.get_device_name(0))
    except ImportError:
        pass
    return ", ".join(parts)


def git_commit() -> str:
    return provenance.git_commit(short=True)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def report(title: str, headers: list[str], rows: list[list], notes: str = "",
           record: bool = True) -> str:
    """Print the table; append a dated section to RESULTS.md unless ``record`` is False."""
    table = markdown_table(headers, rows)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"\n## {title}\n\n- date: {stamp}, commit {git_commit()}\n- machine: {machine()}\n"
        f"- command: `{command}`\n\n{table}\n"
    )
    if notes:
        section += f"\n{notes}\n"
    print(section)
    if record:
        if not RESULTS.exists():
            RESULTS.write_text("# Benchmark results\n\nAppended by the scripts in benchmarks/.\n")
        with RESULTS.open("a") as handle:
            handle.write(section)
    return section
