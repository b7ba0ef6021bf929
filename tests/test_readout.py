"""The state readout: fitted on recordings, read off predicted and goal latents alike, and
added to the planners' energy."""

from __future__ import annotations

import json

import pytest
import torch

from jepa_world.readout import (
    ReadoutConfig,
    StateReadout,
    coordinate_errors,
    fit_readout,
    joint_features,
    periodic_coordinates,
)
from planners.energy import Energy, readout_term
from tests.conftest import assert_one_line_error, run_cli
from tests.test_rl import tiny_model


@pytest.fixture(scope="module")
def fitted(small_dataset):
    from jepa_world.data.episodes import EpisodeDataset

    model = tiny_model(env_id="jepa_world/Reach-v0")
    readout = fit_readout(model, [EpisodeDataset(small_dataset)], [True, False], steps=300)
    return model, readout


def test_free_joints_are_read_as_cos_sin_and_limited_ones_as_angles():
    import envs

    task = envs.make_task("reach", image_size=32)
    assert periodic_coordinates(task) == [True, False]  # shoulder turns freely, elbow limited
    task.close()
    qpos = torch.tensor([[3.0, -2.5], [-3.0, 2.5]])
    features = joint_features(qpos, [True, False])
    assert features.shape == (2, 3)
    errors = coordinate_errors(features, qpos + torch.tensor([2 * torch.pi, 0.0]), [True, False])
    assert all(float(e.max()) < 1e-5 for e in errors)  # a full turn is no error


def test_the_readout_learns_the_joints_and_records_its_validation(fitted, small_dataset):
    from jepa_world.data.episodes import EpisodeDataset

    model, readout = fitted
    validation = readout.config.validation  # the last of the 4 episodes is held out
    assert validation["episodes"] == 1 and len(validation["median"]) == 2
    data = EpisodeDataset(small_dataset)
    qpos = [torch.as_tensor(data.arrays(e)["qpos"], dtype=torch.float32) for e in range(3)]
    with torch.no_grad():
        z = torch.cat([model.encode(torch.from_numpy(data.frames(e)).unsqueeze(0))[0]
                       for e in range(3)])
        errors = coordinate_errors(readout(z), torch.cat(qpos), [True, False])
    features = joint_features(torch.cat(qpos), [True, False])
    constant = coordinate_errors(features.mean(0, keepdim=True).expand(len(features), -1),
                                 torch.cat(qpos), [True, False])
    for fitted_error, constant_error in zip(errors, constant, strict=True):
        assert float(fitted_error.mean()) < 0.5 * float(constant_error.mean())


def test_the_energy_adds_the_readout_term_away_from_the_goal(fitted):
    model, readout = fitted
    model = tiny_model(env_id="jepa_world/Reach-v0").attach_readout(readout)
    goal = torch.randn(1, *model.latent_shape)
    far = torch.randn(3, 2, *model.latent_shape) * 3
    class Settings:
        metric, energy_steps, step_weights = "l2", "all", None
        readout_weight = None  # the readout's own weight

    plain = Energy()
    with_term = Energy.for_model(Settings(), model)
    assert with_term.extra is not None
    assert torch.allclose(with_term(goal.unsqueeze(1), goal), torch.zeros(1))  # zero at the goal
    assert bool((with_term(far, goal) >= plain(far, goal)).all())
    expected = plain(far, goal) + readout.term(far, goal.unsqueeze(1), 10.0).mean(-1)
    assert torch.allclose(with_term(far, goal), expected, atol=1e-5)
    Settings.readout_weight = 0.0
    assert Energy.for_model(Settings(), model).extra is None  # 0 switches it off
    with pytest.raises(ValueError, match="readout_weight needs a world model with a state"):
        readout_term(1.0, tiny_model())
    with pytest.raises(ValueError, match="readout_weight must be finite and >= 0"):
        readout_term(-1.0, model)


def test_a_saved_readout_travels_with_its_world_model(fitted, tmp_path):
    from jepa_world.world_model import WorldModel

    model, readout = fitted
    folder = model.save(tmp_path / "wm")
    readout.save(folder / "readout")
    loaded = WorldModel.load(folder).to("cpu")
    assert loaded.readout is not None and loaded.fingerprint() == model.fingerprint()
    assert not any(k.startswith("readout") or "_attached" in k for k in loaded.state_dict())
    z = torch.randn(4, *model.latent_shape)
    assert torch.allclose(loaded.readout(z), readout(z), atol=1e-6)
    with torch.no_grad():
        next(loaded.predictor.parameters()).add_(1e-3)
    with pytest.warns(UserWarning, match="not saved"):
        rebuilt = loaded.save(tmp_path / "rebuilt")
    readout.save(rebuilt / "readout")
    with pytest.raises(ValueError, match="fitted on another world model"):
        WorldModel.load(rebuilt)
    config = json.loads((folder / "readout" / "config.json").read_text())
    config["latent_size"] = 7
    (folder / "readout" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="reads 7 latent values"):
        WorldModel.load(folder)
    (folder / "readout" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="state readout in .* is unusable"):
        WorldModel.load(folder)


def test_saving_a_loaded_model_keeps_its_readout_and_provenance(fitted, tmp_path):
    # README: wm.save("my_model") writes weights, config and provenance; a model loaded with a
    # readout used to lose it there, so --checkpoint my_model planned without it.
    from jepa_world.world_model import WorldModel

    model, readout = fitted
    folder = model.save(tmp_path / "wm", provenance={"built": "test", "steps": 3})
    readout.save(folder / "readout")
    loaded = WorldModel.load(folder)
    copy = loaded.save(tmp_path / "my_model")
    again = WorldModel.load(copy)
    assert again.readout is not None
    z = torch.randn(2, *model.latent_shape)
    assert torch.allclose(again.readout(z), readout(z), atol=1e-6)
    provenance = json.loads((copy / "provenance.json").read_text())
    assert provenance["built"] == "test" and provenance["steps"] == 3
    assert provenance["saved_by"]["loaded_from"] == str(folder)
    assert provenance["saved_by"]["fingerprint"] == model.fingerprint()
    assert again.provenance() == provenance
    with torch.no_grad():  # changed weights: the readout no longer fits and stays behind
        next(loaded.predictor.parameters()).add_(1e-3)
    with pytest.warns(UserWarning, match="refit it"):
        changed = loaded.save(tmp_path / "changed")
    assert WorldModel.load(changed).readout is None
    fresh = tiny_model(env_id="jepa_world/Reach-v0").save(tmp_path / "fresh")
    assert "saved_by" in json.loads((fresh / "provenance.json").read_text())


def test_planners_mpc_plans_with_the_readout_and_reports_it(fitted, tmp_path):
    model, readout = fitted
    folder = model.save(tmp_path / "wm")
    readout.save(folder / "readout")
    report = tmp_path / "m.json"
    result = run_cli("-m", "planners.mpc", "--env", "reach", "--checkpoint", str(folder),
                     "--episodes", "1", "--budget", "10", "--quiet", "--json", str(report),
                     "image_size=32", "cem.samples=16", "cem.elites=4", "cem.iterations=2")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(report.read_text())
    assert metrics["readout_weight"] == ReadoutConfig(1, [True]).weight
    assert "+ readout (weight 10)" in result.stdout
    bare = model.save(tmp_path / "bare")
    refused = run_cli("-m", "planners.mpc", "--env", "reach", "--checkpoint", str(bare),
                      "image_size=32", "readout_weight=1")
    assert_one_line_error(refused, "readout_weight needs a world model with a state readout")


def test_the_readout_command(small_dataset, tmp_path):
    model_dir = tiny_model(env_id="jepa_world/Reach-v0").save(tmp_path / "wm")
    out = tmp_path / "readout"
    result = run_cli("-m", "jepa_world.readout", "--env", "reach", "--data", str(small_dataset),
                     "--world-model", str(model_dir), "--out", str(out), "--steps", "20",
                     "--margin", "0.04")
    assert result.returncode == 0, result.stderr
    assert "validation error per qpos coordinate" in result.stdout
    config = StateReadout.load(out, tiny_model(env_id="jepa_world/Reach-v0")).config
    assert config.periodic == [True, False] and config.margin == 0.04 and config.weight == 10
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["data"][0]["episodes"] == 4 and "--margin" in provenance["command"]
    negative = run_cli("-m", "jepa_world.readout", "--env", "reach", "--data", str(small_dataset),
                       "--world-model", str(model_dir), "--out", str(out), "--margin", "-1")
    assert_one_line_error(negative, "--margin must be finite and >= 0")
    missing = run_cli("-m", "jepa_world.readout", "--env", "reach", "--data", str(tmp_path / "no"),
                      "--world-model", str(model_dir), "--out", str(out))
    assert_one_line_error(missing)
    zero = run_cli("-m", "jepa_world.readout", "--env", "reach", "--data", str(small_dataset),
                   "--world-model", str(model_dir), "--out", str(out), "--steps", "0")
    assert_one_line_error(zero, "--steps must be a positive integer")


def test_the_shipped_reach_model_carries_a_readout_fitted_on_it():
    """A rebuilt reach model without a refitted readout fails here (and refuses to load)."""
    from jepa_world.world_model import WorldModel, resolve_model_dir

    readout = WorldModel.load("reach").readout
    assert readout is not None and readout.config.periodic == [True, False]
    assert max(readout.config.validation["median"]) < 0.05  # radians, on held-out recordings
    provenance = json.loads((resolve_model_dir("reach") / "readout" / "provenance.json").read_text())
    assert provenance["command"][:3] == ["python", "-m", "jepa_world.readout"]


@pytest.mark.parametrize("change, needle", [
    ({"weight": float("nan")}, "weight must be a finite number >= 0"),
    ({"margin": -5}, "margin must be a finite number >= 0"),
    ({"hidden": "256"}, "hidden must be an integer >= 1"),
    ({"periodic": "yes"}, "periodic must be a list of true/false"),
])
def test_an_edited_readout_config_is_refused_naming_the_field(fitted, tmp_path, change, needle):
    import json

    from jepa_world.world_model import WorldModel

    model, readout = fitted
    folder = model.save(tmp_path / "wm")
    readout.save(folder / "readout")
    config = json.loads((folder / "readout" / "config.json").read_text())
    (folder / "readout" / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ValueError, match=f"state readout in .* is unusable: {needle}"):
        WorldModel.load(folder)


def test_an_edited_student_config_is_refused_naming_the_field():
    from jepa_world.rl.student import StudentConfig

    good = dict(world_model="reach", tokens=4, width=8, proprio_dim=2, action_dim=2, frameskip=5)
    StudentConfig(**good)
    for change, needle in (({"action_high": float("nan")}, "action_high must be a finite"),
                           ({"action_low": 1.0}, "must be below action_high"),
                           ({"depth": "2"}, "depth must be an integer"),
                           ({"proprio_dim": -1}, "proprio_dim must be an integer >= 0")):
        with pytest.raises(ValueError, match=needle):
            StudentConfig(**{**good, **change})


def test_features_turn_back_into_joint_positions():
    from jepa_world.readout.model import features_to_qpos

    qpos = torch.tensor([[3.0, -2.5], [-1.0, 0.5]])
    back = features_to_qpos(joint_features(qpos, [True, False]), [True, False])
    assert torch.allclose(back, qpos, atol=1e-6)
