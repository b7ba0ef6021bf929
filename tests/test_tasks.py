"""Every registered goal-image task: Gymnasium's checker, determinism, goal images rendered from
the goal state with the markers hidden, state round trips, success at its edges, the adapter's
errors, and a user's own task through the registry."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.collect import collect
from envs.gymnasium_tasks import (
    PUSHER_TOLERANCE,
    PusherTask,
    ReacherTask,
    UnsupportedEnvError,
    make_mujoco_env,
)
from jepa_world.data.episodes import EpisodeDataset
from tests.conftest import assert_one_line_error, run_cli

needs_swm = pytest.mark.skipif(importlib.util.find_spec("stable_worldmodel") is None,
                               reason='needs the optional extra: pip install "jepa-world[swm]"')
BUILT_IN = ["reach", "push", "gym:Reacher-v5", "gym:Pusher-v5"]
SWM = ["swm:PushT-v1", "swm:ReacherDMControl-v0"]  # stable-worldmodel's, with the extra
TASKS = BUILT_IN + [pytest.param(name, marks=needs_swm) for name in SWM]


@pytest.fixture(params=TASKS)
def task(request):
    environment = envs.make_task(request.param)
    yield environment
    environment.close()


@pytest.mark.parametrize("name", TASKS)
def test_checker_passes_and_observations_are_pixels_and_proprio(name):
    env = envs.make(name)
    check_env(env.unwrapped, skip_render_check=False)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert obs["pixels"].shape == (64, 64, 3) and obs["pixels"].std() > 5
    assert info["goal_pixels"].shape == (64, 64, 3)
    for key in ("is_success", "qpos", "qvel", "goal_qpos", *env.unwrapped.metric_names):
        assert key in info, key
    env.close()


def test_reset_is_deterministic_under_seeds(task):
    other = envs.make_task(task.spec.id)
    obs_a, info_a = task.reset(seed=5)
    obs_b, info_b = other.reset(seed=5)
    np.testing.assert_array_equal(obs_a["pixels"], obs_b["pixels"])
    np.testing.assert_array_equal(info_a["goal_pixels"], info_b["goal_pixels"])
    np.testing.assert_array_equal(info_a["goal_qpos"], info_b["goal_qpos"])
    action = task.action_space.high * 0.5
    np.testing.assert_array_equal(task.step(action)[0]["proprio"], other.step(action)[0]["proprio"])
    _, info_c = task.reset(seed=6)
    assert not np.array_equal(info_c["qpos"], info_a["qpos"])
    other.close()


def test_goal_image_is_rendered_from_the_goal_state(task):
    obs, info = task.reset(seed=3)
    assert not np.array_equal(info["goal_pixels"], obs["pixels"])
    np.testing.assert_array_equal(task.get_state()[0], info["qpos"])  # rendering left it alone
    np.testing.assert_array_equal(task.render_state(info["goal_qpos"]), info["goal_pixels"])
    task.set_state(info["goal_qpos"])
    np.testing.assert_array_equal(task.render(), info["goal_pixels"])


def test_state_round_trip(task):
    task.reset(seed=1)
    for _ in range(3):
        task.step(task.action_space.sample())
    qpos, qvel = task.get_state()
    pixels = task.render()
    task.reset(seed=2)
    task.set_state(qpos, qvel)
    got_qpos, got_qvel = task.get_state()  # pymunk's body frames round off the last bit
    np.testing.assert_allclose(got_qpos, qpos, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got_qvel, qvel, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(task.render(), pixels)
    with pytest.raises(ValueError, match="qpos"):
        task.set_state(qpos[:-1])


def test_state_arrays_cover_the_declared_keys(task):
    task.reset(seed=0)
    arrays = task.state_arrays()
    assert set(arrays) == set(task.state_keys)
    assert set(task.probe_targets) <= set(task.state_keys)


def test_reacher_hides_the_target_and_wraps_angles():
    task = envs.make_task("gym:Reacher-v5")
    _, info = task.reset(seed=0)
    image = task.render()
    moved = info["qpos"].copy()
    moved[2:] = [-0.2, 0.2]  # the target ball elsewhere: invisible, so the image is unchanged
    task.set_state(moved)
    np.testing.assert_array_equal(task.render(), image)
    start = [np.pi - 0.01, 0.5, 0.1, -0.1]
    _, info = task.reset(seed=0, options={"start_qpos": start,
                                          "goal_qpos": [-np.pi + 0.02, 0.5, 0.1, -0.1]})
    assert info["joint_error"] == pytest.approx(0.03, abs=1e-9) and info["is_success"]
    _, info = task.reset(seed=0, options={"start_qpos": [0.0, 0.0, 0.1, -0.1],
                                          "goal_qpos": [0.0, 0.051, 0.1, -0.1]})
    assert not info["is_success"]
    _, info = task.reset(seed=0, options={"start_qpos": [0.0, 0.0, 0.1, -0.1],
                                          "goal_qpos": [0.049, -0.049, 0.1, -0.1]})
    assert info["is_success"]
    # Offset goals: 25 env steps of random torques from a start at rest.
    _, info = task.reset(seed=4)
    assert np.abs(info["goal_qpos"][:2] - info["qpos"][:2]).max() > 0.05
    np.testing.assert_array_equal(info["qvel"], 0.0)
    task.close()


def test_pusher_goal_shows_the_object_at_the_goal_without_marker():
    task = envs.make_task("gym:Pusher-v5")
    _, info = task.reset(seed=0)
    assert task.goal_protocols == ("gym",)
    goal = info["goal_qpos"]
    np.testing.assert_array_equal(goal[-4:-2], 0.0)  # the cylinder at Gymnasium's goal
    assert info["object_distance"] > 0.17  # Gymnasium's start keeps it away from the goal
    image = task.render()
    moved = info["qpos"].copy()
    moved[-2:] = [-0.2, 0.1]  # the goal marker moved: invisible, the image is unchanged
    task.set_state(moved)
    np.testing.assert_array_equal(task.render(), image)
    # Success: the cylinder's centre within the tolerance of the goal position.
    for offset, success in ((PUSHER_TOLERANCE - 1e-3, True), (PUSHER_TOLERANCE + 1e-3, False)):
        start = goal.copy()
        start[-4] = offset
        _, info = task.reset(seed=0, options={"start_qpos": start, "goal_qpos": goal})
        assert info["is_success"] == success
        assert info["object_distance"] == pytest.approx(offset, abs=1e-9)
    assert np.all(task.oracle_cost(goal, goal) == 0)
    task.close()


def test_pusher_push_policy_moves_the_cylinder_where_noise_does_not(tmp_path):
    shifts = {}
    for policy in ("push", "noisy"):
        summary = collect("gym:Pusher-v5", 3, tmp_path / policy, steps=100, policy=policy,
                          action_scale=0.3 if policy == "push" else 1.0, progress=False)
        shifts[policy] = summary["stats"]
    assert shifts["push"]["object_moved"] >= 0.5, shifts
    assert shifts["push"]["object_shift_max"] > 10 * shifts["noisy"]["object_shift_max"], shifts
    manifest = EpisodeDataset(tmp_path / "push").manifest
    assert all("object_moved" in e["stats"] for e in manifest["episodes"])


def test_unknown_recording_policy_lists_the_tasks_own(tmp_path):
    result = run_cli("-m", "envs.collect", "--env", "gym:Pusher-v5", "--episodes", "1",
                     "--out", str(tmp_path / "d"), "--policy", "sweep")
    assert_one_line_error(result, "unknown policy 'sweep'", "random, noisy, push")
    result = run_cli("-m", "envs.collect", "--env", "reach", "--episodes", "1",
                     "--out", str(tmp_path / "r"), "--policy", "push")
    assert_one_line_error(result, "unknown policy 'push'", "(known: random, noisy)")


def test_adapter_rejects_what_it_cannot_handle():
    with pytest.raises(UnsupportedEnvError, match="not a Gymnasium MujocoEnv"):
        make_mujoco_env("CartPole-v1", 64, {}, {})
    with pytest.raises(UnsupportedEnvError, match="has no env"):
        make_mujoco_env("NoSuchEnv-v0", 64, {}, {})

    class Hidden(ReacherTask):
        hidden_bodies = ("no_such_body",)

    with pytest.raises(UnsupportedEnvError, match="no body named 'no_such_body'"):
        Hidden()
    with pytest.raises(ValueError, match="goal_protocol"):
        PusherTask(goal_protocol="uniform")


def test_unknown_names_list_the_known_ones():
    with pytest.raises(envs.UnknownEnvError, match="known: gym:Pusher-v5, gym:Reacher-v5, push, reach"):
        envs.make("gym:Walker-v9")


def test_a_users_task_plugs_into_the_registry():
    from tests.user_task import SlowReacher

    assert envs.resolve_env_id("slow-reacher") == "jepa_world/slow_reacher-v0"
    task = envs.make_task("slow-reacher")
    assert isinstance(task, SlowReacher)
    assert task.frame_skip == 4 and task.dt == pytest.approx(0.04)
    obs, info = task.reset(seed=0, options={"goal_protocol": "uniform"})
    assert obs["proprio"].shape == (4,) and "shoulder_error" in info
    check_env(envs.make("slow-reacher").unwrapped)
    task.close()


def test_a_users_task_on_the_command_line(tmp_path):
    """JEPA_WORLD_TASKS makes the commands import the module that registers the task."""
    import os

    from tests.conftest import assert_one_line_error, run_cli

    environ = {**os.environ, "JEPA_WORLD_TASKS": "tests.user_task"}
    result = run_cli("-m", "envs.collect", "--env", "slow-reacher", "--episodes", "1",
                     "--steps", "5", "--out", str(tmp_path / "data"), "--quiet", env=environ)
    assert result.returncode == 0, result.stderr
    result = run_cli("-m", "planners.mpc", "--env", "slow-reacher", "--model", "random",
                     "--episodes", "1", "--goal", "uniform", "--quiet", env=environ)
    assert result.returncode == 0, result.stderr
    assert "final shoulder error" in result.stdout
    result = run_cli("-m", "planners.mpc", "--env", "slow-reacher", "--model", "random")
    assert_one_line_error(result, "unknown env 'slow-reacher'")


# ---------------------------------------------------------------------- end to end, per task
TINY_BUILD = [
    "--quick", "--episodes", "2", "--steps", "12",  # --quick's own sizes, made smaller still
    "pretrain.model=micro", "pretrain.model.predictor.depth=2", "pretrain.data.resolution=32",
    "pretrain.data.frames_per_clip=4", "pretrain.data.frame_step=2",
    "pretrain.train.batch_size=4", "pretrain.train.num_workers=0",
    "pretrain.train.warmup_steps=1", "pretrain.train.steps=2", "pretrain.train.tensorboard=false",
    "train_ac.model.frameskip=2", "train_ac.train.context=3", "train_ac.train.batch_size=8",
    "train_ac.train.steps=3", "train_ac.train.warmup_steps=1", "train_ac.train.eval_every=3",
    "train_ac.train.tensorboard=false", "train_ac.model.predictor.decoder_width=32",
    "probe.probe.steps=3", "probe.probe.batch_size=8", "probe.data.val_fraction=0.5",
    "readout.steps=50",
]
TINY_PLAN = ["--episodes", "1", "--budget", "4", "--quiet", "horizon=2", "cem.samples=16",
             "cem.elites=4", "cem.iterations=2"]


# the encoder trained with the predictor (SIGReg), whatever the task's recipe says
END_TO_END = ["train_ac.encoder.train=true", "train_ac.model.head.hidden=32",
              "train_ac.model.head.dim=16", "train_ac.train.sigreg_directions=16"]


@pytest.mark.parametrize(
    ("name", "way"),
    [(name, "recipe") for name in BUILT_IN]
    # the end-to-end path is the same code for every task: two of them keep CI short
    + [(name, "end_to_end") for name in ("reach", "push")]
    # the stable-worldmodel recipes are end to end already
    + [pytest.param(name, "recipe", marks=needs_swm) for name in SWM],
)
def test_record_build_and_plan_end_to_end(tmp_path, name, way):
    import json

    from jepa_world.build import load_recipe
    from tests.conftest import run_cli

    out = tmp_path / "build"
    extra = END_TO_END if way == "end_to_end" else []
    result = run_cli("-m", "jepa_world.build", "--env", name, "--out", str(out), *TINY_BUILD,
                     *extra, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "build.json").read_text())
    assert set(summary["stage_seconds"]) >= {"pretrain", "train_ac", "probe"}
    task = envs.make_task(name)
    for kind in ("model", "random"):  # the latent's probe R^2 of the task's own targets
        scores = summary["probe"]["r2"][kind]
        assert scores and all(n.rstrip("0123456789") in task.probe_targets for n in scores), scores
    model = out / "train_ac" / "world_model"
    provenance = json.loads((model / "provenance.json").read_text())
    assert provenance["reproduce"] == f"python -m jepa_world.build --env {name} --install"
    recipe = load_recipe(name)
    if way == "end_to_end" or "encoder.train=true" in recipe.train_ac:
        assert provenance["built"] == "end_to_end"
    if way == "end_to_end":
        assert json.loads((model / "config.json").read_text())["head"]["dim"] == 16
    metrics_file = tmp_path / "metrics.json"
    result = run_cli("-m", "planners.mpc", "--env", name, "--checkpoint", str(model),
                     "--json", str(metrics_file), *TINY_PLAN)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(metrics_file.read_text())
    for metric in task.metric_names:  # the task's own error metrics, in the JSON and summary
        assert f"final_{metric}_mean" in metrics
        assert f"final {metric.replace('_', ' ')}" in result.stdout
        assert f"final_{metric}" in metrics["records"][0]
    assert metrics["env"] == task.spec.id and metrics["budget"] == 4
    planning = json.loads((model / "config.json").read_text())["planning"]
    for item in recipe.train_ac:  # the planner settings the recipe stores in the model
        key, _, value = item.partition("=")
        if key.startswith("model.planning."):
            assert str(planning[key.split(".")[-1]]) == value, (key, planning)
    for key, default in {"polish_steps": 0, "polish_lr": 0.02}.items():  # ... are what the
        assert metrics["settings"][key] == planning.get(key, default)   # command plans with
    if recipe.readout:  # fitted into the model's folder, and it plans with it
        assert "readout" in summary["stage_seconds"] and (model / "readout").is_dir()
        weights = [item.partition("=")[2] for item in recipe.readout_settings
                   if item.startswith("weight=")]
        assert metrics["readout_weight"] == (float(weights[-1]) if weights else 10.0)
    task.close()
    if name == "reach" and way == "recipe":  # a rerun says what it skips and what resumes
        again = run_cli("-m", "jepa_world.build", "--env", name, "--out", str(out),
                        *TINY_BUILD, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"[build] record data: {out / 'data'} already holds 2 episodes" in again.stderr
        assert f"[build] pretrain: {out / 'pretrain'} holds a checkpoint" in again.stderr
        assert "already holds this finished run" in again.stdout
        assert f"[build] readout: {model / 'readout'} is already fitted, skipped" in again.stderr


def test_random_encoder_control_build(tmp_path):
    import json

    import torch

    out = tmp_path / "control"
    result = run_cli("-m", "jepa_world.build", "--env", "push", "--out", str(out),
                     "--random-encoder", *TINY_BUILD, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "build.json").read_text())
    assert summary["encoder"] == "random (untrained)"
    state = torch.load(out / "pretrain" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 0 and state["config"]["train"]["steps"] == 0
    assert (out / "train_ac" / "world_model" / "weights.safetensors").is_file()
    # end to end, the control's encoder starts untrained in train_ac too
    e2e = tmp_path / "control-e2e"
    result = run_cli("-m", "jepa_world.build", "--env", "push", "--out", str(e2e),
                     "--random-encoder", *TINY_BUILD, *END_TO_END, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    provenance = json.loads((e2e / "train_ac" / "world_model" / "provenance.json").read_text())
    assert provenance["built"] == "end_to_end" and provenance["encoder_init"] == "random"
    result = run_cli("-m", "jepa_world.build", "--env", "push", "--random-encoder", "--install")
    assert_one_line_error(result, "--random-encoder builds a control")


def test_build_refuses_bad_input(tmp_path):
    from tests.conftest import assert_one_line_error, run_cli

    result = run_cli("-m", "jepa_world.build", "--env", "pushy", "--out", str(tmp_path))
    assert_one_line_error(result, "unknown env 'pushy'", "gym:Reacher-v5")
    result = run_cli("-m", "jepa_world.build", "--env", "reach", "--out", str(tmp_path),
                     "pretrain_steps=3")
    assert_one_line_error(result, "unrecognised argument")
    # settings of a later stage are checked before anything is recorded
    out = tmp_path / "never"
    result = run_cli("-m", "jepa_world.build", "--env", "reach", "--out", str(out),
                     "train_ac.model.use_proprio=false")
    assert_one_line_error(result, "train_ac: model.use_proprio=false", "decoder_width=0")
    result = run_cli("-m", "jepa_world.build", "--env", "reach", "--out", str(out),
                     "pretrain.train.lr=nan")
    assert_one_line_error(result, "pretrain: train.lr must be positive and finite")
    assert not out.exists()
    result = run_cli("-m", "planners.mpc", "--env", "reach", "--model", "oracle", "--goal", "gym")
    assert_one_line_error(result, "unknown goal protocol 'gym'", "offset")
    for seed in ("-1", str(2**64)):  # before anything is recorded
        result = run_cli("-m", "jepa_world.build", "--env", "reach", "--out", str(out),
                         "--seed", seed)
        assert_one_line_error(result, "--seed must be an integer in [0, 2147483647]")
    result = run_cli("-m", "jepa_world.build", "--env", "reach", "--out", str(out),
                     "readout.hidden=3")
    assert_one_line_error(result, "unknown readout setting 'hidden'", "steps")
    assert not out.exists()


def test_a_recipe_carries_its_readout_settings(tmp_path, monkeypatch):
    """readout_settings (KEY=VALUE of the readout stage) are validated when the recipe loads
    and become the stage's flags; the command line's readout.KEY=V still come after them."""
    from jepa_world import build

    recipe = build.load_recipe("gym:Reacher-v5")
    assert recipe.readout and build.readout_flags(recipe.readout_settings) == ["--weight", "0.3"]
    assert build.readout_flags([]) == []
    with pytest.raises(build.BuildError, match="readout setting 'weight' needs a value"):
        build.readout_flags(["weight"])
    bad = tmp_path / "bad.yaml"
    text = build.recipe_file("gym:Reacher-v5").read_text()
    bad.write_text(text.replace("readout_settings: [weight=0.3]", "readout_settings: [hidden=3]"))
    monkeypatch.setattr(build, "recipe_file", lambda env: bad)
    with pytest.raises(build.BuildError, match="readout_settings: unknown readout setting 'hidden'"):
        build.load_recipe("gym:Reacher-v5")


@pytest.mark.parametrize("manifest", ["{", "{}", '{"format": "jepa-world-episodes"}'])
def test_build_with_a_damaged_dataset_manifest_is_one_line(tmp_path, manifest):
    from tests.conftest import assert_one_line_error, run_cli

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text(manifest)
    result = run_cli("-m", "jepa_world.build", "--env", "reach", "--out", str(tmp_path))
    assert_one_line_error(result, str(tmp_path / "data"), "repair or remove it")


def test_a_stopped_build_stops_its_running_stage(tmp_path):
    """``kill -TERM`` on the build: the stage it runs stops too (its rerun would otherwise
    find the stage's folder locked by an orphan)."""
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    pid_file = tmp_path / "stage.pid"
    stage = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    script = textwrap.dedent(f"""
        import sys
        from jepa_world.build import BuildStopped, Stages, stop_on_sigterm
        stop_on_sigterm()
        try:
            Stages(None).run("stage", ["-c", {stage!r}])
        except BuildStopped:
            sys.exit(7)
    """)
    build = subprocess.Popen([sys.executable, "-c", script],
                             cwd=Path(__file__).resolve().parents[1])
    deadline = time.time() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.time() < deadline and build.poll() is None
        time.sleep(0.1)
    stage_pid = int(pid_file.read_text())
    build.send_signal(signal.SIGTERM)
    assert build.wait(timeout=60) == 7
    with pytest.raises(ProcessLookupError):  # gone, not orphaned
        for _ in range(100):
            os.kill(stage_pid, 0)
            time.sleep(0.1)
