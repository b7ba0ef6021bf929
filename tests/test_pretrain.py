"""python -m jepa_world.pretrain on tiny real mp4 corpora: learning, resume, DDP, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import assert_error_line, assert_one_line_error, run_cli

# A CPU-sized run: 32 px clips of 4 frames (2x4x4 = 32 tokens), no DataLoader workers.
TINY = [
    "model=micro",
    "model.predictor.depth=2",
    "data.resolution=32",
    "data.frames_per_clip=4",
    "data.frame_step=2",
    "train.batch_size=4",
    "train.num_workers=0",
    "train.warmup_steps=2",
    "train.log_every=1",
    "train.tensorboard=false",
    "seed=3",
]


def pretrain(out_dir: Path, corpus: Path | str, *extra: str, cwd: Path | None = None):
    return run_cli("-m", "jepa_world.pretrain", *TINY, f"data.paths=[{corpus}]",
                   f"out_dir={out_dir}", *extra, cwd=cwd)


def losses(out_dir: Path) -> list[float]:
    lines = (out_dir / "log.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def weights(out_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(out_dir / "checkpoint.pt", weights_only=True)
    flat = {f"encoder.{k}": v for k, v in state["encoder"].items()}
    flat.update({f"target.{k}": v for k, v in state["target_encoder"].items()})
    flat.update({f"predictor.{k}": v for k, v in state["predictor"].items()})
    return flat


@pytest.fixture(scope="module")
def corpus(small_dataset) -> Path:
    return small_dataset / "episodes"


def test_a_few_steps_lower_the_loss(tmp_path, corpus):
    result = pretrain(tmp_path / "run", corpus, "train.steps=25", "train.checkpoint_every=25",
                      "train.lr=2e-3", "train.start_lr=2e-3")
    assert result.returncode == 0, result.stderr
    values = losses(tmp_path / "run")
    assert len(values) == 25
    assert sum(values[-5:]) / 5 < 0.8 * sum(values[:5]) / 5
    assert "pretrain (features): step 25/25" in result.stdout and "0 skipped" in result.stdout
    for name in ("checkpoint.pt", "config.yaml", "log.csv"):
        assert (tmp_path / "run" / name).exists()
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 25 and set(state) >= {"encoder", "target_encoder", "predictor", "opt"}
    # The EMA target moved with the encoder but is not identical to it.
    enc, tgt = state["encoder"]["blocks.0.attn.qkv.weight"], state["target_encoder"][
        "blocks.0.attn.qkv.weight"]
    assert not torch.equal(enc, tgt)


def test_resume_is_bit_exact(tmp_path, corpus):
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ("train.steps=6", "train.checkpoint_every=3", "model.drop_path_rate=0.1")
    assert pretrain(straight, corpus, *common).returncode == 0
    first = pretrain(split, corpus, *common, "train.stop_at_step=3")
    assert first.returncode == 0, first.stderr
    assert torch.load(split / "checkpoint.pt", weights_only=True)["step"] == 3
    second = pretrain(split, corpus, *common)
    assert second.returncode == 0, second.stderr
    assert "resuming from" in second.stderr and "at step 3/6" in second.stderr
    a, b = weights(straight), weights(split)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert losses(straight) == losses(split)


def test_a_finished_run_is_never_rewritten(tmp_path, corpus):
    run = tmp_path / "run"
    assert pretrain(run, corpus, "train.steps=2", "train.checkpoint_every=2").returncode == 0
    kept = {name: (run / name).read_bytes() for name in ("checkpoint.pt", "config.yaml", "log.csv")}
    same = pretrain(run, corpus, "train.steps=2", "train.checkpoint_every=1")
    assert same.returncode == 0 and "nothing was changed" in same.stdout, same.stderr
    longer = pretrain(run, corpus, "train.steps=4", "train.lr=1e-2")
    assert_one_line_error(longer, "finished run (2 steps)", "train.lr", "train.steps")
    assert {name: (run / name).read_bytes() for name in kept} == kept
    early = tmp_path / "early"
    assert pretrain(early, corpus, "train.steps=4", "train.stop_at_step=2",
                    "train.checkpoint_every=2").returncode == 0
    behind = pretrain(early, corpus, "train.steps=4", "train.stop_at_step=1")
    assert_one_line_error(behind, "train.stop_at_step=1 is not after the checkpoint's step 2")


def test_pixel_objective_learns_and_resumes_exactly(tmp_path, corpus):
    """The generative baseline: same ViT and masks, masked patches' pixels as targets."""
    common = ("objective=pixels", "train.steps=20", "train.checkpoint_every=10",
              "train.lr=2e-3", "train.start_lr=2e-3")
    straight, split = tmp_path / "straight", tmp_path / "split"
    result = pretrain(straight, corpus, *common)
    assert result.returncode == 0, result.stderr
    assert "pretrain (pixels): step 20/20" in result.stdout
    values = losses(straight)
    assert sum(values[-5:]) / 5 < 0.8 * sum(values[:5]) / 5
    state = torch.load(straight / "checkpoint.pt", weights_only=True)
    # The predictor reads out 2 frames x 8 x 8 pixels x 3 channels per token; the saved
    # "target_encoder" (what the probe and train_ac load) is the trained encoder itself.
    assert state["predictor"]["predictor_proj.weight"].shape[0] == 2 * 8 * 8 * 3
    for key, value in state["encoder"].items():
        assert torch.equal(value, state["target_encoder"][key]), key
    assert pretrain(split, corpus, *common, "train.stop_at_step=10").returncode == 0
    second = pretrain(split, corpus, *common)
    assert second.returncode == 0 and "at step 10/20" in second.stderr
    a, b = weights(straight), weights(split)
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert losses(straight) == losses(split)
    refused = pretrain(split, corpus, "objective=features", "train.steps=30")
    assert_one_line_error(refused, "objective")


def test_pixel_targets_follow_the_token_order():
    from jepa_world.vjepa import pixel_targets

    video = torch.zeros(1, 3, 4, 16, 16)
    video[0, :, 2:4, 8:16, 0:8] = torch.arange(2 * 8 * 8).reshape(2, 8, 8).float()
    targets = pixel_targets(video, patch_size=8, tubelet_size=2)
    assert targets.shape == (1, 2 * 2 * 2, 2 * 8 * 8 * 3)
    # token (t=1, row=1, col=0) = index 1*4 + 1*2 + 0 = 6 is the only one that varies
    spread = targets[0].std(-1)
    assert spread[6] > 0.9 and torch.all(spread[torch.arange(8) != 6] == 0)
    assert abs(float(targets[0, 6].mean())) < 1e-5


def test_variance_covariance_terms_penalise_collapse_not_spread_features():
    from jepa_world.vjepa import variance_covariance

    generator = torch.Generator().manual_seed(0)
    spread = torch.randn(4096, 16, generator=generator) * 1.5
    variance, covariance = variance_covariance(spread)
    assert float(variance) == 0.0 and float(covariance) < 0.05
    # shrunk to a std of 0.1 per dimension: the hinge is 1 - 0.1 on each
    shrunk = torch.randn(4096, 16, generator=generator) * 0.1
    assert abs(float(variance_covariance(shrunk)[0]) - 0.9) < 0.01
    # one feature copied 16 times: no variance penalty, covariance 15 * 1.2**4 per dimension
    copies = torch.randn(4096, 1, generator=generator).expand(-1, 16) * 1.2 + 3.0
    variance, covariance = variance_covariance(copies)
    assert float(variance) == 0.0 and abs(float(covariance) / (15 * 1.2**4) - 1) < 0.1


def test_regularised_run_logs_its_penalty_and_resumes_exactly(tmp_path, corpus):
    common = ("train.steps=4", "train.checkpoint_every=2", "train.variance_weight=1.0",
              "train.covariance_weight=0.04")
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert pretrain(straight, corpus, *common).returncode == 0
    lines = [json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and all(line["regularizer"] > 0 for line in lines)
    assert pretrain(split, corpus, *common, "train.stop_at_step=2").returncode == 0
    assert pretrain(split, corpus, *common).returncode == 0
    a, b = weights(straight), weights(split)
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert losses(straight) == losses(split)
    plain = pretrain(tmp_path / "plain", corpus, "train.steps=1")
    assert plain.returncode == 0
    assert json.loads((tmp_path / "plain" / "log.jsonl").read_text())["regularizer"] == 0.0


def test_resume_refuses_a_different_model(tmp_path, corpus):
    assert pretrain(tmp_path / "run", corpus, "train.steps=1").returncode == 0
    result = pretrain(tmp_path / "run", corpus, "train.steps=2", "model=mini")
    assert_one_line_error(result, "different model")


def test_ddp_with_two_gloo_processes(tmp_path, corpus):
    out = tmp_path / "ddp"
    result = run_cli("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                     "-m", "jepa_world.pretrain", *TINY, f"data.paths=[{corpus}]",
                     f"out_dir={out}", "train.steps=4", "train.checkpoint_every=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on 2 process(es)" in result.stdout
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["step"] == 4
    assert len(losses(out)) == 4  # rank 0 alone logs


def test_broken_files_are_skipped_and_counted(tmp_path, corpus):
    mixed = tmp_path / "mixed"
    shutil.copytree(corpus, mixed)
    good = next(mixed.rglob("*.mp4"))
    payload = good.read_bytes()
    (mixed / "truncated.mp4").write_bytes(payload[: len(payload) // 3])
    (mixed / "noise.mp4").write_bytes(bytes(range(256)) * 8)
    (mixed / "empty.mp4").write_bytes(b"")
    result = pretrain(tmp_path / "run", mixed, "train.steps=12", "train.batch_size=6")
    assert result.returncode == 0, result.stderr
    assert "truncated.mp4" in result.stderr and "noise.mp4" in result.stderr
    assert "3 skipped as unreadable" in result.stdout


def test_all_broken_corpus(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("a.mp4", "b.mkv"):
        (broken / name).write_bytes(bytes(range(256)) * 8)
    result = pretrain(tmp_path / "run", broken, "train.steps=2")
    assert_error_line(result, "no readable videos")


@pytest.mark.parametrize(
    "override, needle",
    [
        ("data.paths=[/nonexistent/videos]", "/nonexistent/videos"),
        ("model=colossal", "model"),
        ("train.steps=-1", "train.steps must be >= 0"),
        ("objective=audio", "unknown objective 'audio'"),
        ("train.variance_weight=nan", "train.variance_weight must be >= 0 and finite"),
        ("train.covariance_weight=-1", "train.covariance_weight must be >= 0"),
        ("train.lr=inf", "train.lr must be positive and finite"),
    ],
)
def test_bad_input_one_line(tmp_path, corpus, override, needle):
    result = run_cli("-m", "jepa_world.pretrain", *TINY, f"data.paths=[{corpus}]",
                     f"out_dir={tmp_path / 'run' / 'deep'}", override)
    assert_one_line_error(result, needle)
    assert not (tmp_path / "run").exists()  # no config.yaml or .lock left behind


def test_bad_input_leaves_an_existing_out_dir_as_it_was(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    result = run_cli("-m", "jepa_world.pretrain", *TINY, "data.paths=[/nonexistent/videos]",
                     f"out_dir={out}")
    assert_one_line_error(result, "/nonexistent/videos")
    assert out.is_dir()


def test_non_finite_loss_keeps_last_checkpoint(tmp_path, corpus):
    out = tmp_path / "run"
    # An absurd learning rate: the first step's loss is finite, the weights it leaves are not
    absurd = ("train.steps=40", "train.checkpoint_every=1", "train.lr=1e30",
              "train.start_lr=1e30", "train.clip_grad=1e30")
    assert pretrain(out, corpus, *absurd, "train.stop_at_step=1").returncode == 0
    before = (out / "checkpoint.pt").read_bytes()
    result = pretrain(out, corpus, *absurd)
    assert_error_line(result, "loss is", "at step 1", "last good checkpoint")
    assert (out / "checkpoint.pt").read_bytes() == before


def test_malicious_checkpoint_in_out_dir_is_refused(tmp_path, corpus):
    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"config": Evil()}, out / "checkpoint.pt")
    result = pretrain(out, corpus, "train.steps=1")
    assert_one_line_error(result, "refusing to load")
    assert not marker.exists()


def test_an_edited_checkpoint_in_out_dir_is_one_line(tmp_path, corpus):
    from jepa_world.training.checkpoint import save_checkpoint

    run = tmp_path / "run"
    common = ("train.steps=3", "train.checkpoint_every=1")
    assert pretrain(run, corpus, *common, "train.stop_at_step=1").returncode == 0
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    key = next(iter(state["encoder"]))
    state["encoder"][key] = torch.zeros(3)
    save_checkpoint(state, run / "checkpoint.pt")
    assert_one_line_error(pretrain(run, corpus, *common), "does not fit this run", key)
    del state["config"]
    save_checkpoint(state, run / "checkpoint.pt")
    assert_one_line_error(pretrain(run, corpus, *common), "lacks its run's config")
