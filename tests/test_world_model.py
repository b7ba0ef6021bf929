"""WorldModel API and python -m jepa_world.train_ac on a tiny recorded dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from jepa_world import WorldModel
from jepa_world.models.ac_predictor import ACPredictor
from jepa_world.world_model import WorldModelConfig, resolve_model_dir
from tests.conftest import assert_one_line_error, run_cli
from tests.test_pretrain import TINY

DECODER = {"decoder_width": 32, "decoder_frequencies": 8, "decoder_depth": 2}


def tiny_model(
    proprio_dim: int = 4, pool=(2, 2), decoder: bool = False, pool_mode: str = "mean"
) -> WorldModel:
    torch.manual_seed(0)
    config = WorldModelConfig(
        encoder={"size": "micro", "img_size": 32, "patch_size": 8, "num_frames": 2, "depth": 2},
        predictor={"embed_dim": 48, "depth": 2, "num_heads": 4, **(DECODER if decoder else {})},
        action_dim=2,
        frameskip=3,
        proprio_dim=proprio_dim,
        pool=None if pool is None else list(pool),
        pool_mode=pool_mode,
        proprio_mean=[0.1] * proprio_dim,
        proprio_std=[2.0] * proprio_dim,
    )
    model = WorldModel(config)
    with torch.no_grad():  # non-trivial dynamics: the residual head starts near zero otherwise
        model.predictor.frame_head.weight.normal_(0, 0.2)
    return model


@pytest.fixture(params=[False, True], ids=["transformer", "with_proprio_decoder"])
def model(request) -> WorldModel:
    return tiny_model(decoder=request.param)


def frames(b: int, t: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, 64, 64, 3), generator=g, dtype=torch.uint8)


def test_encode_shapes_and_layouts(model):
    k, d = model.latent_shape
    assert (k, d) == (4, 96)
    video = frames(2, 3)
    z = model.encode(video)
    assert z.shape == (2, 3, 4, 96) and not z.requires_grad
    single = model.encode(video[:, 0])
    torch.testing.assert_close(single, z[:, 0])
    as_float = video.permute(0, 1, 4, 2, 3).float() / 255
    torch.testing.assert_close(model.encode(as_float), z)
    full = tiny_model(pool=None)
    assert full.encode(video[:, 0]).shape == (2, 16, 96)


def test_rollout_equals_repeated_single_step_prediction(model):
    z0 = model.encode(frames(3, 1))[:, 0]
    actions = torch.rand(3, 5, 3, 2) * 2 - 1
    proprio = torch.randn(3, 4)
    rolled = model.rollout(z0, actions, proprio)
    assert rolled.shape == (3, 5, 4, 96)
    # Full recomputation: teacher-force the rollout's own predictions as the history.
    history = torch.cat([z0[:, None], rolled[:, :-1]], dim=1)
    recomputed = model.predictor(
        history, actions.flatten(2), _normalised_proprio_path(model, z0, actions, proprio)
    )[0]
    torch.testing.assert_close(recomputed, rolled, atol=1e-5, rtol=1e-5)
    first = model.predict(z0, actions[:, 0], proprio)
    torch.testing.assert_close(first, rolled[:, 0], atol=1e-6, rtol=1e-6)


def _normalised_proprio_path(model, z0, actions, proprio):
    """The proprio inputs a rollout feeds itself: the given one, then its own predictions."""
    p = (proprio - model.proprio_mean) / model.proprio_std
    path, z, cache = [p], z0, None
    for t in range(actions.shape[1] - 1):
        z, p, cache = model.predictor.step(z, actions[:, t].flatten(1), p, t, cache)
        path.append(p)
    return torch.stack(path, dim=1)


def test_later_actions_never_change_earlier_predictions(model):
    z0 = model.encode(frames(2, 1))[:, 0]
    proprio = torch.randn(2, 4)
    actions = torch.rand(2, 6, 3, 2) * 2 - 1
    changed = actions.clone()
    changed[:, 4:] = -changed[:, 4:]
    a, b = model.rollout(z0, actions, proprio), model.rollout(z0, changed, proprio)
    torch.testing.assert_close(a[:, :4], b[:, :4], atol=0, rtol=0)
    assert not torch.allclose(a[:, 4:], b[:, 4:])
    history = model.encode(frames(2, 6))
    p_hist = torch.randn(2, 6, 4)
    ta, tb = model.predict(history, actions, p_hist), model.predict(history, changed, p_hist)
    torch.testing.assert_close(ta[:, :4], tb[:, :4], atol=0, rtol=0)
    assert not torch.allclose(ta[:, 4:], tb[:, 4:])


def test_energy(model):
    z = torch.zeros(3, 2, 4, 96)
    goal = torch.ones(3, 4, 96)
    assert model.energy(z, goal).shape == (3, 2)
    torch.testing.assert_close(model.energy(z[:, 0], goal), torch.ones(3))
    torch.testing.assert_close(model.energy(z[:, 0], 2 * goal, metric="l2"), 4 * torch.ones(3))
    with pytest.raises(ValueError, match="unknown energy metric"):
        model.energy(z, goal, metric="cosine")


def test_gradients_only_when_inputs_ask(model):
    z0 = model.encode(frames(1, 1))[:, 0]
    actions = torch.zeros(1, 2, 3, 2, requires_grad=True)
    energy = model.energy(model.rollout(z0, actions, torch.zeros(1, 4))[:, -1], z0 + 1)
    energy.sum().backward()
    assert actions.grad is not None and actions.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    assert not model.rollout(z0, actions.detach(), torch.zeros(1, 4)).requires_grad


def test_stacked_cells_hold_every_token_of_the_cell_in_raster_order():
    mean, stack = tiny_model(), tiny_model(pool_mode="stack")
    stack.encoder.load_state_dict(mean.encoder.state_dict())
    full = tiny_model(pool=None)
    full.encoder.load_state_dict(mean.encoder.state_dict())
    assert stack.latent_shape == (4, 4 * 96)
    video = frames(2, 1)
    tokens = full.encode(video)[:, 0].reshape(2, 4, 4, 96)  # the 4x4 grid, raster order
    cells = stack.encode(video)[:, 0].reshape(2, 2, 2, 2, 2, 96)  # [cell h, cell w, in h, in w]
    torch.testing.assert_close(cells[:, 1, 0, 0, 1], tokens[:, 2, 1])
    torch.testing.assert_close(cells[:, 0, 1, 1, 0], tokens[:, 1, 2])
    torch.testing.assert_close(cells.mean(dim=(3, 4)).reshape(2, 4, 96), mean.encode(video)[:, 0])
    z0, actions = stack.encode(video)[:, 0], torch.rand(2, 3, 3, 2)
    assert stack.rollout(z0, actions, torch.ones(2, 4)).shape == (2, 3, 4, 384)
    with pytest.raises(ValueError, match="unknown pool_mode 'max'"):
        tiny_model(pool_mode="max")


def test_save_load_round_trip(tmp_path, model):
    z0 = model.encode(frames(2, 1))[:, 0]
    actions = torch.rand(2, 3, 3, 2)
    before = model.rollout(z0, actions, torch.ones(2, 4))
    model.save(tmp_path / "wm", provenance={"note": "test"})
    loaded = WorldModel.load(tmp_path / "wm")
    torch.testing.assert_close(loaded.encode(frames(2, 1))[:, 0], z0, atol=0, rtol=0)
    torch.testing.assert_close(
        loaded.rollout(z0, actions, torch.ones(2, 4)), before, atol=0, rtol=0
    )
    assert json.loads((tmp_path / "wm" / "provenance.json").read_text()) == {"note": "test"}


def test_half_precision_weights_halve_the_file_and_load_as_saved(tmp_path, model):
    model.save(tmp_path / "full")
    fingerprint_full = model.fingerprint()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    model.save(tmp_path / "half", weights="float16")
    full_bytes = (tmp_path / "full" / "weights.safetensors").stat().st_size
    half_bytes = (tmp_path / "half" / "weights.safetensors").stat().st_size
    assert half_bytes < 0.55 * full_bytes
    # the saving model was rounded, so it and the folder agree exactly
    loaded = WorldModel.load(tmp_path / "half")
    assert loaded.fingerprint() == model.fingerprint() != fingerprint_full
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    video = frames(2, 1)
    torch.testing.assert_close(loaded.encode(video), model.encode(video), atol=0, rtol=0)
    for name, tensor in model.state_dict().items():  # rounding moved weights by half-precision ulps
        torch.testing.assert_close(tensor, before[name], atol=1e-3, rtol=1e-3)
        if tensor.is_floating_point():
            assert torch.equal(tensor, tensor.half().float())
    with pytest.raises(ValueError, match="weights must be one of float32, float16"):
        model.save(tmp_path / "x", weights="int8")
    assert not (tmp_path / "x").exists()


def test_half_precision_refuses_weights_it_cannot_hold(tmp_path):
    model = tiny_model()
    with torch.no_grad():
        next(model.parameters())[0] = 1e6
    before = model.fingerprint()
    with pytest.raises(ValueError, match="does not fit in torch.float16"):
        model.save(tmp_path / "wm", weights="float16")
    assert not (tmp_path / "wm").exists()
    assert model.fingerprint() == before  # nothing was rounded


def test_input_checking_names_shapes(model):
    z0 = model.encode(frames(2, 1))[:, 0]
    with pytest.raises(
        ValueError, match=r"actions must have shape \[2, 4, 3, 2\], got \[2, 4, 3, 3\]"
    ):
        model.rollout(z0, torch.zeros(2, 4, 3, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"latents must be \[B,4,96\], got \(2, 5, 96\)"):
        model.rollout(torch.zeros(2, 5, 96), torch.zeros(2, 1, 3, 2), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"proprio must have shape \[2, 4\], got \[2, 3\]"):
        model.rollout(z0, torch.zeros(2, 1, 3, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="needs proprio"):
        model.rollout(z0, torch.zeros(2, 1, 3, 2))
    with pytest.raises(ValueError, match=r"uint8 frames must be \[B,T,H,W,3\]"):
        model.encode(torch.zeros(2, 64, 64, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="floating point"):
        model.rollout(z0, torch.zeros(2, 1, 3, 2, dtype=torch.long), torch.zeros(2, 4))


def test_any_float_input_works_and_bad_ones_are_named(model):
    z0 = model.encode(frames(2, 1))[:, 0]
    actions, proprio = torch.rand(2, 2, 3, 2) * 2 - 1, torch.rand(2, 4)
    reference = model.rollout(z0, actions, proprio)
    for dtype in (torch.float64, torch.float16):
        again = model.rollout(z0.to(dtype), actions.to(dtype), proprio.to(dtype))
        assert again.dtype == torch.float32
        assert torch.allclose(again, reference, atol=0.05 if dtype == torch.float16 else 1e-5)
    assert torch.allclose(model.rollout(z0.numpy(), actions.numpy(), proprio.numpy()), reference)
    with pytest.raises(ValueError, match="latents must be floating point, got torch.int64"):
        model.rollout(z0.long(), actions, proprio)
    with pytest.raises(ValueError, match="horizon 0"):
        model.rollout(z0, actions[:, :0], proprio)
    with pytest.raises(ValueError, match="latents hold NaN"):
        model.rollout(z0 * float("nan"), actions, proprio)
    with pytest.raises(ValueError, match="actions hold NaN"):
        model.step(z0, actions[:, 0] * float("inf"), proprio)
    with pytest.raises(ValueError, match="goal latents must have batch size 1 or 2"):
        model.energy(reference, torch.zeros(3, *model.latent_shape))
    assert model.energy(reference, z0[:1]).shape == (2, 2)


def test_missing_and_corrupt_model_dirs(tmp_path, model):
    with pytest.raises(FileNotFoundError, match="no world model"):
        WorldModel.load(tmp_path / "absent")
    model.save(tmp_path / "wm")
    weights = tmp_path / "wm" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt"):
        WorldModel.load(tmp_path / "wm")
    model.save(tmp_path / "typed")
    config_path = tmp_path / "typed" / "config.json"
    original = json.loads(config_path.read_text())
    for change, needle in [
        (lambda c: c.update(frameskip="three"), "frameskip"),
        (lambda c: c["predictor"].update(depth="four"), "cannot be interpreted as an integer"),
        (lambda c: c.update(latent_mean=[0.0] * 5), "latent stats must have shape"),
        (lambda c: c.update(pool=[3]), "does not divide the token grid"),
        (lambda c: c.update(latent_mean=[0.0] * 96, latent_std=[0.0] * 96),
         "latent_std must be finite and > 0, got a value 0.0"),
        (lambda c: c.update(proprio_mean=[float("nan")] * 4), "proprio_mean must be finite"),
        (lambda c: c.update(image_std=[0.2, 0.2]), "image_std must hold 3 values"),
    ]:
        broken = json.loads(json.dumps(original))
        change(broken)
        config_path.write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=needle):
            WorldModel.load(tmp_path / "typed")


def test_pretrained_initialisation_copies_weights():
    from jepa_world.models import MaskedPredictor

    masked = MaskedPredictor(
        embed_dim=96,
        predictor_embed_dim=48,
        depth=2,
        num_heads=4,
        img_size=32,
        patch_size=8,
        num_frames=2,
    )
    ac = ACPredictor(
        latent_dim=96,
        tokens_per_frame=4,
        action_dim=2,
        frameskip=3,
        proprio_dim=4,
        embed_dim=48,
        depth=2,
        num_heads=4,
    )
    copied = ac.load_from_masked(masked.state_dict())
    assert "blocks.1.attn.qkv.weight" in copied and "frame_head.weight" in copied
    torch.testing.assert_close(
        ac.blocks[1].attn.qkv.weight, masked.predictor_blocks[1].attn.qkv.weight
    )
    torch.testing.assert_close(ac.frame_embed.weight, masked.predictor_embed.weight)
    torch.testing.assert_close(ac.frame_head.weight, masked.predictor_proj.weight)
    torch.testing.assert_close(ac.norm.weight, masked.predictor_norm.weight)
    wrong = ACPredictor(
        latent_dim=96, tokens_per_frame=4, action_dim=2, embed_dim=64, depth=2, num_heads=4
    )
    with pytest.raises(ValueError, match="does not fit"):
        wrong.load_from_masked(masked.state_dict())


# ------------------------------------------------------------------ the training command
@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, small_dataset) -> Path:
    out = tmp_path_factory.mktemp("pre") / "run"
    result = run_cli(
        "-m",
        "jepa_world.pretrain",
        *TINY,
        f"data.paths=[{small_dataset}/episodes]",
        f"out_dir={out}",
        "train.steps=3",
    )
    assert result.returncode == 0, result.stderr
    return out


AC_TINY = [
    "model.frameskip=2",
    "train.context=3",
    "train.batch_size=16",
    "train.log_every=5",
    "train.eval_every=5",
    "train.tensorboard=false",
    "train.warmup_steps=2",
    "train.lr=2e-3",
]


def train_ac(out: Path, pretrained: Path, dataset: Path, *extra: str):
    return run_cli(
        "-m",
        "jepa_world.train_ac",
        *AC_TINY,
        f"encoder.checkpoint={pretrained}",
        f"data.paths=[{dataset}]",
        f"out_dir={out}",
        *extra,
    )


@pytest.mark.parametrize("init", ["pretrained", "scratch"])
def test_train_ac_lowers_the_loss_and_writes_a_world_model(
    tmp_path, pretrained, small_dataset, init
):
    out = tmp_path / "ac"
    result = train_ac(
        out,
        pretrained,
        small_dataset,
        "train.steps=40",
        "train.checkpoint_every=20",
        f"model.init={init}",
    )
    assert result.returncode == 0, result.stderr
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert logs[-1]["loss"] < 0.9 * logs[0]["loss"]  # from "copy the frame" (scratch) onwards
    assert "val_copy_baseline" in logs[-1] and "copy-current-frame baseline" in result.stdout
    model = WorldModel.load(out / "world_model")
    provenance = json.loads((out / "world_model" / "provenance.json").read_text())
    assert provenance["init"] == init and provenance["data"][0]["episodes"] == 4
    assert (provenance["copied_from_pretrained"] > 0) == (init == "pretrained")
    z = model.encode(torch.zeros(1, 64, 64, 3, dtype=torch.uint8))
    proprio = torch.zeros(1, model.proprio_dim)
    assert model.rollout(z, torch.zeros(1, 2, 2, 2), proprio).shape == (1, 2, 4, 96)


def test_train_ac_resumes(tmp_path, pretrained, small_dataset):
    out = tmp_path / "ac"
    first = train_ac(
        out,
        pretrained,
        small_dataset,
        "train.steps=10",
        "train.stop_at_step=5",
        "train.checkpoint_every=5",
    )
    assert first.returncode == 0, first.stderr
    assert not (out / "world_model").exists()
    second = train_ac(out, pretrained, small_dataset, "train.steps=10", "train.checkpoint_every=5")
    assert second.returncode == 0 and "resuming from" in second.stderr
    straight = tmp_path / "straight"
    assert (
        train_ac(
            straight, pretrained, small_dataset, "train.steps=10", "train.checkpoint_every=5"
        ).returncode
        == 0
    )
    a = torch.load(out / "checkpoint.pt", weights_only=True)["predictor"]
    b = torch.load(straight / "checkpoint.pt", weights_only=True)["predictor"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_finished_train_ac_run_is_never_rewritten(tmp_path, pretrained, small_dataset):
    out = tmp_path / "ac"
    common = ("train.steps=4", "train.checkpoint_every=2", "train.eval_every=2")
    assert train_ac(out, pretrained, small_dataset, *common).returncode == 0
    provenance = out / "world_model" / "provenance.json"
    recorded = provenance.read_bytes()
    assert json.loads(recorded)["metrics"]["val_teacher"] > 0
    same = train_ac(out, pretrained, small_dataset, *common, "train.log_every=1")
    assert same.returncode == 0 and "nothing was changed" in same.stderr, same.stderr
    changed = train_ac(out, pretrained, small_dataset, *common, "train.lr=0.01")
    assert_one_line_error(changed, "finished run (4 steps)", "train.lr")
    assert provenance.read_bytes() == recorded
    # killed after its last checkpoint but before the model was written: the rerun writes it,
    # with the metrics the checkpoint kept
    shutil.rmtree(out / "world_model")
    assert train_ac(out, pretrained, small_dataset, *common).returncode == 0
    assert json.loads(provenance.read_bytes())["metrics"] == json.loads(recorded)["metrics"]


def test_train_ac_refuses_an_out_dir_in_use_or_a_stop_behind_its_checkpoint(
    tmp_path, pretrained, small_dataset
):
    from jepa_world.files import exclusive

    out = tmp_path / "ac"
    out.mkdir()
    with exclusive(out, "a test"):
        busy = train_ac(out, pretrained, small_dataset, "train.steps=2")
    assert_one_line_error(busy, "another jepa_world.train_ac run is already writing to")
    first = train_ac(out, pretrained, small_dataset, "train.steps=6", "train.stop_at_step=4",
                     "train.checkpoint_every=2")
    assert first.returncode == 0, first.stderr
    behind = train_ac(out, pretrained, small_dataset, "train.steps=6", "train.stop_at_step=2")
    assert_one_line_error(behind, "train.stop_at_step=2 is not after the checkpoint's step 4")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert_one_line_error(train_ac(a_file, pretrained, small_dataset), "is a file")


def test_train_ac_bad_input(tmp_path, pretrained, small_dataset):
    result = train_ac(tmp_path / "a", tmp_path / "no_pretrain", small_dataset)
    assert_one_line_error(result, "pretrained encoder not found")
    result = train_ac(tmp_path / "b", pretrained, tmp_path / "no_data")
    assert_one_line_error(result, "dataset folder not found")
    result = train_ac(tmp_path / "c", pretrained, small_dataset, "model.init=magic")
    assert_one_line_error(result, "model.init")
    result = train_ac(tmp_path / "d", pretrained, small_dataset, "model.pool_mode=max")
    assert_one_line_error(result, "model.pool_mode must be one of mean, stack")


def test_train_ac_records_resized_frames_and_refuses_mixed_sizes(
    tmp_path, pretrained, small_dataset
):
    from envs.collect import collect

    small = tmp_path / "data32"
    collect("reach", 2, small, steps=12, image_size=32, workers=1, seed=300, progress=False)
    mixed = run_cli("-m", "jepa_world.train_ac", *AC_TINY, f"encoder.checkpoint={pretrained}",
                    f"data.paths=[{small_dataset},{small}]", f"out_dir={tmp_path / 'mixed'}")
    assert_one_line_error(mixed, "mixes image sizes", "32 px", "64 px")
    for data, resized in ((small, None), (small_dataset, {"recorded_px": 64, "encoder_px": 32})):
        out = tmp_path / data.name
        result = train_ac(out, pretrained, data, "train.steps=2", "data.val_fraction=0.5")
        assert result.returncode == 0, result.stderr
        assert ("resized to the encoder's 32 px" in result.stderr) == (resized is not None)
        provenance = json.loads((out / "world_model" / "provenance.json").read_text())
        assert provenance["frames_resized"] == resized
        assert provenance["data"][0]["image_size"] == (32 if resized is None else 64)


def test_shipped_reach_model_loads():
    model = WorldModel.load("reach")
    assert model.frameskip >= 1 and model.action_dim == 2
    obs = np.zeros((1, model.image_size, model.image_size, 3), np.uint8)
    z = model.encode(torch.from_numpy(obs))
    assert z.shape[1:] == model.latent_shape
    folder = resolve_model_dir("reach")
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 20 * 2**20
    provenance = json.loads((folder / "provenance.json").read_text())
    assert {"git_commit", "training_config", "data", "metrics"} <= set(provenance)


def test_proprio_decoder_explains_the_change_of_appearance():
    """With a decoder the predicted latent moves by decode(p_next) - decode(p_now): the change
    that the predicted proprio explains, on top of the transformer's residual."""
    model = tiny_model(decoder=True)
    predictor = model.predictor
    z0 = model.encode(frames(2, 1))[:, 0]
    actions = torch.rand(2, 1, 3, 2) * 2 - 1
    proprio = torch.randn(2, 4)
    with_decoder = model.rollout(z0, actions, proprio)[:, 0]
    p = (proprio - model.proprio_mean) / model.proprio_std
    z_next, p_next, _ = predictor.step(z0, actions[:, 0].flatten(1), p, 0, None)
    decoder, predictor.decoder = predictor.decoder, None
    try:
        without, p_same, _ = predictor.step(z0, actions[:, 0].flatten(1), p, 0, None)
    finally:
        predictor.decoder = decoder
    torch.testing.assert_close(p_same, p_next)
    torch.testing.assert_close(with_decoder, z_next)
    torch.testing.assert_close(z_next - without, decoder(p_next) - decoder(p), atol=1e-5, rtol=1e-5)
    assert decoder(p).shape == (2, 4, 96)
    with pytest.raises(ValueError, match="proprio"):
        tiny_model(proprio_dim=0, decoder=True)


def test_train_ac_with_proprio_decoder_on_a_world_models_encoder(
    tmp_path, pretrained, small_dataset
):
    """encoder.checkpoint may name a world model: a new predictor (here with a proprio decoder)
    trains on its frozen encoder; the decoder's own loss falls."""
    first = tmp_path / "first"
    assert train_ac(first, pretrained, small_dataset, "train.steps=4").returncode == 0
    out = tmp_path / "second"
    result = run_cli(
        "-m", "jepa_world.train_ac", *AC_TINY, f"encoder.checkpoint={first / 'world_model'}",
        f"data.paths=[{small_dataset}]", f"out_dir={out}", "train.steps=40",
        "model.predictor.decoder_width=32",
        "model.predictor.decoder_frequencies=8",
    )
    assert result.returncode == 0, result.stderr
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert logs[-1]["decode"] < 0.9 * logs[0]["decode"]
    model = WorldModel.load(out / "world_model")
    source = WorldModel.load(first / "world_model")
    for name, value in source.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], value), name
    assert model.predictor.decoder is not None
    provenance = json.loads((out / "world_model" / "provenance.json").read_text())
    assert provenance["encoder_source"]["world_model"] == str(first / "world_model")


def test_rollout_decodes_each_proprio_once():
    """A rollout of H steps decodes H+1 proprio vectors (the start and each prediction), not 2H."""
    model = tiny_model(decoder=True)
    calls = []
    handle = model.predictor.decoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        z0 = model.encode(frames(2, 1))[:, 0]
        model.rollout(z0, torch.rand(2, 4, 3, 2), torch.randn(2, 4))
    finally:
        handle.remove()
    assert len(calls) == 5


def test_closed_loop_rollout_matches_open_loop_and_passes_gradients(model):
    z0 = model.encode(frames(2, 1))[:, 0]
    proprio = torch.rand(2, model.proprio_dim)
    planned = torch.rand(2, 3, model.frameskip, model.action_dim) * 2 - 1
    calls = []

    def replay(z, p):  # a "policy" that replays the plan, seeing the predicted state
        calls.append((z.shape, None if p is None else p.shape))
        return planned[:, len(calls) - 1]

    latents, predicted_proprio = model.rollout_policy(z0, replay, 3, proprio)
    assert torch.allclose(latents, model.rollout(z0, planned, proprio), atol=1e-5)
    assert len(calls) == 3 and predicted_proprio.shape == (2, 3, model.proprio_dim)
    weight = torch.zeros(model.action_dim, requires_grad=True)
    latents, _ = model.rollout_policy(
        z0, lambda z, p: torch.tanh(weight).expand(2, model.frameskip, -1), 2, proprio)
    latents.square().mean().backward()
    assert weight.grad is not None and bool(weight.grad.abs().sum() > 0)
    assert all(p.grad is None for p in model.parameters())


def test_compiled_rollouts_match_eager():
    """``compile_rollouts``: the planner's calls (rollout_many over two batch sizes, rollout,
    step, in inference mode and with gradients to the actions) give the eager predictions, and
    ``compile_rollouts(False)`` goes back to eager."""
    model = tiny_model(decoder=True)
    z0 = model.encode(frames(2, 1))[:, 0]
    actions = torch.rand(2, 6, 3, 3, 2) * 2 - 1
    proprio = torch.randn(2, 4)
    with torch.inference_mode():
        eager = [model.rollout_many(z0, actions[:, :n], proprio) for n in (6, 2)]
        eager_step = model.step(z0, actions[:, 0, 0], proprio)
    assert not model.compiled
    assert model.compile_rollouts() is model and model.compiled
    with torch.inference_mode():
        for n, expected in zip((6, 2), eager, strict=True):
            torch.testing.assert_close(model.rollout_many(z0, actions[:, :n], proprio), expected,
                                       atol=1e-5, rtol=1e-5)
        for got, want in zip(model.step(z0, actions[:, 0, 0], proprio), eager_step, strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    grad_actions = actions[:, 0].clone().requires_grad_(True)
    model.rollout(z0, grad_actions, proprio).square().sum().backward()
    compiled_grad = grad_actions.grad
    model.compile_rollouts(False)
    assert not model.compiled
    grad_actions.grad = None
    model.rollout(z0, grad_actions, proprio).square().sum().backward()
    torch.testing.assert_close(compiled_grad, grad_actions.grad, atol=1e-4, rtol=1e-4)


def test_rollout_many_equals_rollout_on_repeated_starts(model):
    """N candidate sequences per start (the planners' call): the same predictions as
    ``rollout`` on the starts repeated N times, the start's proprio decoded once per start."""
    z0 = model.encode(frames(2, 1))[:, 0]
    actions = torch.rand(2, 5, 4, 3, 2) * 2 - 1
    proprio = torch.randn(2, 4)
    calls = []
    decoder = model.predictor.decoder
    handle = None if decoder is None else decoder.register_forward_hook(
        lambda _module, inputs, _out: calls.append(inputs[0].shape[0]))
    try:
        many = model.rollout_many(z0, actions, proprio)
    finally:
        if handle is not None:
            handle.remove()
    assert many.shape == (2, 5, 4, *model.latent_shape)
    repeated = model.rollout(z0.repeat_interleave(5, 0), actions.flatten(0, 1),
                             proprio.repeat_interleave(5, 0))
    torch.testing.assert_close(many.flatten(0, 1), repeated, atol=1e-5, rtol=1e-5)
    if decoder is not None:
        assert calls == [2] + [10] * 4  # the starts once, then each predicted proprio
    with pytest.raises(ValueError, match=r"N sequences for each of the 2 starts"):
        model.rollout_many(z0, actions[:1], proprio)
    with pytest.raises(ValueError, match="actions"):
        model.rollout_many(z0, actions[..., :1], proprio)


def test_rollout_many_then_a_policy_continues_each_sequence(model):
    """``then`` acts ``then_blocks`` more blocks after the sequences, closed loop: a policy that
    reads the predicted state and proprio, whose choices are those of an open-loop rollout of
    the same actions."""
    z0 = model.encode(frames(2, 1))[:, 0]
    actions = torch.rand(2, 3, 2, 3, 2) * 2 - 1
    proprio = torch.randn(2, 4)
    seen, chosen = [], []

    def policy(latent, p):
        seen.append((latent.shape, None if p is None else p.shape))
        block = torch.tanh(latent.mean(dim=(1, 2)))[:, None, None].expand(-1, 3, 2)
        chosen.append(block)
        return block

    continued = model.rollout_many(z0, actions, proprio, then=policy, then_blocks=2)
    assert continued.shape == (2, 3, 4, *model.latent_shape)
    assert seen == [((6, *model.latent_shape), (6, 4))] * 2  # every sequence, start-major
    torch.testing.assert_close(continued[:, :, :2], model.rollout_many(z0, actions, proprio))
    replayed = torch.cat([actions, torch.stack(chosen, 1).reshape(2, 3, 2, 3, 2)], 2)
    torch.testing.assert_close(continued, model.rollout_many(z0, replayed, proprio),
                               atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="go together"):
        model.rollout_many(z0, actions, proprio, then=policy)
    with pytest.raises(ValueError, match="go together"):
        model.rollout_many(z0, actions, proprio, then_blocks=2)


def test_bf16_precision_computes_in_bf16_and_returns_float32(model):
    z0 = model.encode(frames(2, 1))[:, 0]
    actions, proprio = torch.rand(2, 3, 3, 2) * 2 - 1, torch.randn(2, 4)
    exact = model.rollout(z0, actions, proprio)
    model.precision = "bf16"
    try:
        assert model.encode(frames(2, 1)).dtype == torch.float32
        rounded = model.rollout(z0, actions, proprio)
    finally:
        model.precision = "auto"
    assert rounded.dtype == torch.float32
    assert not torch.equal(rounded, exact)  # bf16 arithmetic did happen
    torch.testing.assert_close(rounded, exact, atol=0.1, rtol=0.05)
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        model.precision = "fp16"


def test_a_printed_config_shows_statistics_by_length():
    from jepa_world.world_model import WorldModel

    config = WorldModel.load("reach").config
    text = repr(config)
    assert "latent_mean=[96 values]" in text and "latent_std=[96 values]" in text
    assert len(text) < 1000 and "frameskip=5" in text
    assert len(config.latent_mean) == 96  # the values themselves are untouched
