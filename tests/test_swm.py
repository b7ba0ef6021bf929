"""stable-worldmodel's environments as jepa-world tasks, and a jepa-world world model inside
its solvers: their success checks and recording policy, our cost under their CEMSolver, and
the one-line error without the extra. (The generic task checks run on these tasks too, in
tests/test_tasks.py.)"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import envs
from tests.conftest import assert_one_line_error, run_cli

needs_swm = pytest.mark.skipif(importlib.util.find_spec("stable_worldmodel") is None,
                               reason='needs the optional extra: pip install "jepa-world[swm]"')
SWM_TASKS = ["swm:PushT-v1", "swm:ReacherDMControl-v0"]
REPO = Path(__file__).resolve().parents[1]


def test_without_the_extra_the_tasks_say_how_to_install_it(tmp_path):
    """One line naming the extra, from the Python API and from a command."""
    saved = sys.modules.get("stable_worldmodel")
    sys.modules["stable_worldmodel"] = None  # what an absent package looks like to import
    try:
        with pytest.raises(envs.MissingExtraError, match=r'pip install "jepa-world\[swm\]"'):
            envs.make_task("swm:PushT-v1")
    finally:
        if saved is None:
            del sys.modules["stable_worldmodel"]
        else:
            sys.modules["stable_worldmodel"] = saved
    # run before anything else, as if the package were absent (find_spec sees None)
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nsys.modules['stable_worldmodel'] = None\n")
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    for command in (["planners.mpc", "--model", "random", "--episodes", "1"],
                    ["envs.collect", "--episodes", "1", "--out", str(tmp_path / "data")]):
        result = run_cli("-m", command[0], "--env", "swm:PushT-v1", *command[1:], env=environ)
        assert_one_line_error(result, 'pip install "jepa-world[swm]"')


@needs_swm
def test_push_t_success_is_their_eval_state():
    task = envs.make_task("swm:PushT-v1")
    _, info = task.reset(seed=0, options={"goal_protocol": "uniform"})
    goal = info["goal_qpos"]
    near = goal + np.array([0.0, 0.0, 13.0, 0.0, 0.0])  # block 13 units off: inside 20
    _, info = task.reset(seed=0, options={"start_qpos": near, "goal_qpos": goal})
    assert info["is_success"] and info["position_error"] == pytest.approx(13.0, abs=0.5)
    far = goal + np.array([15.0, 0.0, 15.0, 0.0, 0.0])  # 21 units in 4-D: outside
    _, info = task.reset(seed=0, options={"start_qpos": far, "goal_qpos": goal})
    assert not info["is_success"]
    turned = goal + np.array([0.0, 0.0, 0.0, 0.0, np.pi / 9 + 0.05])
    _, info = task.reset(seed=0, options={"start_qpos": turned, "goal_qpos": goal})
    assert not info["is_success"] and info["angle_error"] == pytest.approx(np.pi / 9 + 0.05, abs=0.02)
    wrapped = goal.copy()
    wrapped[4] = goal[4] - 2 * np.pi  # the same pose, another turn: success, as theirs says
    _, info = task.reset(seed=0, options={"start_qpos": goal, "goal_qpos": wrapped})
    assert info["is_success"]
    assert 0.0 <= task.goal_qpos[4] < 2 * np.pi
    task.close()


@needs_swm
def test_reacher_success_is_their_qpos_match_without_wrapping():
    task = envs.make_task("swm:ReacherDMControl-v0")
    goal = np.array([0.5, -0.4])
    _, info = task.reset(seed=0, options={"start_qpos": goal + [0.049, -0.049], "goal_qpos": goal})
    assert info["is_success"] and info["joint_error"] == pytest.approx(0.049)
    _, info = task.reset(seed=0, options={"start_qpos": goal + [0.0, 0.051], "goal_qpos": goal})
    assert not info["is_success"]
    # a full turn of the shoulder is another pose for their check (no wrapping)
    _, info = task.reset(seed=0, options={"start_qpos": goal + [2 * np.pi, 0.0], "goal_qpos": goal})
    assert not info["is_success"]
    # the hidden target sphere: moving it does not change the image
    image = task.render()
    physics = task.inner.env.physics
    physics.named.model.geom_pos["target", :2] = [0.1, -0.1]
    physics.forward()
    np.testing.assert_array_equal(task.render(), image)
    task.close()


@needs_swm
def test_reacher_runs_past_dm_controls_time_limit_and_success_without_resetting():
    """dm_control's own step would reset the arm at its time limit (500 env steps) or after
    a success; the adapter steps the physics itself, so an episode continues."""
    task = envs.make_task("swm:ReacherDMControl-v0")
    _, info = task.reset(seed=0, options={"start_qpos": [0.3, 0.2], "goal_qpos": [0.3, 0.2]})
    assert info["is_success"]
    for _ in range(520):
        _, _, _, _, info = task.step(np.zeros(2, np.float32))
    assert np.abs(info["qpos"] - [0.3, 0.2]).max() < 0.05  # at rest where it was, not reset
    task.close()


@needs_swm
def test_push_t_records_with_their_weak_policy(tmp_path):
    from jepa_world.data.episodes import EpisodeDataset

    out = tmp_path / "data"
    for _ in range(2):  # reproducible under the seed
        result = run_cli("-m", "envs.collect", "--env", "swm:PushT-v1", "--policy", "weak",
                         "--episodes", "2", "--steps", "20", "--out", str(out / f"{_}"),
                         "--quiet")
        assert result.returncode == 0, result.stderr[-2000:]
    first, second = EpisodeDataset(out / "0"), EpisodeDataset(out / "1")
    assert len(first) == 2
    episode = first.arrays(0)
    np.testing.assert_array_equal(episode["actions"], second.arrays(0)["actions"])
    assert first.frames(0).shape == (21, 64, 64, 3) and episode["proprio"].shape == (21, 4)
    assert episode["block"].shape == (21, 3)
    # their policy keeps the agent within 100 units of the block: it ends up touching it
    agent, block = episode["qpos"][:, :2], episode["qpos"][:, 2:4]
    assert np.linalg.norm(agent - block, axis=-1)[-5:].min() < 100


@needs_swm
@pytest.mark.parametrize("name", SWM_TASKS)
def test_their_cem_solver_plans_with_our_world_model(name):
    """Their CEMSolver and WorldModelPolicy drive our WorldModel through SwmCost on the task's
    own observations: finite costs of the right shape, actions in the box."""
    from stable_worldmodel.policy import PlanConfig, WorldModelPolicy
    from stable_worldmodel.solver import CEMSolver

    from jepa_world.swm import SwmCost
    from tests.test_rl import tiny_model

    task = envs.make_task(name)
    obs, info = task.reset(seed=0)
    model = tiny_model(proprio_dim=obs["proprio"].shape[0])
    cost = SwmCost(model, name)
    their_info = _their_info(task, obs, info)
    candidates = torch.rand(1, 6, 3, 5 * 2) * 2 - 1
    expanded = {k: v.unsqueeze(1).expand(1, 6, *v.shape[1:]) for k, v in their_info.items()}
    costs = cost.get_cost(expanded, candidates)
    assert costs.shape == (1, 6) and torch.isfinite(costs).all()
    assert costs.std() > 0  # the candidates' actions matter
    # the proprio their info gives is the task's own
    start = {k: v[:, -1].numpy() for k, v in their_info.items()}
    np.testing.assert_allclose(np.asarray(task.proprio_from_info(start))[0], obs["proprio"],
                               rtol=1e-5, atol=1e-6)

    solver = CEMSolver(cost, num_samples=12, n_steps=2, topk=3, seed=0)
    policy = WorldModelPolicy(solver, PlanConfig(horizon=3, receding_horizon=1, action_block=5))
    policy.set_env(_OneEnvPool(task))
    action = policy.get_action({k: v.numpy() for k, v in their_info.items()})
    assert action.shape == (1, 2) and np.all(np.isfinite(action))
    with pytest.raises(ValueError, match="action_block=5"):
        cost.get_cost(expanded, torch.zeros(1, 6, 3, 3 * 2))
    task.close()


def _their_info(task, obs, info) -> dict[str, torch.Tensor]:
    """What their World hands a policy for one env: info keys [1, history=1, ...]."""
    keys = {"pixels": obs["pixels"], "goal": info["goal_pixels"]}
    if task.spec.id.endswith("SwmPushT-v1"):
        keys["proprio"] = obs["proprio"] / np.float32(1 / 512)  # their units
    else:
        keys["qpos"], keys["qvel"] = info["qpos"], info["qvel"]
    return {k: torch.as_tensor(np.asarray(v))[None, None] for k, v in keys.items()}


class _OneEnvPool:
    """The shape of their env pool that WorldModelPolicy reads (one env)."""

    def __init__(self, task) -> None:
        import gymnasium as gym

        space = task.action_space
        self.num_envs = 1
        self.single_action_space = space
        self.action_space = gym.spaces.Box(space.low[None], space.high[None], dtype=space.dtype)


@needs_swm
@pytest.mark.parametrize("name", SWM_TASKS)
def test_their_world_shows_the_frames_the_task_records(name):
    """A model trained on the adapter's recordings meets the same pixels in their harness."""
    from envs.swm_tasks import SwmPushT, SwmReacher
    from planners.swm_eval import their_world

    task_class = SwmPushT if name == "swm:PushT-v1" else SwmReacher
    world = their_world(task_class, num_envs=1, image_size=64, max_episode_steps=5)
    world.reset(seed=11)
    their_pixels = np.asarray(world.infos["pixels"])[0, -1]
    task = envs.make_task(name)
    task.reset(seed=0)
    if task_class is SwmPushT:
        state = np.asarray(world.infos["state"])[0, -1]
        task.set_state(state[:5], state[5:])
    else:
        task.set_state(np.asarray(world.infos["qpos"])[0, -1], np.asarray(world.infos["qvel"])[0, -1])
    np.testing.assert_array_equal(task.render(), their_pixels)
    world.close()
    task.close()


@needs_swm
def test_both_protocols_in_one_command(tmp_path):
    """Their World.evaluate with their CEMSolver on our model, and our runner from the same
    held-out starts (recorded by their World.collect), in one command and one JSON."""
    import json

    from tests.test_rl import tiny_model

    model_dir = tmp_path / "model"
    tiny_model(proprio_dim=4, env_id="jepa_world/SwmPushT-v1").save(model_dir)
    dataset, out = tmp_path / "held-out", tmp_path / "results.json"
    command = ["-m", "planners.swm_eval", "--env", "swm:PushT-v1", "--checkpoint",
               str(model_dir), "--dataset", str(dataset), "--episodes", "2",
               "--record-episodes", "2", "--cem-samples", "8", "--cem-iterations", "2",
               "--cem-topk", "2", "--json", str(out), "--quiet"]
    result = run_cli(*command, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["goal_offset"] == 25 and results["budget"] == 50
    theirs, ours, random = results["theirs"], results["ours"], results["random"]
    assert len(theirs["episode_successes"]) == 2 and theirs["solver"]["action_block"] == 5
    assert ours["episodes"] == 2 and ours["budget"] == 50 and 0 <= ours["success_rate"] <= 1
    assert random["planner"] is None
    assert "theirs (their World.evaluate" in result.stdout and "CEM solve time" not in result.stdout
    assert (dataset / "ep_len.npz").is_file()  # recorded once, reused by the next run
    result = run_cli(*command, "--protocols", "ours", timeout=600)
    assert result.returncode == 0 and "recorded" not in result.stderr
    # the starts come from the dataset: the same pairs under the same seed
    again = json.loads(out.read_text())["ours"]
    assert [r["final_position_error"] for r in again["records"]] == \
        [r["final_position_error"] for r in ours["records"]]
    # planners.mpc's settings reach our protocol's planner
    assert ours["config"]["cem"]["samples"] != 40
    result = run_cli(*command, "--protocols", "ours", "cem.samples=40", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(out.read_text())["ours"]["config"]["cem"]["samples"] == 40


@needs_swm
@pytest.mark.parametrize(("extra", "needle"), [
    (["--protocols", "mine"], "unknown protocols ['mine']"),
    (["--cem-topk", "50", "--cem-samples", "10"], "--cem-topk <= --cem-samples"),
    (["--episodes", "0"], "must be positive"),
    (["cem.sample=3"], "cem.sample"),
    (["budget=10"], "budget is fixed by the protocol"),
    (["--frobnicate"], "unrecognised argument '--frobnicate'"),
])
def test_swm_eval_bad_input_is_one_line(tmp_path, extra, needle):
    result = run_cli("-m", "planners.swm_eval", "--env", "swm:PushT-v1", "--checkpoint",
                     str(tmp_path / "none"), "--dataset", str(tmp_path / "d"), *extra)
    assert_one_line_error(result, needle)


@needs_swm
def test_reacher_oracle_row_plans_on_the_true_simulator(tmp_path):
    """The upper row: our CEM on dm_control's MuJoCo model, scored by their joint errors."""
    import json

    from tests.test_rl import tiny_model

    model_dir = tmp_path / "model"
    tiny_model(proprio_dim=6, env_id="jepa_world/SwmReacherDMControl-v0").save(model_dir)
    out = tmp_path / "r.json"
    result = run_cli("-m", "planners.swm_eval", "--env", "swm:ReacherDMControl-v0",
                     "--checkpoint", str(model_dir), "--dataset", str(tmp_path / "held-out"),
                     "--episodes", "2", "--record-episodes", "2", "--protocols", "oracle",
                     "--json", str(out), "--quiet", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    oracle = json.loads(out.read_text())["oracle"]
    assert oracle["success_rate"] == 1.0  # the simulator itself reaches goals 25 steps away
    result = run_cli("-m", "planners.swm_eval", "--env", "swm:PushT-v1", "--checkpoint",
                     str(model_dir), "--dataset", str(tmp_path / "d"), "--protocols", "oracle")
    assert_one_line_error(result, "swm:PushT-v1 has no simulator oracle")


def test_swm_eval_refuses_tasks_that_are_not_theirs(tmp_path):
    result = run_cli("-m", "planners.swm_eval", "--env", "push", "--checkpoint",
                     str(tmp_path / "none"), "--dataset", str(tmp_path / "d"))
    assert_one_line_error(result, "push is not a stable-worldmodel task")


@needs_swm
def test_swm_eval_refuses_a_frameskip_their_protocol_cannot_plan_before_recording(tmp_path):
    from tests.test_world_model import tiny_model as frameskip_3_model

    frameskip_3_model(proprio_dim=4).save(tmp_path / "model")
    result = run_cli("-m", "planners.swm_eval", "--env", "swm:PushT-v1", "--checkpoint",
                     str(tmp_path / "model"), "--dataset", str(tmp_path / "held-out"))
    assert_one_line_error(result, "blocks of 5 actions", "frameskip is 3")
    assert not (tmp_path / "held-out").exists()
