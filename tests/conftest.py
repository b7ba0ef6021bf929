"""Shared fixtures: real MuJoCo rendering and real mp4 files, kept small so the suite stays fast."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# one thread per pytest-xdist worker (the README runs one worker per core), two otherwise;
# the commands the tests start inherit it
os.environ.setdefault("OMP_NUM_THREADS", "1" if "PYTEST_XDIST_WORKER" in os.environ else "2")


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300):
    """Run ``python -m ...`` as a user would; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def assert_one_line_error(result, *needles: str) -> None:
    """Bad input: non-zero exit, one clear line on stderr, no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def assert_error_line(result, *needles: str) -> None:
    """A failure during a run: non-zero exit, exactly one 'error:' line, no traceback
    (progress output before it is fine)."""
    assert result.returncode != 0, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """Four 20-step reach episodes recorded by the real recorder (read-only for tests)."""
    from envs.collect import collect

    root = tmp_path_factory.mktemp("reach_dataset")
    collect("reach", 4, root, steps=20, workers=1, seed=100, progress=False)
    return root


@pytest.fixture(scope="session", autouse=True)
def _sb3_log_folder(tmp_path_factory):
    """stable-baselines3 makes an (empty) log folder in the system temp dir on every learn();
    point it at pytest's temp dir so that test runs leave nothing behind."""
    previous = os.environ.get("SB3_LOGDIR")
    os.environ["SB3_LOGDIR"] = str(tmp_path_factory.mktemp("sb3_logs"))
    yield
    if previous is None:
        os.environ.pop("SB3_LOGDIR", None)
    else:
        os.environ["SB3_LOGDIR"] = previous
