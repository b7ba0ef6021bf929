"""python -m planners.mpc: the oracle solves reach, baselines, metrics JSON, videos, batching,
the learned-model path and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jepa_world.training.cli import UserError, load_config
from planners import mpc
from tests.conftest import assert_one_line_error, run_cli

# Small but reliable oracle settings: horizon 2, 64 samples x 8 iterations.
FAST = ["horizon=2", "cem.samples=64", "cem.elites=8", "cem.iterations=8"]


def config(*overrides: str, **flags):
    cfg = mpc.load_config("mpc", list(overrides))
    for key, value in flags.items():
        cfg[key] = value
    return cfg


def run(*overrides: str, **flags) -> dict:
    return mpc.evaluate(config(*overrides, **flags), progress=False, log=lambda line: None)


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory):
    """The real command: oracle + CEM on 3 offset episodes, with --json and --video."""
    out = tmp_path_factory.mktemp("mpc")
    result = run_cli(
        "-m", "planners.mpc", "--env", "reach", "--model", "oracle", "--planner", "cem",
        "--episodes", "3", "--num-envs", "3", "--seed", "0",
        "--json", str(out / "metrics.json"), "--video", str(out / "videos"), *FAST,
    )
    assert result.returncode == 0, result.stderr
    return out, result


def test_oracle_cem_solves_offset_episodes(oracle_run):
    out, result = oracle_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["success_rate"] == 1.0, metrics["records"]
    assert metrics["success_any_rate"] == 1.0
    assert metrics["final_joint_error_mean"] < 0.05
    assert "success (end)" in result.stdout and "upper bound" in result.stdout
    assert result.stdout.count("episode ") == 3


def test_metrics_json_schema(oracle_run):
    out, _ = oracle_run
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("success_rate", "success_any_rate", "final_joint_error_mean", "plan_ms_median",
                "plan_ms_p90", "episodes", "seed", "planner", "checkpoint", "model",
                "goal_protocol", "budget", "settings", "env", "records", "timing"):
        assert key in metrics, key
    assert metrics["episodes"] == 3 and metrics["seed"] == 0 and metrics["planner"] == "cem"
    assert metrics["model"] == "oracle" and metrics["checkpoint"] is None
    assert metrics["env"] == "jepa_world/Reach-v0" and metrics["goal_protocol"] == "offset"
    assert metrics["budget"] == 50
    assert metrics["settings"]["horizon"] == 2 and metrics["settings"]["samples"] == 64
    assert metrics["plan_ms_p90"] >= metrics["plan_ms_median"] > 0
    record = metrics["records"][0]
    for key in ("seed", "success", "success_any", "final_joint_error",
                "final_fingertip_distance", "steps", "plan_ms"):
        assert key in record, key
    assert record["steps"] == 50 and len(record["plan_ms"]) == 10  # 50 steps / blocks of 5
    seeds = [r["seed"] for r in metrics["records"]]
    assert seeds == [mpc.eval_seed(0, i) for i in range(3)]
    assert min(seeds) >= 1_000_000  # never a recording seed


def test_video_is_written_and_decodable(oracle_run):
    import decord

    out, _ = oracle_run
    videos = sorted((out / "videos").glob("*.mp4"))
    assert len(videos) == 3
    reader = decord.VideoReader(str(videos[0]))
    assert len(reader) == 51  # the first frame and one per env step
    frame = reader[0].asnumpy()
    # 64 px x 4: observation | 4-px rule | goal (the oracle has no readout: no third panel),
    # 25 rows of labels above, the caption below
    assert frame.shape[1] == 2 * 256 + 4 and frame.shape[0] > 25 + 256
    # the goal panel shows the arm at the goal in every frame
    last = reader[50].asnumpy()
    goal = (slice(25, 25 + 256), slice(260, 516))
    assert np.abs(frame[goal].astype(int) - last[goal].astype(int)).mean() < 3
    current = (slice(25, 25 + 256), slice(0, 256))  # while the arm moves
    assert np.abs(frame[current].astype(int) - last[current].astype(int)).mean() > 0.5


def test_random_baseline_runs():
    metrics = run(model="random", episodes=2, num_envs=2, budget=10)
    assert metrics["planner"] is None and metrics["plan_ms_median"] is None
    assert metrics["records"][0]["steps"] == 10
    assert 0.0 <= metrics["success_rate"] <= 1.0
    assert "lower bound" in metrics["note"]


def test_batched_equals_unbatched():
    kwargs = {"model": "oracle", "episodes": 3, "budget": 15}
    alone = run(*FAST, num_envs=1, **kwargs)
    together = run(*FAST, num_envs=2, **kwargs)
    keys = ("seed", "success", "success_any", "final_joint_error", "final_fingertip_distance",
            "steps", "final_energy")
    for a, b in zip(alone["records"], together["records"], strict=True):
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}


def test_same_seed_same_results_other_seed_other_episodes():
    a = run(*FAST, model="oracle", episodes=1, budget=10)
    b = run(*FAST, model="oracle", episodes=1, budget=10)
    c = run(*FAST, model="oracle", episodes=1, budget=10, seed=1)
    assert a["records"][0]["final_joint_error"] == b["records"][0]["final_joint_error"]
    assert c["records"][0]["seed"] != a["records"][0]["seed"]


def test_uniform_goals_mppi_and_short_last_block():
    metrics = run("horizon=2", "mppi.samples=64", "mppi.elites=8", "mppi.iterations=4",
                  model="oracle", planner="mppi", goal="uniform", episodes=1, budget=12,
                  shrink_horizon=True)
    assert metrics["goal_protocol"] == "uniform" and metrics["planner"] == "mppi"
    assert metrics["records"][0]["steps"] == 12  # 5 + 5 + 2: the last block is cut to fit
    assert len(metrics["records"][0]["plan_ms"]) == 3


# ---------------------------------------------------------------------- the learned model
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny randomly initialised WorldModel saved as a model directory."""
    try:
        import torch

        from jepa_world.world_model import WorldModel, WorldModelConfig
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"jepa_world.WorldModel is not available yet: {exc}")
    torch.manual_seed(0)
    config = WorldModelConfig(
        encoder={"size": "micro", "img_size": 32, "patch_size": 8, "num_frames": 2, "depth": 2},
        predictor={"embed_dim": 48, "depth": 2, "num_heads": 4},
        action_dim=2,
        frameskip=5,
        proprio_dim=6,  # the reach proprio: cos, sin of both angles, velocities
        pool=[2, 2],
    )
    model = WorldModel(config)
    with torch.no_grad():  # actions must matter: the residual head starts at zero
        model.predictor.frame_head.weight.normal_(0, 0.2, generator=torch.Generator().manual_seed(0))
    return model.save(tmp_path_factory.mktemp("wm") / "tiny")


@pytest.mark.parametrize("planner", ["cem", "mppi", "gradient"])
def test_learned_model_path(tiny_checkpoint, planner):
    settings = {
        "cem": ["cem.samples=16", "cem.elites=4", "cem.iterations=2"],
        "mppi": ["mppi.samples=16", "mppi.elites=4", "mppi.iterations=2"],
        "gradient": ["gradient.steps=2", "gradient.restarts=2"],
    }[planner]
    metrics = run(*settings, "horizon=2", checkpoint=str(tiny_checkpoint), planner=planner,
                  episodes=2, num_envs=2, budget=10, device="cpu")
    assert metrics["model"] == "learned" and metrics["checkpoint"] == str(tiny_checkpoint)
    assert len(metrics["records"]) == 2 and metrics["records"][0]["steps"] == 10
    assert metrics["timing"]["encode_ms_per_replan"] > 0


def test_a_model_carries_its_polish_and_the_command_overrides_it(tiny_checkpoint, tmp_path):
    """model.planning.polish_* (set by train_ac) are what planners.mpc, the API's
    PlannerPolicy and the metrics use unless the command says otherwise."""
    from jepa_world.world_model import WorldModel
    from planners.policies import PlannerPolicy, command_defaults

    model = WorldModel.load(tiny_checkpoint)
    model.config.planning = {"polish_steps": 3, "polish_lr": 0.05}
    carrying = model.save(tmp_path / "polished")
    quick = ["cem.samples=8", "cem.elites=2", "cem.iterations=1", "horizon=2"]
    flags = {"checkpoint": str(carrying), "episodes": 1, "budget": 5, "device": "cpu"}
    metrics = run(*quick, **flags)
    assert metrics["settings"]["polish_steps"] == 3 and metrics["settings"]["polish_lr"] == 0.05
    assert metrics["config"]["cem"]["polish_steps"] == 3  # the record says what ran
    assert "| planner cem + polish 3 |" in mpc.summary_text(metrics)
    metrics = run(*quick, "cem.polish_steps=0", **flags)
    assert metrics["settings"]["polish_steps"] == 0 and metrics["settings"]["polish_lr"] == 0.05
    plain = run(*quick, **{**flags, "checkpoint": str(tiny_checkpoint)})
    assert plain["settings"]["polish_steps"] == 0 and plain["settings"]["polish_lr"] == 0.02
    assert "polish" not in mpc.summary_text(plain)
    loaded = WorldModel.load(carrying)
    assert PlannerPolicy(loaded, "mppi").settings.polish_steps == 3
    assert PlannerPolicy(loaded, "cem", polish_steps=1).settings.polish_steps == 1
    assert command_defaults(loaded, "cem", {}, tail=True)["polish_steps"] is None
    model.config.planning = {"polish_steps": 2, "polish_method": "gauss_newton"}
    newton = run(*quick, **{**flags, "checkpoint": str(model.save(tmp_path / "newton"))})
    assert newton["settings"]["polish_method"] == "gauss_newton"
    assert "| planner cem + polish 2 gauss_newton |" in mpc.summary_text(newton)


def test_a_model_carries_its_search_size_and_the_command_overrides_it(tiny_checkpoint,
                                                                    tmp_path):
    """model.planning.cem_samples / cem_iterations replace the command's 128 x 4 for CEM (not
    MPPI, not beside a policy tail) unless the command sets cem.samples / cem.iterations."""
    from jepa_world.world_model import WorldModel
    from planners.policies import PlannerPolicy, command_defaults

    model = WorldModel.load(tiny_checkpoint)
    plain = command_defaults(model, "cem", {})
    assert (plain["samples"], plain["iterations"]) == (128, 4)
    model.config.planning = {"cem_samples": 8, "cem_iterations": 1}
    carrying = model.save(tmp_path / "small-search")
    flags = {"checkpoint": str(carrying), "episodes": 1, "budget": 5, "device": "cpu"}
    metrics = run("cem.elites=2", "horizon=2", **flags)
    assert (metrics["settings"]["samples"], metrics["settings"]["iterations"]) == (8, 1)
    assert metrics["config"]["cem"]["samples"] == 8  # the record says what ran
    metrics = run("cem.elites=2", "horizon=2", "cem.samples=12", **flags)
    assert (metrics["settings"]["samples"], metrics["settings"]["iterations"]) == (12, 1)
    loaded = WorldModel.load(carrying)
    assert PlannerPolicy(loaded, "cem", elites=2).settings.samples == 8
    assert PlannerPolicy(loaded, "cem", elites=2, iterations=3).settings.iterations == 3
    assert PlannerPolicy(loaded, "mppi").settings.samples == 512  # configs/mpc.yaml's mppi
    assert command_defaults(loaded, "cem", {}, tail=True)["samples"] == 128


def random_shooting(world_model, z_now, z_goal, *, proprio=None, init_mean=None,
                    generator=None, settings=None):
    """A user's own planner: the sampling skeleton with a refit that changes nothing."""
    from planners.sampling import search

    found = search(world_model, z_now, z_goal, proprio, init_mean, generator, settings,
                   lambda elites, energy, mean, std: (mean, std))
    return found.result("random shooting", found.best.params, found.best.energy,
                        int(world_model.frameskip))


def test_any_plan_function_runs_under_the_same_protocol(tiny_checkpoint):
    from planners.sampling import SamplingSettings

    settings = SamplingSettings(horizon=2, samples=8, elites=2, iterations=2)
    settings.validate()
    cfg = config(checkpoint=str(tiny_checkpoint), episodes=2, num_envs=2, budget=10,
                 device="cpu")
    metrics = mpc.evaluate(cfg, progress=False, log=lambda line: None,
                           plan=(random_shooting, settings))
    assert metrics["planner"] == "tests.test_mpc.random_shooting"
    assert metrics["settings"]["samples"] == 8 and len(metrics["records"]) == 2
    assert metrics["timing"]["replans"] == 2  # one call per block of 5 steps, both envs


def test_model_for_another_proprio_layout_is_refused(tmp_path):
    from jepa_world.world_model import WorldModel, WorldModelConfig

    config = WorldModelConfig(
        encoder={"size": "micro", "img_size": 32, "patch_size": 8, "num_frames": 2, "depth": 2},
        predictor={"embed_dim": 48, "depth": 2, "num_heads": 4},
        action_dim=2, frameskip=5, proprio_dim=4, pool=[2, 2],
    )
    old = WorldModel(config).save(tmp_path / "old")
    with pytest.raises(UserError, match="4-d proprio"):
        run(checkpoint=str(old), episodes=1, budget=5, device="cpu")


def test_learned_model_with_offset_correction(tiny_checkpoint):
    common = ["horizon=2", "cem.samples=16", "cem.elites=4", "cem.iterations=2"]
    flags = dict(checkpoint=str(tiny_checkpoint), episodes=2, num_envs=2, budget=15,
                 device="cpu")
    plain = run(*common, **flags)
    corrected = run(*common, "correction=offset", "correction_gain=0.5", **flags)
    assert corrected["settings"]["correction"] == "offset"
    assert corrected["settings"]["correction_gain"] == 0.5
    assert plain["settings"]["correction"] == "none"
    # the first plan is the same; later plans aim at the corrected goal, so the runs differ
    assert [r["final_joint_error"] for r in plain["records"]] != [
        r["final_joint_error"] for r in corrected["records"]
    ]


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--env", "cartpole"], "unknown env 'cartpole'"),
        (["--planner", "simplex", "--model", "oracle"], "unknown planner 'simplex'"),
        (["--episodes", "0"], "episodes must be a positive integer"),
        (["--num-envs", "-1"], "num_envs must be a positive integer"),
        (["--budget", "0"], "budget must be a positive integer"),
        (["--model", "dreamer"], "unknown model 'dreamer'"),
        (["--goal", "anywhere"], "unknown goal protocol"),
        (["--model", "oracle", "--planner", "gradient"], "not differentiable"),
        (["--model", "oracle", "cem.polish_steps=5"], "polish_steps follows the learned"),
        (["--frobnicate"], "unrecognised argument"),
        (["cem.samples=0", "--model", "oracle"], "samples must be a positive integer"),
        (["nonexistent_key=1"], "bad configuration"),
        (["--episodes", "three"], "invalid int value"),
        (["correction=kalman"], "unknown correction 'kalman'"),
        (["correction=offset", "correction_gain=2"], "correction_gain must be in"),
        (["--seed", "-100"], r"seed must be in \[0, 99999\]"),
        (["--seed", "100000"], r"seed must be in \[0, 99999\]"),
        (["--policy", "x", "--model", "learned"], "goes with model=distilled"),
    ],
)
def test_bad_input_in_process(args, needle):
    with pytest.raises(UserError, match=needle):
        mpc.main(args)


def test_missing_checkpoint_one_line(tmp_path):
    result = run_cli("-m", "planners.mpc", "--env", "reach", "--checkpoint",
                     str(tmp_path / "nowhere"), "--episodes", "1")
    assert_one_line_error(result, "error:", "cannot load world model", "nowhere")


def test_corrupt_checkpoint_one_line(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    (bad / "weights.safetensors").write_bytes(b"\x00" * 10)
    result = run_cli("-m", "planners.mpc", "--env", "reach", "--checkpoint", str(bad))
    assert_one_line_error(result, "error:", "cannot load world model")


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--env", "cartpole"], "unknown env"), (["--episodes", "0"], "episodes")],
)
def test_bad_input_cli_one_line(args, needle):
    result = run_cli("-m", "planners.mpc", *args)
    assert_one_line_error(result, "error:", needle)


def test_config_composes_with_overrides():
    cfg = load_config("mpc", ["cem.samples=10", "cem.elites=5", "energy=l2", "horizon=3"])
    _, settings = mpc.planner_settings(cfg)
    assert settings.samples == 10 and settings.metric == "l2" and settings.horizon == 3


def test_shipped_model_end_to_end(tmp_path):
    """The README's command with the shipped model: two episodes, JSON and videos."""
    out = tmp_path / "metrics.json"
    result = run_cli("-m", "planners.mpc", "--env", "reach", "--episodes", "2", "--json",
                     str(out), "--video", str(tmp_path / "videos"), "cem.iterations=2",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "success (end)" in result.stdout
    metrics = json.loads(out.read_text())
    assert metrics["checkpoint"] == "reach" and metrics["episodes"] == 2
    assert len(metrics["records"]) == 2
    assert 0.0 <= metrics["success_rate"] <= 1.0 and metrics["plan_ms_median"] > 0
    import decord
    from PIL import Image

    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 2
    reader = decord.VideoReader(str(videos[0]))
    assert len(reader) == 51  # the start and every one of the 50 env steps
    # frame | goal | the plan's predicted end (the reach model has a readout) at 4x, labels
    # above, the caption below
    height, width = reader[0].shape[:2]
    assert width >= 3 * 64 * 4 and height > 64 * 4 + 40
    gifs = sorted((tmp_path / "videos").glob("*.gif"))
    assert [g.name for g in gifs] == ["episode_0000.gif"]  # the first episode only
    with Image.open(gifs[0]) as gif:
        assert gif.n_frames == 51 and gif.size == (width, height)
    first, last = reader[0].asnumpy(), reader[50].asnumpy()
    assert not np.array_equal(first[-40:], last[-40:])  # the caption changes (step, energy)


def test_reacher_shipped_model_end_to_end(tmp_path):
    """gym:Reacher-v5 with its shipped model and the model's own planning settings."""
    out = tmp_path / "metrics.json"
    result = run_cli("-m", "planners.mpc", "--env", "gym:Reacher-v5", "--episodes", "1",
                     "--budget", "10", "--json", str(out), "cem.iterations=2", "--quiet")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(out.read_text())
    assert metrics["checkpoint"] == "gym:Reacher-v5" and metrics["env"] == "jepa_world/Reacher-v5"
    assert metrics["settings"]["horizon"] == 5 and metrics["settings"]["frameskip"] == 2
    assert metrics["settings"]["energy_steps"] == "all"  # neither the command nor the model set it
    assert metrics["settings"]["polish_steps"] == 2
    assert metrics["settings"]["polish_method"] == "gauss_newton"
    assert metrics["settings"]["samples"] == 64  # the model's search size
    assert metrics["readout_weight"] == 0.3  # its state readout, at the weight it ships with
    assert "+ readout (weight 0.3)" in result.stdout
    assert "final_joint_error_mean" in metrics and "final joint error" in result.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--env", "gym:Pusher-v5"], "no shipped world model for gym:Pusher-v5"),
        (["--env", "gym:Reacher-v5", "--checkpoint", "reach"],
         "trained on jepa_world/Reach-v0, not on jepa_world/Reacher-v5"),
        (["--env", "gym:Pusher-v5", "--model", "random", "--goal", "offset"],
         "unknown goal protocol 'offset' for gym:Pusher-v5 (known: gym)"),
        (["--env", "reach", "horizon=zero"], "bad configuration"),
    ],
)
def test_task_mismatches_are_one_line(args, needle):
    result = run_cli("-m", "planners.mpc", "--episodes", "1", "--quiet", *args)
    assert_one_line_error(result, needle)


def test_eval_seeds_never_reach_recording_seeds():
    from planners.episodes import MAX_EVAL_SEED

    assert mpc.eval_seed(0, 0) == 1_000_000
    assert mpc.eval_seed(MAX_EVAL_SEED, 9_999) < 10**12  # below the distillation's seeds
    for bad in ((-1, 0), (-100, 5), (MAX_EVAL_SEED + 1, 0), (0, -1), (0, 10_000)):
        with pytest.raises(ValueError):
            mpc.eval_seed(*bad)


def test_exact_dynamics_with_a_learned_energy(tmp_path):
    """oracle.energy_model: the simulator's states, rendered and scored by the world model."""
    import torch

    import envs
    from jepa_world import WorldModel
    from planners.exact_dynamics import LearnedEnergyOracle

    task = envs.make_task("reach", image_size=64)
    task.reset(seed=3)
    model = WorldModel.load("reach")
    oracle = LearnedEnergyOracle(task, model)
    here = oracle.encode_state(task.get_state()[0][None])
    there = oracle.encode_state((task.get_state()[0] + 0.8)[None])
    pair = torch.cat([here, there])  # [2,1,S]
    distance = oracle.distance(pair, here, "l2")
    assert distance.shape == (2,) and float(distance[0]) == 0.0 and float(distance[1]) > 0
    frames = torch.from_numpy(np.stack([task.render_state(q) for q in
                                        pair[:, 0, : oracle.nq].numpy()]))
    expected = model.energy(model.encode(frames), model.encode(frames[:1]), "l2")
    assert torch.allclose(distance.float(), expected, atol=1e-6)
    task.close()
    metrics_file = tmp_path / "m.json"
    result = run_cli("-m", "planners.mpc", "--env", "reach", "--model", "oracle", "--episodes",
                     "1", "--budget", "5", "--quiet", "oracle.energy_model=reach", "horizon=1",
                     "cem.samples=8", "cem.elites=2", "cem.iterations=1",
                     "--json", str(metrics_file))
    assert result.returncode == 0, result.stderr
    assert "+ energy of reach on rendered states" in result.stdout
    assert json.loads(metrics_file.read_text())["oracle_energy_model"] == "reach"
    missing = run_cli("-m", "planners.mpc", "--env", "reach", "--model", "oracle",
                      "oracle.energy_model=" + str(tmp_path / "none"))
    assert_one_line_error(missing, "cannot load world model")


def test_the_summary_reads_as_a_table():
    # One episode is "1 episode"; long metric names (push) no longer push their values right.
    from planners.mpc import summary_text

    metrics = {"env": "jepa_world/Push-v0", "model": "learned", "checkpoint": None,
               "planner": "cem", "goal_protocol": "offset", "budget": 50, "episodes": 1,
               "seed": 0, "success_rate": 0.0, "success_any_rate": 1.0, "plan_ms_median": 300.0,
               "plan_ms_p90": 400.0, "note": "",
               "timing": {"envs_per_replan": 1, "encode_ms_per_replan": 5.0,
                          "model_ms_per_replan": 290.0},
               "metric_names": ["block_position_error", "block_angle_error"],
               "metric_units": {"block_position_error": "m", "block_angle_error": "rad"},
               "final_block_position_error_mean": 0.05, "final_block_position_error_median": 0.04,
               "final_block_angle_error_mean": 0.3, "final_block_angle_error_median": 0.2}
    text = summary_text(metrics)
    assert "| 1 episode, seed 0" in text
    rows = [line for line in text.splitlines() if line.startswith("  ")]
    labels = ["success (end)", "success (any step)", "final block position error",
              "final block angle error", "replanning"]
    width = max(len(label) for label in labels)
    assert [row[2 : 2 + width].rstrip() for row in rows] == labels  # one label column
    assert all(row[2 + width] == " " for row in rows)


def test_the_energy_slice_plot(tmp_path):
    from PIL import Image

    out = tmp_path / "energy.png"
    result = run_cli("-m", "planners.plot", "--env", "reach", "--grid", "5", "--out", str(out),
                     "horizon=1")
    assert result.returncode == 0, result.stderr
    assert "energy of 25 held actions; the energy's minimum is" in result.stdout
    with Image.open(out) as image:  # frame, goal, energy, true cost side by side
        assert image.format == "PNG" and image.size[0] > 3 * image.size[1]
    assert_one_line_error(run_cli("-m", "planners.plot", "--env", "reach", "--grid", "1"),
                          "--grid must be in [2, 101]")
    assert_one_line_error(run_cli("-m", "planners.plot", "--env", "reach", "cem.sample=3"),
                          "did you mean 'cem.samples'")


def test_slice_candidates_hold_one_action_everywhere():
    from planners.plot import constant_candidates

    axis, candidates = constant_candidates(3, horizon=2, frameskip=4, action_dim=3,
                                           low=-1.0, high=1.0)
    assert axis.tolist() == [-1.0, 0.0, 1.0] and candidates.shape == (9, 2, 4, 3)
    assert candidates[5, 1, 3].tolist() == [0.0, 1.0, 0.0]  # row 1, column 2: (0, 1, 0)
    assert bool((candidates == candidates[:, :1, :1]).all())
