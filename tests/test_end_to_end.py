"""End-to-end world models (train_ac encoder.train=true): encoder, latent head and predictor
trained together with SIGReg, from a V-JEPA run or a random initialisation."""

from __future__ import annotations

import json

import pytest
import torch

from jepa_world import WorldModel
from tests.conftest import assert_one_line_error
from tests.test_world_model import pretrained, train_ac  # noqa: F401 (a fixture)

E2E = [
    "encoder.train=true",
    "model.head.hidden=64",
    "model.head.dim=16",
    "model.predictor.decoder_width=0",
    "train.sigreg_directions=32",
]


@pytest.mark.parametrize("init", ["pretrained", "random"])
def test_end_to_end_lowers_the_prediction_loss_without_collapse(
    tmp_path, pretrained, small_dataset, init  # noqa: F811
):
    out = tmp_path / "e2e"
    result = train_ac(out, pretrained, small_dataset, *E2E, f"encoder.init={init}",
                      "train.steps=40", "train.checkpoint_every=20", "train.eval_every=10")
    assert result.returncode == 0, result.stderr
    assert "embedding spread" in result.stdout and "val MSE teacher" in result.stdout
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert logs[-1]["teacher"] < 0.7 * logs[0]["teacher"], (logs[0], logs[-1])
    assert logs[-1]["sigreg"] < logs[0]["sigreg"]
    # no collapse: the batch's embeddings stay spread (in eval mode BatchNorm's running
    # statistics lag behind the first steps, so the held-out spread starts small)
    assert all(entry["spread"] > 0.2 for entry in logs)
    assert logs[-1]["val_spread"] > 0.03
    model = WorldModel.load(out / "world_model")
    provenance = json.loads((out / "world_model" / "provenance.json").read_text())
    assert provenance["built"] == "end_to_end" and provenance["encoder_init"] == init
    assert model.latent_shape == (1, 16) and model.config.head["dim"] == 16
    frames = torch.randint(0, 255, (3, 32, 32, 3), dtype=torch.uint8)
    z = model.encode(frames)
    assert z.shape == (3, 1, 16) and float(z.std(0).mean()) > 0
    rolled = model.rollout(z, torch.zeros(3, 2, 2, 2), torch.zeros(3, model.proprio_dim))
    assert rolled.shape == (3, 2, 1, 16)
    assert torch.equal(model.encode(frames), z)  # eval mode: BatchNorm's running statistics


def test_the_pretrained_and_random_initialisations_differ(tmp_path, pretrained, small_dataset):  # noqa: F811
    models = {}
    for init in ("pretrained", "random"):
        out = tmp_path / init
        assert train_ac(out, pretrained, small_dataset, *E2E, f"encoder.init={init}",
                        "model.head.pool=attention", "train.steps=1").returncode == 0
        models[init] = WorldModel.load(out / "world_model")
        assert models[init].config.head["pool"] == "attention"
    a, b = (models[k].encoder.state_dict() for k in ("pretrained", "random"))
    assert not torch.equal(a["blocks.0.attn.qkv.weight"], b["blocks.0.attn.qkv.weight"])


def test_a_frozen_warm_up_keeps_the_initial_encoder_and_trains_the_rest(
    tmp_path, pretrained, small_dataset  # noqa: F811
):
    encoders = {}
    for steps in (3, 5):  # frozen for 3 steps: after 3 still the initialisation, after 5 not
        out = tmp_path / f"steps{steps}"
        result = train_ac(out, pretrained, small_dataset, *E2E, "encoder.frozen_steps=3",
                          f"train.steps={steps}")
        assert result.returncode == 0, result.stderr
        encoders[steps] = WorldModel.load(out / "world_model").encoder.state_dict()
    initial = torch.load(pretrained / "checkpoint.pt", weights_only=True)["target_encoder"]
    initial = {k.removeprefix("module."): v for k, v in initial.items()}
    assert encoders[3].keys() == initial.keys()
    assert all(torch.equal(encoders[3][k], initial[k]) for k in initial)
    assert not all(torch.equal(encoders[5][k], initial[k]) for k in initial)


@pytest.mark.parametrize("target", ["same", "ema"])
def test_end_to_end_resumes_bit_exactly(tmp_path, pretrained, small_dataset, target):  # noqa: F811
    common = (*E2E, f"train.target={target}", "train.steps=8", "train.checkpoint_every=4")
    out = tmp_path / "resumed"
    first = train_ac(out, pretrained, small_dataset, *common, "train.stop_at_step=4")
    assert first.returncode == 0, first.stderr
    second = train_ac(out, pretrained, small_dataset, *common)
    assert second.returncode == 0 and "resuming from" in second.stderr, second.stderr
    straight = tmp_path / "straight"
    assert train_ac(straight, pretrained, small_dataset, *common).returncode == 0
    a = torch.load(out / "checkpoint.pt", weights_only=True)
    b = torch.load(straight / "checkpoint.pt", weights_only=True)
    for key in ("world_model", *(("ema",) if target == "ema" else ())):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.sigreg_weight=-1", "train.sigreg_weight must be >= 0"),
        ("encoder.init=magic", "encoder.init must be one of pretrained, random"),
        ("train.target=momentum", "train.target must be one of same, stopgrad, ema"),
        ("model.head.pool=max", "model.head.pool must be one of attention, mean, flatten"),
        ("model.head.token_dim=0", "model.head.token_dim must be"),
        ("model.head.pool=attention model.head.heads=5",
         "head.heads=5 does not divide the encoder width 96"),
        ("encoder.lr_scale=0", "encoder.lr_scale must be positive"),
        ("encoder.frozen_steps=-1", "encoder.frozen_steps must be >= 0"),
    ],
)
def test_end_to_end_bad_settings_are_one_line(tmp_path, pretrained, small_dataset, override,  # noqa: F811
                                              needle):
    result = train_ac(tmp_path / "bad", pretrained, small_dataset, *E2E, *override.split(),
                      "train.steps=2")
    assert_one_line_error(result, needle)


def test_end_to_end_settings_need_end_to_end_training(tmp_path, pretrained, small_dataset):  # noqa: F811
    for setting in ("encoder.init=random", "encoder.frozen_steps=10"):
        result = train_ac(tmp_path / "bad", pretrained, small_dataset, setting)
        assert_one_line_error(result, "add encoder.train=true")


def test_a_flatten_head_tells_where_things_are_where_mean_pooling_cannot():
    """Mirror-image arm poses hold the same tokens in other places: averaging them gives one
    embedding for both, the flatten head (tokens concatenated in raster order) two."""
    from jepa_world.models.latent_head import LatentHead, LatentHeadConfig

    torch.manual_seed(0)
    tokens = torch.randn(4, 16, 8)
    mirrored = tokens.reshape(4, 4, 4, 8).flip(2).reshape(4, 16, 8)
    for pool, same in (("mean", True), ("flatten", False)):
        head = LatentHead(8, LatentHeadConfig(pool=pool, hidden=32, dim=6, token_dim=3), tokens=16)
        head.eval()
        assert torch.allclose(head(tokens), head(mirrored), atol=1e-6) is same, pool
    assert sum(p.numel() for p in head.pool.parameters()) == 2 * 8 + 8 * 3 + 3
