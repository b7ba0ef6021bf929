"""The examples run end to end with a tiny budget (their defaults take minutes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("algo", ["sac", "ppo"])
def test_rl_on_latents_example(algo):
    pytest.importorskip("stable_baselines3")
    result = run_cli(str(ROOT / "examples" / "rl_on_latents.py"), "--algo", algo,
                     "--timesteps", "64", "--episodes", "1", "--budget", "10", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert f"{algo} on latents of reach, 64 env steps" in result.stdout
    assert "held-out episodes" in result.stdout


def test_distill_planner_example(tmp_path):
    result = run_cli(str(ROOT / "examples" / "distill_planner.py"), "--rounds", "2",
                     "--episodes-per-round", "2", "--budget", "10", "--eval-episodes", "1",
                     "--samples", "16", "--out", str(tmp_path / "d"), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "distilled in 2 rounds (" in result.stdout and "held-out episodes" in result.stdout
    assert (tmp_path / "d" / "policy" / "config.json").is_file()


def test_swm_solver_example(tmp_path):
    pytest.importorskip("stable_worldmodel", reason='needs pip install "jepa-world[swm]"')
    from tests.test_rl import tiny_model

    tiny_model(proprio_dim=4, env_id="jepa_world/SwmPushT-v1").save(tmp_path / "model")
    result = run_cli(str(ROOT / "examples" / "swm_solver.py"), "--model", str(tmp_path / "model"),
                     "--episodes", "2", "--budget", "10", "--samples", "8", "--iterations", "2",
                     cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "their CEMSolver (8 x 2)" in result.stdout and "of 2 episodes" in result.stdout
