"""The reach task: Gymnasium API, determinism, goal images and the success metric."""

from __future__ import annotations

import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.reach import ReachEnv, joint_error, wrap_angle


@pytest.fixture
def env():
    environment = ReachEnv()
    yield environment
    environment.close()


def test_registered_and_checker_passes():
    assert "jepa_world/Reach-v0" in gym.registry
    wrapped = gym.make("jepa_world/Reach-v0")
    check_env(wrapped.unwrapped, skip_render_check=False)
    obs, _ = wrapped.reset(seed=0)
    assert wrapped.observation_space.contains(obs)
    wrapped.close()


def test_observations_are_pixels_and_proprio(env):
    obs, info = env.reset(seed=1)
    assert obs["pixels"].shape == (64, 64, 3) and obs["pixels"].dtype == np.uint8
    assert obs["proprio"].shape == (6,) and obs["proprio"].dtype == np.float32
    assert obs["pixels"].std() > 5  # a real rendered image, not a blank frame
    angles = np.arctan2(obs["proprio"][2:4], obs["proprio"][:2])
    np.testing.assert_allclose(angles, wrap_angle(info["qpos"]), atol=1e-6)
    obs, reward, terminated, truncated, info = env.step(np.array([1.0, -1.0], np.float32))
    assert obs["proprio"][4] > 0 > obs["proprio"][5]  # velocities follow the command
    assert reward == pytest.approx(-info["fingertip_distance"])
    assert not terminated and not truncated


def test_image_size_configurable_and_bounded():
    big = ReachEnv(image_size=224)
    obs, _ = big.reset(seed=0)
    assert obs["pixels"].shape == (224, 224, 3)
    big.close()
    for bad in (8, 225):
        with pytest.raises(ValueError, match="image_size"):
            ReachEnv(image_size=bad)


def test_time_limit_is_the_budget():
    wrapped = envs.make("reach")
    wrapped.reset(seed=0)
    for step in range(50):
        *_, truncated, _ = wrapped.step(wrapped.action_space.sample())
        assert truncated == (step == 49)
    wrapped.close()


def test_reset_with_seed_is_deterministic():
    a, b = ReachEnv(), ReachEnv()
    obs_a, info_a = a.reset(seed=7)
    obs_b, info_b = b.reset(seed=7)
    np.testing.assert_array_equal(obs_a["pixels"], obs_b["pixels"])
    np.testing.assert_array_equal(info_a["goal_pixels"], info_b["goal_pixels"])
    np.testing.assert_array_equal(info_a["goal_qpos"], info_b["goal_qpos"])
    actions = np.random.default_rng(0).uniform(-1, 1, (10, 2))
    for action in actions:
        out_a, out_b = a.step(action), b.step(action)
        np.testing.assert_array_equal(out_a[0]["pixels"], out_b[0]["pixels"])
        np.testing.assert_array_equal(out_a[0]["proprio"], out_b[0]["proprio"])
    _, info_c = a.reset(seed=8)
    assert not np.array_equal(info_c["goal_qpos"], info_a["goal_qpos"])


def test_goal_image_is_the_arm_at_the_goal_without_marker(env):
    obs, info = env.reset(seed=3)
    goal = info["goal_qpos"]
    assert not np.array_equal(info["goal_pixels"], obs["pixels"])
    # Rendering a configuration leaves the simulation untouched.
    np.testing.assert_array_equal(env.get_state()[0], info["qpos"])
    # Driving the arm exactly to the goal reproduces the goal image pixel for pixel: no marker.
    env.set_state(goal)
    np.testing.assert_array_equal(env.render(), info["goal_pixels"])
    np.testing.assert_array_equal(env.render_configuration(goal), info["goal_pixels"])


def test_pixels_and_metrics_show_the_current_state(env):
    env.reset(seed=4, options={"start_qpos": [0.0, 0.0], "goal_qpos": [0.0, 0.0]})
    for _ in range(3):
        obs, _, _, _, info = env.step(np.array([1.0, 1.0]))  # moving at full speed
    np.testing.assert_array_equal(obs["pixels"], env.render_configuration(info["qpos"]))
    np.testing.assert_allclose(env.fingertip_position(), env.fingertip_position(info["qpos"]))


def test_offset_goal_is_25_random_steps_away(env):
    distances = []
    for seed in range(20):
        _, info = env.reset(seed=seed)
        distances.append(np.abs(info["goal_qpos"] - info["qpos"]).max())
    max_step = 0.12  # rad per env step at full command
    assert 0 < min(distances) and max(distances) <= 25 * max_step
    _, info = env.reset(seed=0, options={"goal_protocol": "uniform"})
    spread = [env.reset(seed=s, options={"goal_protocol": "uniform"})[1]["goal_qpos"][0]
              for s in range(30)]
    assert np.ptp(spread) > 4.0  # uniform goals cover the circle


def test_success_metric_wraps_angles(env):
    # pi - 0.01 and -pi + 0.01 are 0.02 rad apart, not 2pi - 0.02.
    _, info = env.reset(
        seed=0, options={"start_qpos": [-np.pi + 0.01, 0.5], "goal_qpos": [np.pi - 0.01, 0.5]}
    )
    assert info["joint_error"] == pytest.approx(0.02, abs=1e-9)
    assert info["is_success"]
    _, info = env.reset(seed=0, options={"start_qpos": [0.3 + 4 * np.pi, 0], "goal_qpos": [0.3, 0]})
    assert info["is_success"] and info["joint_error"] < 1e-9
    _, info = env.reset(seed=0, options={"start_qpos": [0.0, 0.0], "goal_qpos": [0.0, 0.06]})
    assert not info["is_success"] and info["joint_error"] == pytest.approx(0.06)
    assert wrap_angle(np.pi) == pytest.approx(np.pi) and wrap_angle(-np.pi) == pytest.approx(np.pi)
    np.testing.assert_allclose(joint_error([3.1, 0], [-3.1, 0]), [2 * np.pi - 6.2, 0], atol=1e-9)


def test_fingertip_distance_in_info(env):
    _, info = env.reset(seed=0, options={"start_qpos": [0, 0], "goal_qpos": [np.pi, 0]})
    assert info["fingertip_distance"] == pytest.approx(0.42, abs=1e-6)
    np.testing.assert_allclose(env.fingertip_position(), [0.21, 0.0], atol=1e-6)


def test_bad_reset_options_and_actions(env):
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"goal": [0, 0]})
    with pytest.raises(ValueError, match="goal_qpos"):
        env.reset(options={"goal_qpos": [0, 0, 0]})
    with pytest.raises(ValueError, match="goal_protocol"):
        env.reset(options={"goal_protocol": "nearby"})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0.0]))


def test_unknown_env_name():
    with pytest.raises(envs.UnknownEnvError, match="unknown env 'pushy'"):
        envs.make("pushy")


@pytest.mark.parametrize("vector_cls", ["sync", "async"])
def test_vector_env(vector_cls):
    # "module:id" makes spawned workers import envs (and so register the task) themselves.
    fns = [lambda: gym.make("envs:jepa_world/Reach-v0") for _ in range(2)]
    if vector_cls == "sync":
        vec = gym.vector.SyncVectorEnv(fns)
    else:
        vec = gym.vector.AsyncVectorEnv(fns, context="spawn")
    obs, info = vec.reset(seed=[11, 12])
    assert obs["pixels"].shape == (2, 64, 64, 3)
    assert info["goal_pixels"].shape == (2, 64, 64, 3)
    single = envs.make("reach")
    single_obs, _ = single.reset(seed=12)
    np.testing.assert_array_equal(obs["pixels"][1], single_obs["pixels"])
    obs, reward, terminated, truncated, info = vec.step(np.zeros((2, 2), np.float32))
    assert reward.shape == (2,) and info["is_success"].shape == (2,)
    vec.close()
    single.close()


def _subprocess_env(**overrides):
    environ = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "DISPLAY",
                                                                 "PYOPENGL_PLATFORM")}
    environ.update(overrides)
    return environ


def test_headless_default_is_egl():
    code = (
        "import os, envs; e = envs.make('reach'); o, _ = e.reset(seed=0); "
        "print(os.environ['MUJOCO_GL'], o['pixels'].std() > 5)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_subprocess_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["egl", "True"]


def test_missing_gl_backend_gives_clear_error():
    code = "import envs; e = envs.make('reach'); e.reset(seed=0)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_subprocess_env(MUJOCO_GL="bogus"), timeout=120)
    assert out.returncode != 0
    assert "RenderingUnavailableError" in out.stderr and "MUJOCO_GL=bogus" in out.stderr
    assert "MUJOCO_GL=osmesa" in out.stderr  # names the fix
