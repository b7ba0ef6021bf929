"""Where a kept artifact came from: the code's commit, recorded next to weights and results."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit(short: bool = False) -> str:
    """The commit of the checkout this package runs from, or "unknown" (an installed copy,
    no git)."""
    command = ["git", "rev-parse", *(["--short"] if short else []), "HEAD"]
    try:
        out = subprocess.run(command, capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"
