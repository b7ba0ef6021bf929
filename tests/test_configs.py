"""Typed command schemas and the one encoder loader: what a user's bad input and every kind of
encoder source turn into."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from jepa_world.encoders import fresh_like, load_encoder
from jepa_world.models import EncoderConfig, VisionTransformer, vit_encoder
from jepa_world.schemas.distill import DistillConfig
from jepa_world.schemas.pretrain import PretrainConfig
from jepa_world.schemas.probe import ProbeConfig
from jepa_world.schemas.train_ac import TrainACConfig
from jepa_world.training.checkpoint import save_checkpoint
from jepa_world.training.cli import UserError, load_config, typed_config
from jepa_world.world_model import WorldModel
from planners.mpc import MPCConfig
from tests.conftest import run_cli

SCHEMAS = {
    "pretrain": PretrainConfig,
    "train_ac": TrainACConfig,
    "probe": ProbeConfig,
    "mpc": MPCConfig,
    "distill": DistillConfig,
}


def typed(name: str, *overrides: str):
    return typed_config(SCHEMAS[name], load_config(name, list(overrides)))


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_shipped_defaults_fit_their_schema(name):
    cfg = typed(name)
    assert isinstance(cfg, SCHEMAS[name])


@pytest.mark.parametrize("name", sorted(set(SCHEMAS) - {"pretrain"}))
def test_python_callers_get_the_commands_defaults(name):
    """A plain dict given to the Python API (``planners.mpc.evaluate({...})``) runs with the
    same settings as the command: the schema's defaults are the shipped YAML's. (pretrain
    composes its model, mask and data from config groups: it takes a composed config.)"""
    from_dict = typed_config(SCHEMAS[name], {})
    from_yaml = typed_config(SCHEMAS[name], load_config(name, []))
    assert dataclasses.asdict(from_dict) == dataclasses.asdict(from_yaml)


def test_values_arrive_typed():
    cfg = typed("pretrain", "train.steps=7", "train.lr=1e-3", "train.bf16=false")
    assert cfg.train.steps == 7 and isinstance(cfg.train.steps, int)
    assert cfg.train.lr == pytest.approx(1e-3) and cfg.train.bf16 is False
    assert cfg.mask and cfg.mask[0].num_blocks == 8
    ac = typed("train_ac", "model.planning.horizon=5", "model.pool=null")
    assert ac.model.planning.as_dict() == {"horizon": 5} and ac.model.pool is None
    ac = typed("train_ac", "model.planning.energy_steps=final")
    assert ac.model.planning.as_dict() == {"energy_steps": "final"}
    ac = typed("train_ac", "model.planning.polish_steps=20", "model.planning.polish_lr=0.01")
    assert ac.model.planning.as_dict() == {"polish_steps": 20, "polish_lr": 0.01}
    ac = typed("train_ac", "model.planning.polish_method=gauss_newton")
    assert ac.model.planning.as_dict() == {"polish_method": "gauss_newton"}
    ac = typed("train_ac", "model.planning.cem_samples=64", "model.planning.cem_iterations=2")
    assert ac.model.planning.as_dict() == {"cem_samples": 64, "cem_iterations": 2}
    probe = typed("probe", "data.train=some/dir", "targets=fingertip")
    assert probe.data.train == ["some/dir"] and probe.targets == ["fingertip"]


def test_small_objects_mask_hides_whole_frames_over_half_the_clip():
    """The preset keeps the short-range blocks and swaps the long-range ones for a whole-frame
    block over half the time steps, so the masked frames' content is visible at other times."""
    from jepa_world.masks import MaskSpec, MultiBlockMaskSampler

    cfg = typed("pretrain", "mask=small_objects")
    specs = [MaskSpec(**dataclasses.asdict(m)) for m in cfg.mask]
    assert [s.num_blocks for s in specs] == [8, 1]
    grid = (4, 8, 8)
    sampler = MultiBlockMaskSampler(grid, specs)
    _, (context, target) = sampler(3, torch.Generator().manual_seed(0))
    frame = grid[1] * grid[2]
    for ctx, tgt in zip(context.tolist(), target.tolist(), strict=True):
        assert len(tgt) == 2 * frame and len(ctx) == 2 * frame
        masked_steps = {i // frame for i in tgt}
        assert len(masked_steps) == 2 and masked_steps.isdisjoint({i // frame for i in ctx})


@pytest.mark.parametrize(
    ("name", "override", "needle"),
    [
        ("pretrain", "train.steps=many", "train.steps"),
        ("pretrain", "train.steps=-1", "train.steps must be >= 0"),
        ("pretrain", "train.betas=[0.9]", "train.betas"),
        ("pretrain", "+train.bogus=1", "bogus"),
        ("pretrain", "data.crop_scale=[0.9,0.1]", "data.crop_scale"),
        ("pretrain", "device=tpu", "device must be"),
        ("train_ac", "model.init=copied", "model.init must be pretrained or scratch"),
        ("train_ac", "model.pool=[3]", "model.pool"),
        ("train_ac", "model.pool_mode=max", "model.pool_mode"),
        ("train_ac", "data.val_fraction=1.5", "data.val_fraction"),
        ("train_ac", "model.predictor.num_heads=5", "does not divide"),
        ("train_ac", "train.context=0", "train.context must be positive"),
        ("train_ac", "model.planning.energy_steps=last", "model.planning.energy_steps"),
        ("train_ac", "model.planning.polish_steps=-1", "model.planning.polish_steps must be"),
        ("train_ac", "model.planning.polish_lr=0", "model.planning.polish_lr must be positive"),
        ("train_ac", "model.planning.polish_method=newton",
         "model.planning.polish_method must be adam, gauss_newton or null"),
        ("train_ac", "model.planning.cem_samples=0",
         "model.planning.cem_samples must be positive"),
        ("probe", "task=segmentation", "unknown task"),
        ("probe", "probe.cache_dtype=int8", "probe.cache_dtype"),
        ("probe", "probe.steps=0", "probe.steps must be positive"),
        ("mpc", "budget=0", "budget must be a positive integer"),
        ("mpc", "planner=simplex", "unknown planner"),
        ("mpc", "precision=fp16", "precision must be one of auto, fp32, bf16"),
    ],
)
def test_bad_values_are_one_line(name, override, needle):
    with pytest.raises(UserError) as info:
        typed(name, override)
    message = str(info.value)
    assert "\n" not in message and needle in message, message


def test_stacked_pooling_cannot_take_the_masked_predictors_weights():
    assert typed("train_ac", "model.pool_mode=stack").model.pool_mode == "stack"
    with pytest.raises(UserError, match="model.init=pretrained needs model.pool_mode=mean"):
        typed("train_ac", "model.pool_mode=stack", "model.init=pretrained")


def test_encoder_config_round_trips_and_fills_presets():
    config = EncoderConfig.of_size("micro", img_size=32, num_frames=4)
    assert config.embed_dim == 96 and config.size == "micro"
    assert EncoderConfig.from_dict(config.to_dict()) == config
    legacy = {"size": "micro", "img_size": 32, "num_frames": 4}  # world models before configs
    assert EncoderConfig.from_dict(legacy) == config
    with pytest.raises(ValueError, match="unknown encoder config keys"):
        EncoderConfig.from_dict({**config.to_dict(), "heads": 3})
    with pytest.raises(ValueError, match="not divisible"):
        VisionTransformer(dataclasses.replace(config, num_heads=5))


def test_giant_preset_keeps_its_mlp_width():
    config = EncoderConfig.of_size("giant")
    block = VisionTransformer(dataclasses.replace(config, depth=1, img_size=32, num_frames=2))
    assert block.blocks[0].mlp.fc1.out_features == 6144


def test_one_loader_for_world_models_and_pretrain_runs(tmp_path):
    shipped = load_encoder("reach")
    model = WorldModel.load("reach")
    assert shipped.kind == "world_model" and shipped.config == model.encoder.config
    assert not any(p.requires_grad for p in shipped.encoder.parameters())

    saved = tmp_path / "saved"
    model.save(saved)
    from_dir = load_encoder(str(saved))
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(from_dir.encoder.state_dict()[key], value), key

    encoder = vit_encoder("micro", img_size=32, num_frames=4)
    run = tmp_path / "run"
    run.mkdir()
    config = {"model": {"size": "micro"}, "data": {"frame_step": 3}}
    save_checkpoint(
        {"target_encoder": encoder.state_dict(), "encoder_config": encoder.config.to_dict(),
         "config": config, "step": 5},
        run / "checkpoint.pt",
    )
    loaded = load_encoder(str(run))
    assert loaded.kind == "pretrain" and loaded.frame_step == 3 and loaded.config == encoder.config
    assert loaded.provenance["step"] == 5
    fresh = fresh_like(loaded.encoder, seed=0)
    assert fresh.config == loaded.config

    with pytest.raises(UserError, match="pretrained encoder not found"):
        load_encoder(str(tmp_path / "nothing"))


def _schema_leaves(schema: type, prefix: str = "") -> set[str]:
    leaves = set()
    for field in dataclasses.fields(schema):
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING \
            else field.default
        if dataclasses.is_dataclass(default):
            leaves |= _schema_leaves(type(default), f"{prefix}{field.name}.")
        else:
            leaves.add(f"{prefix}{field.name}")
    return leaves


@pytest.mark.parametrize(("name", "flag"), [(name, "--help") for name in
                                           ("pretrain", "train_ac", "probe", "distill", "mpc")]
                         + [("pretrain", "-h"), ("mpc", "-h")])
def test_help_lists_every_setting_with_its_default_and_one_line(name, flag):
    from jepa_world.training.cli import COMMANDS

    result = run_cli("-m", COMMANDS[name][0], "seed=7",
                     flag)
    assert result.returncode == 0, result.stderr
    settings = {}
    for line in result.stdout.splitlines():
        if line.startswith("  ") and "=" in line and "(choices:" not in line:
            setting, _, description = line.strip().partition("  ")
            key, _, value = setting.partition("=")
            settings[key] = (value, description.strip())
    assert settings["seed"][0] == "7"  # overrides are shown
    missing = sorted(key for key in _schema_leaves(SCHEMAS[name])
                     if not any(s == key or s.startswith(f"{key}.") for s in settings))
    assert not missing, f"settings not in --help: {missing}"
    undescribed = sorted(key for key, (_, text) in settings.items() if not text)
    assert not undescribed, f"settings without a line in configs/*.yaml: {undescribed}"
    assert f"docs: {COMMANDS[name][1]}" in result.stdout


@pytest.mark.parametrize("name, override, needle", [
    ("mpc", "cem.sample=100", "unknown setting 'cem.sample'; did you mean 'cem.samples'?"),
    ("pretrain", "trian.steps=3", "did you mean 'train'? (known at the top level:"),
    ("train_ac", "train.stepz=3", "(known in train: batch_size,"),
])
def test_a_mistyped_setting_is_named_on_the_first_try(name, override, needle):
    # Hydra's own hint ("use +key=value to append") sent users into a second error.
    with pytest.raises(UserError) as info:
        load_config(name, [override])
    assert needle in str(info.value) and "+" not in str(info.value).split("(known")[0]


def test_the_train_ac_schema_names_the_same_choices_as_the_code():
    """The schema keeps copies of these lists so that validating a config imports no torch;
    a choice added on one side only would pass validation and fail hours later, or the reverse."""
    from jepa_world import end_to_end, world_model
    from jepa_world.models import latent_head
    from jepa_world.schemas import train_ac as schema
    from planners import energy

    assert set(schema.TARGETS) == set(end_to_end.TARGETS)
    assert set(schema.HEAD_POOLS) == set(latent_head.HEAD_POOLS)
    assert set(schema.POOL_MODES) == set(world_model.POOL_MODES)
    assert set(schema.ENERGY_STEPS) == set(energy.ENERGY_STEPS)
    assert set(schema.WEIGHT_DTYPES) == set(world_model.WEIGHT_DTYPES)
