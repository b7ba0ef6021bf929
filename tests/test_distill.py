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
    state = json.loads((copy / "state.json").read_text())  # as recorded before these settings
    for key in ("loss", "still_goals", "clip_grad"):
        del state["config"]["imagination"][key]
    (copy / "state.json").write_text(json.dumps(state))
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


def test_the_student_proposes_sequences_that_the_planner_scores(distilled, model_dir, tmp_path):
    """The student rolled out in the world model is a proposal: block-held actions in the box,
    scored at every replanning step of ``planners.mpc proposal=DIR``."""
    import torch

    from jepa_world.rl.student import StudentPolicy
    from jepa_world.world_model import WorldModel

    model = WorldModel.load(model_dir)
    student = StudentPolicy.load(distilled / "policy", model)
    propose = student.proposal(model, 3)
    z, goal = torch.randn(2, *model.latent_shape), torch.randn(2, *model.latent_shape)
    proprio = torch.randn(2, model.proprio_dim)
    actions = propose(z, goal, proprio)
    assert actions.shape == (2, 3, model.frameskip, model.action_dim)
    assert torch.equal(actions, actions[:, :, :1].expand_as(actions))  # held within a block
    assert actions.abs().max() <= 1.0
    first = student.net(torch.cat([z.flatten(1), proprio, goal.flatten(1)], 1))
    torch.testing.assert_close(actions[:, 0, 0], first)

    report = tmp_path / "m.json"
    result = run_cli("-m", "planners.mpc", "--env", "reach", "--checkpoint", str(model_dir),
                     "--episodes", "1", "--budget", "10", "--quiet", "--json", str(report),
                     "image_size=32", f"proposal={distilled / 'policy'}", "cem.samples=8",
                     "cem.elites=2", "cem.iterations=1", "horizon=2")
    assert result.returncode == 0, result.stderr
    assert json.loads(report.read_text())["proposal"] == str(distilled / "policy")
    gradient = run_cli("-m", "planners.mpc", "--env", "reach", "--checkpoint", str(model_dir),
                       "--planner", "gradient", f"proposal={distilled / 'policy'}")
    assert_one_line_error(gradient, "sampling planner")


def test_the_student_finishes_the_planners_sequences(distilled, model_dir, tmp_path):
    """``planners.mpc tail=DIR``: the student continues every scored sequence for
    ``tail_blocks`` blocks (its actions held per block); recorded in the metrics; refused with
    the gradient planner, the oracle and bad block counts."""
    import torch

    from jepa_world.rl.student import StudentPolicy
    from jepa_world.world_model import WorldModel

    model = WorldModel.load(model_dir)
    student = StudentPolicy.load(distilled / "policy", model)
    tail = student.tail(model, 2)
    z, goal = torch.randn(3, *model.latent_shape), torch.randn(3, *model.latent_shape)
    proprio = torch.randn(3, model.proprio_dim)
    block = tail.act(z, proprio, goal)
    assert tail.blocks == 2 and block.shape == (3, model.frameskip, model.action_dim)
    torch.testing.assert_close(block[:, 0], student.net(torch.cat([z.flatten(1), proprio,
                                                                   goal.flatten(1)], 1)))
    assert torch.equal(block, block[:, :1].expand_as(block))

    report = tmp_path / "m.json"
    result = run_cli("-m", "planners.mpc", "--env", "reach", "--checkpoint", str(model_dir),
                     "--episodes", "1", "--budget", "10", "--quiet", "--json", str(report),
                     "image_size=32", f"tail={distilled / 'policy'}", "tail_blocks=2",
                     "cem.samples=8", "cem.elites=2", "cem.iterations=1", "horizon=2")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(report.read_text())
    assert metrics["tail"] == str(distilled / "policy") and metrics["tail_blocks"] == 2
    assert f"planner cem + tail {distilled / 'policy'} (2 blocks)" in result.stdout
    for bad, needle in [(["--planner", "gradient"], "sampling planner"),
                        (["--model", "oracle"], "sampling planner"),
                        (["tail_blocks=0"], "tail_blocks must be a positive integer"),
                        (["step_weights=[1,2]", "horizon=2", "energy_steps=all"],
                         "step_weights=null")]:
        refused = run_cli("-m", "planners.mpc", "--env", "reach", "--checkpoint", str(model_dir),
                          "image_size=32", f"tail={distilled / 'policy'}", *bad)
        assert_one_line_error(refused, needle)


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


def test_a_student_refuses_a_world_model_it_was_not_distilled_on(distilled, model_dir, tmp_path):
    import torch

    from jepa_world.rl.student import StudentPolicy
    from jepa_world.world_model import WorldModel

    model = WorldModel.load(model_dir)
    config = json.loads((distilled / "policy" / "config.json").read_text())
    assert config["world_model_fingerprint"] == model.fingerprint()
    model.config.planning = {"horizon": 7}  # planner settings do not change what latents mean
    assert model.fingerprint() == config["world_model_fingerprint"]
    with torch.no_grad():
        next(model.predictor.parameters()).add_(1e-3)
    rebuilt = model.save(tmp_path / "rebuilt")
    with pytest.raises(ValueError, match="distilled on another world model"):
        StudentPolicy.load(distilled / "policy", WorldModel.load(rebuilt))
    refused = run_cli("-m", "planners.mpc", "--env", "reach", "--checkpoint", str(rebuilt),
                      "image_size=32", f"tail={distilled / 'policy'}")
    assert_one_line_error(refused, "distilled on another world model")
    del config["world_model_fingerprint"]  # saved before fingerprints: loads unchecked
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps(config))
    (old / "weights.safetensors").write_bytes(
        (distilled / "policy" / "weights.safetensors").read_bytes())
    assert StudentPolicy.load(old, WorldModel.load(rebuilt)).config.world_model_fingerprint is None


def test_resuming_on_a_changed_world_model_is_one_line(distilled, model_dir, tmp_path):
    import shutil

    import torch

    from jepa_world.world_model import WorldModel

    model = WorldModel.load(model_dir)
    with torch.no_grad():
        next(model.predictor.parameters()).add_(1e-3)
    changed = model.save(tmp_path / "wm")  # rebuilt in place of the one the run used
    run = tmp_path / "run"
    shutil.copytree(distilled, run)
    state = json.loads((run / "state.json").read_text())
    state["config"]["world_model"] = str(changed)
    (run / "state.json").write_text(json.dumps(state))
    result = run_cli("-m", "jepa_world.distill", f"world_model={changed}", f"out_dir={run}",
                     *TINY)
    assert_one_line_error(result, "cannot resume", "distilled on another world model")


def test_a_shipped_name_without_a_student_is_one_line():
    from jepa_world.rl.student import resolve_student_dir

    with pytest.raises(FileNotFoundError, match="the shipped push model comes with no distilled"):
        resolve_student_dir("push")
    result = run_cli("-m", "planners.mpc", "--env", "push", "--policy", "push")
    assert_one_line_error(result, "comes with no distilled policy")


def test_install_puts_the_policy_beside_its_world_model(distilled, model_dir, tmp_path,
                                                        monkeypatch):
    import jepa_world.distill as distill
    from jepa_world.rl.student import StudentPolicy
    from jepa_world.world_model import WorldModel

    shipped = tmp_path / "assets" / "tiny"  # stands in for jepa_world/assets/<task>
    monkeypatch.setattr(distill, "resolve_model_dir", lambda name: shipped)
    student = StudentPolicy.load(distilled / "policy", WorldModel.load(model_dir))
    summary = {"imagination": [], "rounds": [{"round": 0}]}
    target = distill.install_student(student, "tiny", {"seed": 0}, summary)
    assert target == shipped / "student"
    (target / "stale.txt").write_text("from the previous install")
    target = distill.install_student(student, "tiny", {"seed": 1}, summary)  # replaces it whole
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "provenance.json",
                                                         "weights.safetensors"]
    assert [p.name for p in shipped.iterdir()] == ["student"]  # no staging folder left
    provenance = json.loads((target / "provenance.json").read_text())
    assert provenance["distill_config"] == {"seed": 1} and provenance["rounds"] == [{"round": 0}]
    installed = StudentPolicy.load(target, student.world_model)
    assert installed.config.world_model_fingerprint == student.world_model.fingerprint()
    student.config.world_model_fingerprint = "0" * 16
    with pytest.raises(distill.UserError, match="distilled on another tiny model"):
        distill.install_student(student, "tiny", {}, summary)
    assert StudentPolicy.load(target, student.world_model)  # the installed one is untouched
    refused = run_cli("-m", "jepa_world.distill", f"world_model={model_dir}",
                      f"out_dir={tmp_path / 'x'}", "install=true")
    assert_one_line_error(refused, "install=true puts the policy beside a shipped world model")


def imagination_parts(small_dataset):
    from jepa_world.rl.amortized import ImaginationSettings, RecordedFrames
    from jepa_world.rl.imagined import ImaginedStarts
    from jepa_world.rl.student import StudentConfig, StudentNet
    from planners.policies import PlannerPolicy

    model = tiny_model(env_id="jepa_world/Reach-v0")
    frames = RecordedFrames(ImaginedStarts(model, small_dataset), model.frameskip, proprio=True)
    tokens, width = model.latent_shape
    config = StudentConfig(world_model="tiny", tokens=tokens, width=width, proprio_dim=6,
                           action_dim=2, frameskip=5, hidden=32)
    objective = PlannerPolicy(model, "cem", horizon=2).settings
    settings = ImaginationSettings(steps=12, batch_size=16, horizon=2, checkpoint_every=6,
                                   clip_grad=1.0)
    return model, frames, config, StudentNet, objective, settings


def test_imagination_lowers_the_planners_energy_and_resumes_exactly(small_dataset, tmp_path):
    import torch

    from jepa_world.rl.amortized import train_in_imagination

    model, frames, config, net_class, objective, settings = imagination_parts(small_dataset)
    torch.manual_seed(0)
    straight = net_class(config)
    history = train_in_imagination(straight, model, frames, settings, objective, seed=1)
    assert [h["step"] for h in history] == [6, 12]
    torch.manual_seed(0)
    split = net_class(config)
    train_in_imagination(split, model, frames, settings, objective, seed=1,
                         checkpoint=tmp_path / "imagination.pt", stop_at_step=6)
    state = torch.load(tmp_path / "imagination.pt", weights_only=True)
    assert state["step"] == 6
    torch.manual_seed(0)
    fresh = net_class(config)
    train_in_imagination(fresh, model, frames, settings, objective, seed=1,
                         checkpoint=tmp_path / "imagination.pt")
    for key, value in straight.state_dict().items():
        assert torch.allclose(value, fresh.state_dict()[key], atol=1e-6), key
    # descending the planner's own objective, on batches it has not seen
    torch.manual_seed(0)
    untrained = net_class(config)
    untrained.input_mean.copy_(fresh.input_mean)
    assert energy_of(fresh, model, frames, objective) < energy_of(untrained, model, frames,
                                                                  objective)


def test_goal_draws_later_frames_anywhere_or_the_start_itself(small_dataset):
    import torch

    from jepa_world.rl.amortized import ImaginationSettings

    frames = imagination_parts(small_dataset)[1]

    def draw(uniform: float, still: float):
        return frames.draw(np.random.default_rng(3), 400, 6, uniform, still)

    z, _, goal = draw(0.0, 0.0)
    same = (goal == z).flatten(1).all(1)
    assert not same.any()  # always a later frame of the same recording
    z_old, _, goal_old = frames.draw(np.random.default_rng(3), 400, 6, 0.0)
    assert torch.equal(goal_old, goal) and torch.equal(z_old, z)  # the default draw is unchanged
    z, _, goal = draw(0.0, 1.0)
    assert torch.equal(goal, z)
    z, _, goal = draw(0.5, 0.25)
    fraction = float((goal == z).flatten(1).all(1).float().mean())
    assert 0.17 < fraction < 0.33
    with pytest.raises(ValueError, match="still_goals must be in"):
        ImaginationSettings(still_goals=1.5).validate()
    with pytest.raises(ValueError, match="at most 1"):
        ImaginationSettings(uniform_goals=0.6, still_goals=0.6).validate()
    with pytest.raises(ValueError, match="clip_grad must be >= 0"):
        ImaginationSettings(clip_grad=float("nan")).validate()


def test_root_loss_keeps_the_minimum_and_its_gradient_near_the_goal():
    import torch

    from jepa_world.rl.amortized import ImaginationSettings, imagination_loss
    from planners.energy import Energy

    energy = Energy("l2", "all", (1.0, 3.0))
    root = imagination_loss(energy, "root")
    assert imagination_loss(energy, "energy") is energy
    goal = torch.randn(4, 3, 8)
    predicted = goal.unsqueeze(1).repeat(1, 2, 1, 1)
    assert torch.allclose(root(predicted, goal), torch.zeros(4), atol=1e-5)
    offset = torch.randn(4, 2, 3, 8)
    per_block = energy.per_block(predicted + offset, goal)
    expected = (per_block.sqrt() * torch.tensor([1.0, 3.0])).sum(1) / 4.0
    assert torch.allclose(root(predicted + offset, goal), expected, atol=1e-6)
    # near the goal the squared energy's gradient vanishes with the distance, the root's does not
    grads = {}
    for scale in (1e-1, 1e-3):
        for kind in ("energy", "root"):
            x = (predicted + scale * offset).requires_grad_(True)
            imagination_loss(energy, kind)(x, goal).sum().backward()
            grads[kind, scale] = float(x.grad.norm())
    assert grads["energy", 1e-3] < 0.02 * grads["energy", 1e-1]
    assert grads["root", 1e-3] > 0.5 * grads["root", 1e-1]
    with pytest.raises(ValueError, match="imagination.loss must be one of energy, root"):
        ImaginationSettings(loss="huber").validate()


def test_imagination_descends_the_root_loss(small_dataset):
    import torch

    from jepa_world.rl.amortized import train_in_imagination

    model, frames, config, net_class, objective, settings = imagination_parts(small_dataset)
    settings.loss = "root"
    torch.manual_seed(0)
    trained = net_class(config)
    history = train_in_imagination(trained, model, frames, settings, objective, seed=1)
    torch.manual_seed(0)
    untrained = net_class(config)
    untrained.input_mean.copy_(trained.input_mean)
    assert history[-1]["energy"] < history[0]["energy"]
    assert (energy_of(trained, model, frames, objective, "root")
            < energy_of(untrained, model, frames, objective, "root"))


def energy_of(net, model, frames, objective, loss: str = "energy") -> float:
    import torch

    from jepa_world.rl.amortized import imagination_loss, policy_inputs

    z, proprio, goal = frames.draw(np.random.default_rng(99), 64, 6, 0.0)
    with torch.no_grad():
        predicted, _ = model.rollout_policy(
            z, lambda latent, p: net(policy_inputs(latent, p, goal)).unsqueeze(1).expand(-1, 5, -1),
            2, proprio)
        return float(imagination_loss(objective.objective(model), loss)(predicted, goal).mean())


def test_distill_with_imagination_only(small_dataset, tmp_path):
    model_dir = tiny_model(env_id="jepa_world/Reach-v0").save(tmp_path / "wm")
    out = tmp_path / "run"
    args = [f"world_model={model_dir}", f"out_dir={out}", "rounds=0", "progress=false",
            f"imagination.data=[{small_dataset}]", "imagination.steps=4",
            "imagination.batch_size=8", "imagination.checkpoint_every=2",
            "+planner_settings.horizon=2", "imagination.horizon=2"]
    result = run_cli("-m", "jepa_world.distill", *args)
    assert result.returncode == 0, result.stderr
    state = json.loads((out / "state.json").read_text())
    assert state["rounds"] == [] and [h["step"] for h in state["imagination"]] == [2, 4]
    assert (out / "policy" / "weights.safetensors").is_file()
    again = run_cli("-m", "jepa_world.distill", *args)
    assert again.returncode == 0 and "resuming" in again.stderr
    missing = run_cli("-m", "jepa_world.distill", args[0], f"out_dir={tmp_path / 'b'}",
                      "rounds=0", f"imagination.data=[{tmp_path / 'nothing'}]")
    assert_one_line_error(missing, "imagination.data")


def test_a_round_killed_before_its_commit_is_redone_once(model_dir, distilled, tmp_path):
    """Killed after round 1's labels were saved but before state.json said so: the resume
    keeps round 0's labels only and labels round 1 once."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(distilled, copy)
    state = json.loads((copy / "state.json").read_text())
    state["rounds"] = state["rounds"][:1]
    (copy / "state.json").write_text(json.dumps(state))
    again = run_cli("-m", "jepa_world.distill", f"world_model={model_dir}", f"out_dir={copy}",
                    *TINY)
    assert again.returncode == 0, again.stderr
    rounds = json.loads((copy / "state.json").read_text())["rounds"]
    assert [r["labels"] for r in rounds] == [20, 24]
    with np.load(copy / "labels.npz") as data:
        assert np.bincount(data["rounds"]).tolist() == [20, 4]


def test_a_pending_policy_is_kept_only_when_its_round_was_committed(tmp_path):
    from jepa_world.distill import PENDING, PENDING_ROUND, POLICY, settle_pending_policy

    def pending(round_index):
        (tmp_path / PENDING).mkdir()
        (tmp_path / PENDING / "weights").write_text(f"round {round_index}")
        (tmp_path / PENDING / PENDING_ROUND).write_text(json.dumps({"round": round_index}))

    (tmp_path / POLICY).mkdir()
    (tmp_path / POLICY / "weights").write_text("round 0")
    pending(1)
    settle_pending_policy(tmp_path, done=1)  # round 1 never committed
    assert (tmp_path / POLICY / "weights").read_text() == "round 0"
    assert not (tmp_path / PENDING).exists()
    pending(1)
    settle_pending_policy(tmp_path, done=2)  # committed: it becomes the policy
    assert (tmp_path / POLICY / "weights").read_text() == "round 1"
    assert sorted(p.name for p in tmp_path.iterdir()) == [POLICY]
    assert sorted(p.name for p in (tmp_path / POLICY).iterdir()) == ["weights"]


def test_a_second_run_on_the_same_out_dir_is_refused(model_dir, tmp_path):
    from jepa_world.files import exclusive

    out = tmp_path / "run"
    out.mkdir()
    with exclusive(out, "a first run"):
        second = run_cli("-m", "jepa_world.distill", f"world_model={model_dir}",
                         f"out_dir={out}", *TINY)
    assert_one_line_error(second, "another jepa_world.distill run is already writing")
    assert not (out / "state.json").exists()
