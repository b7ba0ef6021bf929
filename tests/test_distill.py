"""python -m jepa_world.distill: DAgger rounds, resume, and the result inside planners.mpc."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import assert_one_line_error, run_cli
from tests.test_rl import tiny_model

TINY = ["rounds=2", "episodes_per_round=2", "num_envs=2", "budget=10", "train.epochs=3",
        "+planner_settings.samples=16", "+planner_settings.elites=4",
        "+planner_settings.iterations=2", "+planner_settings.horizon=2", "progress=false"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model().save(tmp_path_factory.mktemp("wm") / "tiny")


@pytest.fixture(scope="module")
def distilled(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("distill") / "run"
    result = run_cli("-m", "jepa_world.distill", f"world_model={model_dir}", f"out_dir={out}", *TINY)
    assert result.returncode == 0, result.stderr
    return out


def test_rounds_label_as_dagger_says(distilled):
    rounds = json.loads((distilled / "state.json").read_text())["rounds"]
    assert [r["actor"] for r in rounds] == ["planner", "student"]
    # round 0: every executed step of 2 episodes x 10 steps; round 1: every 5th step (frameskip)
    assert [r["labels"] for r in rounds] == [20, 24]
    with np.load(distilled / "labels.npz") as data:
        assert data["obs"].shape[0] == 24 and data["actions"].shape == (24, 2)
        assert np.all(np.abs(data["actions"]) <= 1)
    assert (distilled / "policy" / "weights.safetensors").is_file()


def test_resume_runs_only_the_new_rounds(model_dir, distilled, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(distilled, copy)
    args = [f"world_model={model_dir}", f"out_dir={copy}", *TINY]
    more = run_cli("-m", "jepa_world.distill", *[a for a in args if a != "rounds=2"], "rounds=3")
    assert more.returncode == 0, more.stderr
    assert "resuming" in more.stderr and "round 0" not in more.stderr
    rounds = json.loads((copy / "state.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2] and rounds[-1]["labels"] == 28
    changed = run_cli("-m", "jepa_world.distill", *[a for a in args if a != "budget=10"],
                      "budget=12")
    assert_one_line_error(changed, "other settings (budget)")


def test_the_student_plugs_into_planners_mpc(distilled, tmp_path):
    report = tmp_path / "m.json"
    result = run_cli("-m", "planners.mpc", "--env", "reach", "--policy", str(distilled / "policy"),
                     "--episodes", "2", "--budget", "10", "--quiet", "--json", str(report),
                     "image_size=32")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(report.read_text())
    assert metrics["model"] == "distilled" and metrics["planner"] is None
    assert metrics["policy"] == str(distilled / "policy")
    assert metrics["timing"]["replans"] == 2 * 10  # one policy call per env step
    assert len(metrics["records"][0]["plan_ms"]) == 10


def test_the_student_reads_dict_and_flat_observations_alike(distilled):
    import gymnasium as gym

    from jepa_world.rl import GoalImageObservation, LatentObservation
    from jepa_world.rl.student import StudentPolicy

    student = StudentPolicy.load(distilled / "policy")
    flat_env = LatentObservation(gym.make("jepa_world/Reach-v0", image_size=32),
                                 student.world_model)
    dict_env = GoalImageObservation(gym.make("jepa_world/Reach-v0", image_size=32))
    a, _ = student.predict(flat_env.reset(seed=4)[0])
    b, _ = student.predict(dict_env.reset(seed=4)[0], episode_start=True)
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("override, needle", [
    ("label_every=0", "label_every must be a positive integer"),
    ("train.lr=nan", "train.lr must be positive and finite"),
    ("+planner_settings.samples=2", "bad planner settings"),
    ("planner=beam", "bad planner settings: unknown planner 'beam'"),
    ("env=nowhere", "nowhere"),
])
def test_bad_settings_are_one_line(model_dir, tmp_path, override, needle):
    result = run_cli("-m", "jepa_world.distill", f"world_model={model_dir}",
                     f"out_dir={tmp_path / 'x'}", override)
    assert_one_line_error(result, needle)
    assert not (tmp_path / "x").exists()


def test_policy_flag_needs_a_distilled_policy(tmp_path):
    result = run_cli("-m", "planners.mpc", "--env", "reach", "--policy", str(tmp_path))
    assert_one_line_error(result, "cannot load distilled policy", "missing config.json")
    result = run_cli("-m", "planners.mpc", "--env", "reach", "--model", "distilled")
    assert_one_line_error(result, "--policy DIR")
