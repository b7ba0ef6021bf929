"""Push-T (envs/push.py): the T is seen, never sensed; actions are velocity commands; success
follows Push-T's tolerances with the angle wrapped; offset goals always need a push; the push
recording policy makes contact."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from envs.collect import collect
from envs.push import (
    ANGLE_TOLERANCE,
    BLOCK_RANGE,
    MIN_SHIFT,
    MIN_TURN,
    POSITION_TOLERANCE,
    PUSHER_RADIUS,
    distance_to_t,
    is_success,
    pose_errors,
)
from jepa_world.data.episodes import EpisodeDataset


@pytest.fixture
def push():
    task = envs.make_task("push")
    yield task
    task.close()


def test_registered_under_its_gymnasium_id():
    assert envs.resolve_env_id("push") == "jepa_world/Push-v0"
    env = envs.make("jepa_world/Push-v0", image_size=96)
    obs, _ = env.reset(seed=0)
    assert obs["pixels"].shape == (96, 96, 3) and obs["proprio"].shape == (4,)
    assert env.action_space.shape == (2,) and float(env.action_space.high[0]) == 1.0
    env.close()


def test_success_tolerances_at_their_edges_with_the_angle_wrapped():
    goal = np.array([0.0, 0.0, np.pi - 0.05])
    assert POSITION_TOLERANCE == pytest.approx(0.12 / 6) and ANGLE_TOLERANCE == pytest.approx(np.pi / 9)
    inside = np.array([POSITION_TOLERANCE * 0.999, 0.0, -np.pi + 0.05])  # 0.1 rad across +-pi
    position, angle = pose_errors(inside, goal)
    assert angle == pytest.approx(0.1) and is_success(position, angle)
    outside = np.array([POSITION_TOLERANCE * 1.001, 0.0, goal[2]])
    assert not is_success(*pose_errors(outside, goal))
    turned = np.array([0.0, 0.0, goal[2] + ANGLE_TOLERANCE * 1.001])
    assert not is_success(*pose_errors(turned, goal))
    full_turn = np.array([0.0, 0.0, goal[2] + 2 * np.pi])  # the T has no symmetry but 2 pi
    assert is_success(*pose_errors(full_turn, goal))
    half_turn = np.array([0.0, 0.0, goal[2] + np.pi])
    assert pose_errors(half_turn, goal)[1] == pytest.approx(np.pi)


def test_info_reports_the_blocks_errors_and_success(push):
    _, info = push.reset(seed=0)
    push.set_state(info["goal_qpos"])
    info = push.step(np.zeros(2))[4]
    assert info["is_success"] and info["block_position_error"] < 1e-3
    assert info["block_angle_error"] < 1e-3 and info["pusher_distance"] < 1e-3
    assert push.reward(info) == pytest.approx(0.0, abs=0.1)


def test_offset_goals_always_need_a_push(push):
    for seed in range(20):
        _, info = push.reset(seed=seed)
        shift, turn = pose_errors(info["qpos"][:3], info["goal_qpos"][:3])
        assert shift >= MIN_SHIFT or turn >= MIN_TURN
        assert not info["is_success"]


def test_uniform_goals_put_the_block_anywhere_clear_of_the_pusher(push):
    angles = []
    for seed in range(30):
        _, info = push.reset(seed=seed, options={"goal_protocol": "uniform"})
        for qpos in (info["qpos"], info["goal_qpos"]):
            assert np.all(np.abs(qpos[:2]) <= BLOCK_RANGE)
            assert distance_to_t(qpos[3:5], qpos[:3]) > PUSHER_RADIUS
        angles.append(info["goal_qpos"][2])
    assert np.ptp(angles) > 5.0  # any angle, not a narrow band


def test_the_block_is_seen_but_not_sensed(push):
    obs, info = push.reset(seed=4)
    moved = info["qpos"].copy()
    moved[2] += 0.5  # turn the T only
    push.set_state(moved)
    obs_moved = push._observation()
    np.testing.assert_array_equal(obs_moved["proprio"], obs["proprio"])
    assert np.abs(obs_moved["pixels"].astype(int) - obs["pixels"]).sum() > 1000


def test_actions_are_velocity_commands_and_the_block_moves_only_by_contact(push):
    _, info = push.reset(seed=0)
    qpos = info["qpos"].copy()
    qpos[:3] = [0.08, 0.08, 0.0]
    qpos[3:5] = [-0.12, -0.12]  # far from the T
    push.set_state(qpos)
    for _ in range(4):
        info = push.step(np.array([1.0, 0.0], np.float32))[4]
    assert info["qpos"][3] - qpos[3] == pytest.approx(4 * 0.025, rel=0.1)  # 0.5 m/s x 0.2 s
    for _ in range(3):
        info = push.step(np.zeros(2, np.float32))[4]
    assert abs(info["qvel"][3]) < 1e-2  # zero command: the pusher stops
    np.testing.assert_allclose(info["qpos"][:3], qpos[:3], atol=1e-9)  # untouched T stays put
    # drive into the T's stem from below: it moves
    qpos[3:5] = [0.08, 0.08 - 0.079 - PUSHER_RADIUS - 0.01]
    push.set_state(qpos)
    for _ in range(6):
        info = push.step(np.array([0.0, 0.6], np.float32))[4]
    assert info["qpos"][1] - qpos[1] > 0.02


def test_push_policy_makes_contact_far_more_often_than_noise(tmp_path):
    moved = {}
    for policy in ("push", "noisy"):
        summary = collect("push", 8, tmp_path / policy, steps=30, workers=1, seed=0,
                          policy=policy, progress=False)
        moved[policy] = summary["stats"]
    assert moved["push"]["block_moved"] >= 0.75, moved
    assert moved["push"]["block_moved"] >= moved["noisy"]["block_moved"] + 0.25, moved
    assert moved["push"]["block_turn_max"] > 2 * moved["noisy"]["block_turn_max"], moved
    manifest = EpisodeDataset(tmp_path / "push").manifest
    assert all("block_moved" in e["stats"] for e in manifest["episodes"])


def test_oracle_cost_is_zero_only_at_the_goal_pose(push):
    _, info = push.reset(seed=2)
    goal = info["goal_qpos"]
    at_goal = push.oracle_cost(goal, goal)
    assert at_goal[:3].max() == 0.0  # the block's terms; the approach term pulls the pusher in
    assert push.oracle_cost(info["qpos"], goal)[:3].sum() > 1.0
