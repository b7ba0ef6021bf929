"""python -m jepa_world.probe: frozen attentive probe on a tiny real pretrain run and real mp4s."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from jepa_world.encoders import fresh_like
from jepa_world.probe import (
    AttentiveProbe,
    ProbeSettings,
    evaluate,
    format_report,
    main,
    predict,
    r2_scores,
    split_episodes,
    target_values,
    train_probe,
)
from jepa_world.probe.low_shot import low_shot_subset
from jepa_world.training.cli import UserError, load_config, run_command
from tests.conftest import assert_error_line, assert_one_line_error, run_cli

# A CPU-sized pretrain run: micro encoder on 32 px clips of 4 frames, a handful of steps. The
# probe resizes the 64 px dataset frames to the encoder's 32 px.
TINY_PRETRAIN = [
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
    "train.steps=6",
    "train.checkpoint_every=6",
    "seed=3",
]
TINY_PROBE = ["probe.steps=60", "probe.batch_size=32", "probe.warmup_steps=5", "seed=1",
              "progress=false"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, small_dataset) -> Path:
    out = tmp_path_factory.mktemp("probe") / "pretrain"
    result = run_cli("-m", "jepa_world.pretrain", *TINY_PRETRAIN,
                     f"data.paths=[{small_dataset / 'episodes'}]", f"out_dir={out}")
    assert result.returncode == 0, result.stderr
    return out


def probe_cli(*args: str):
    return run_cli("-m", "jepa_world.probe", *args)


def probe_main(capsys, *args: str) -> SimpleNamespace:
    """The command run in this process (no interpreter start-up): exit status and output."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_command(main, list(args))
    out = capsys.readouterr()
    return SimpleNamespace(returncode=exit_info.value.code, stdout=out.out, stderr=out.err)


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory, checkpoint, small_dataset):
    out = tmp_path_factory.mktemp("probe_json") / "metrics.json"
    args = [f"checkpoint={checkpoint}", f"data.train={small_dataset}", *TINY_PROBE]
    result = probe_cli(*args, f"json={out}")
    assert result.returncode == 0, result.stderr
    return result, json.loads(out.read_text()), args


def test_regression_compares_pretrained_and_random(regression_run, small_dataset):
    result, metrics, _ = regression_run
    table = result.stdout
    for needle in ("pretrained", "random", "gap", "mean R^2", "fingertip1", "joint_sincos3"):
        assert needle in table, table
    assert metrics["task"] == "regression" and metrics["metric"] == "mean_r2"
    # The task's default targets, as the dataset records them (no geometry in the probe).
    assert metrics["targets"] == [f"joint_sincos{j}" for j in range(4)] + [
        "fingertip0", "fingertip1"]
    assert set(metrics["results"]) == {"pretrained", "random"}
    for res in metrics["results"].values():
        assert set(res["r2"]) == set(metrics["targets"])
        values = [res["mean_r2"], res["train_mean_r2"], res["final_loss"], *res["r2"].values()]
        assert all(math.isfinite(v) for v in values), res
    gap = metrics["results"]["pretrained"]["mean_r2"] - metrics["results"]["random"]["mean_r2"]
    assert metrics["gap"] == pytest.approx(gap)
    # 4 episodes of 20 steps = 84 frames; whole episodes held out (one of four at 20%).
    data = metrics["data"]
    assert data["train_samples"] + data["val_samples"] == 84 and data["val_samples"] == 21
    assert not set(data["train_episodes"]) & set(data["val_episodes"])
    enc = metrics["encoder"]
    assert enc["resolution"] == 32 and enc["frames_per_sample"] == 1
    assert enc["tokens_per_sample"] == 16  # (32 / 8)^2 patches, one tubelet
    assert metrics["config"]["probe"]["steps"] == 60


def test_same_seed_gives_the_same_numbers(regression_run):
    _, metrics, args = regression_run
    again = evaluate(load_config("probe", args))  # in this process, vs. the CLI's run

    def numbers(m):
        return {name: {k: v for k, v in res.items() if k != "probe_seconds"}
                for name, res in m["results"].items()}

    assert numbers(again) == numbers(metrics)


def test_clips_as_regression_inputs(checkpoint, small_dataset):
    cfg = load_config("probe", [f"checkpoint={checkpoint}", f"data.train={small_dataset}",
                                "data.frames_per_clip=2", "data.frame_step=3",
                                "compare_random=false", "targets=[qvel]", *TINY_PROBE])
    metrics = evaluate(cfg)
    # A clip ends at its labelled frame: frames 3..20 of each episode can end a 2-frame clip.
    assert metrics["data"]["train_samples"] + metrics["data"]["val_samples"] == 4 * 18
    assert set(metrics["results"]) == {"pretrained"} and metrics["gap"] is None
    assert metrics["targets"] == ["qvel0", "qvel1"]


def write_index(path: Path, episodes: Path, ids: list[int], relative: bool = True) -> Path:
    lines = ["# episode mp4s labelled by parity", ""]
    for i in ids:
        video = episodes / f"{i:06d}" / "frames.mp4"
        lines.append(f"{video.relative_to(path.parent) if relative else video} "
                     f"{'odd' if i % 2 else 'even'}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture()
def index_dir(tmp_path, small_dataset) -> Path:
    # Relative paths in the index files resolve against the index file's folder.
    (tmp_path / "videos").symlink_to(small_dataset / "episodes")
    return tmp_path


def test_classification_from_index_files(index_dir, checkpoint, capsys):
    train = write_index(index_dir / "train.txt", index_dir / "videos", [0, 1, 2, 3])
    val = write_index(index_dir / "val.txt", index_dir / "videos", [1, 2])
    out = index_dir / "metrics.json"
    result = probe_main(capsys, f"checkpoint={checkpoint}", "task=classification",
                        f"data.index_train={train}", f"data.index_val={val}",
                        "data.num_workers=1", *TINY_PROBE, f"json={out}")
    assert result.returncode == 0, result.stderr
    assert "top-1 accuracy" in result.stdout and "chance" in result.stdout
    metrics = json.loads(out.read_text())
    assert metrics["data"]["classes"] == ["even", "odd"]
    assert metrics["data"]["train_samples"] == 4 and metrics["data"]["val_samples"] == 2
    assert metrics["encoder"]["frames_per_sample"] == 4  # the pretraining clip length
    for res in metrics["results"].values():
        assert 0.0 <= res["accuracy"] <= 1.0 and 0.0 <= res["train_accuracy"] <= 1.0


def test_low_shot_inverse_dynamics_and_a_compared_encoder(checkpoint, small_dataset):
    """Low-shot mode: fractions of the training episodes, several subsets each, the same val
    samples; motion targets (qvel, the action between frames) from 2-frame clips; a third
    encoder (here the same run under another name) in the same table."""
    args = [f"checkpoint={checkpoint}", f"data.train={small_dataset}", "data.frames_per_clip=2",
            "data.frame_step=1", "targets=[qvel,action]", "low_shot.fractions=[0.34,0.67,1]",
            "low_shot.splits=2", f"+compare.again={checkpoint}", *TINY_PROBE]
    metrics = evaluate(load_config("probe", args))
    assert metrics["targets"] == ["qvel0", "qvel1", "action0", "action1"]
    assert set(metrics["results"]) == {"pretrained", "random", "again"}
    low = metrics["low_shot"]
    assert set(low) == {"pretrained", "random", "again"}
    per_episode = 20  # frames 1..20 of each episode end a 2-frame clip
    assert metrics["data"]["train_samples"] == 3 * per_episode
    for name, fractions in low.items():
        assert list(fractions) == ["0.34", "0.67", "1"]
        # 1 and 2 of the 3 training episodes, whole; all of them once at 100 %
        assert fractions["0.34"]["train_samples"] == [per_episode, per_episode]
        assert fractions["0.67"]["train_samples"] == [2 * per_episode] * 2
        assert (fractions["0.34"]["groups"], fractions["0.34"]["of_groups"]) == (1, 3)
        assert fractions["1"]["splits"] == 1
        assert fractions["1"]["mean"] == pytest.approx(metrics["results"][name]["mean_r2"])
        for entry in fractions.values():
            assert math.isfinite(entry["mean"]) and entry["std"] >= 0
            assert set(entry["targets"]) == set(metrics["targets"])
    # The same encoder under two names gives the same numbers: the subsets depend on the seed
    assert low["again"]["0.34"] == low["pretrained"]["0.34"]
    assert "low-shot" in format_report(metrics) and "action1 rmse 34%" in format_report(metrics)
    # whole episodes cannot make 34 % of 3: the row says what was used
    assert "34%: 1/3 = 33%" in format_report(metrics)


def test_low_shot_subsets_are_whole_episodes_and_reproducible():
    groups = np.repeat(np.arange(20), 5)  # 20 episodes of 5 labelled frames
    for fraction, episodes in ((0.05, 1), (0.1, 2), (0.5, 10), (1.0, 20)):
        chosen = low_shot_subset(groups, fraction, seed=0, split=0)
        assert len(np.unique(groups[chosen])) == episodes
        assert len(chosen) == 5 * episodes  # every frame of a chosen episode
        assert np.array_equal(chosen, low_shot_subset(groups, fraction, seed=0, split=0))
    splits = [set(low_shot_subset(groups, 0.1, seed=0, split=s)) for s in range(3)]
    assert len({frozenset(s) for s in splits}) > 1  # the splits differ
    by_seed = {frozenset(low_shot_subset(groups, 0.1, seed=k, split=0)) for k in range(4)}
    assert len(by_seed) > 1  # and so does the seed


def test_action_target_is_the_mean_action_between_frames():
    actions = np.arange(12, dtype=np.float32).reshape(6, 2)  # 6 steps, 7 frames
    values = target_values("action", {"actions": actions}, frame_step=2)
    assert values.shape == (7, 2) and np.isnan(values[:2]).all()
    assert np.allclose(values[2], actions[0:2].mean(0))
    assert np.allclose(values[6], actions[4:6].mean(0))


# ---------------------------------------------------------------------------- bad input
def test_missing_checkpoint_is_one_line(tmp_path, small_dataset):
    result = probe_cli(f"checkpoint={tmp_path / 'nothing'}", f"data.train={small_dataset}")
    assert_one_line_error(result, "pretrained encoder not found", "nothing")


def test_unknown_task_is_one_line(checkpoint, capsys):
    result = probe_main(capsys, f"checkpoint={checkpoint}", "task=segmentation")
    assert_one_line_error(result, "unknown task 'segmentation'", "regression, classification")


def test_index_with_missing_video_is_one_line(index_dir, checkpoint, capsys):
    index = write_index(index_dir / "train.txt", index_dir / "videos", [0, 1])
    with index.open("a") as handle:
        handle.write("videos/000009/frames.mp4 odd\n")
    result = probe_main(capsys, f"checkpoint={checkpoint}", "task=classification",
                        f"data.index_train={index}")
    assert_one_line_error(result, "train.txt:5", "video not found", "000009")


def test_more_bad_input(index_dir, checkpoint, small_dataset):
    def fails(*args: str, match: str) -> None:
        with pytest.raises(UserError, match=match):
            evaluate(load_config("probe", [f"checkpoint={checkpoint}", *TINY_PROBE, *args]))

    malformed = index_dir / "malformed.txt"
    malformed.write_text("videos/000000/frames.mp4\n")
    fails("task=classification", f"data.index_train={malformed}", match="expected 'path label'")
    fails(f"data.train={small_dataset}", "targets=[elbow]", match="unknown target 'elbow'")
    fails(f"data.train={index_dir / 'nowhere'}", match="not found")
    fails(f"data.train={small_dataset}", "data.frames_per_clip=3", match="tubelet")
    fails(f"data.train={small_dataset}", "probe.num_heads=5", match="does not divide")
    fails(f"data.train={small_dataset}", "low_shot.fractions=[0.1,0]", match=r"\(0, 1\], got 0")
    fails(f"data.train={small_dataset}", "low_shot.fractions=[1.5]", match=r"\(0, 1\], got 1.5")
    fails(f"data.train={small_dataset}", "low_shot.splits=0", match="low_shot.splits")
    fails(f"data.train={small_dataset}", f"+compare.random={small_dataset}", match="compare.random")
    fails(f"data.train={small_dataset}", "targets=[action]", match="data.frames_per_clip=2")
    # An unreadable video is an error, never silently replaced by another (mislabelled) one.
    junk = index_dir / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    index = write_index(index_dir / "junk.txt", index_dir / "videos", [0])
    with index.open("a") as handle:
        handle.write("junk.mp4 odd\n")
    fails("task=classification", f"data.index_train={index}", f"data.index_val={index}",
          "data.num_workers=1", match="cannot decode video .*junk.mp4")


def test_unreadable_video_is_an_error_line(index_dir, checkpoint, capsys):
    junk = index_dir / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    index = index_dir / "junk.txt"
    index.write_text("junk.mp4 0\n")
    result = probe_main(capsys, f"checkpoint={checkpoint}", "task=classification",
                        f"data.index_train={index}", f"data.index_val={index}",
                        "data.num_workers=0")
    assert result.returncode == 2
    assert_error_line(result, "cannot decode video", "junk.mp4")


# ------------------------------------------------------------------------------ pieces
def test_probe_learns_a_linear_function_of_the_tokens():
    """On an easy synthetic case (targets linear in the mean token) the probe fits R^2 > 0.9."""
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randn(1000, 8, 32, generator=gen)
    weights = torch.randn(32, 3, generator=gen)
    targets = tokens.mean(1) @ weights
    targets = (targets - targets.mean(0)) / targets.std(0)
    settings = ProbeSettings(steps=400, batch_size=64, lr=3e-3, warmup_steps=20, num_heads=4)
    probe, loss = train_probe(tokens[:900], targets[:900], "regression", 3, settings, seed=0)
    r2 = r2_scores(targets[900:], predict(probe, tokens[900:]))
    assert isinstance(probe, AttentiveProbe) and math.isfinite(loss)
    assert float(r2.min()) > 0.9, r2


def test_probe_shapes_and_classification():
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randn(200, 5, 16, generator=gen)
    labels = (tokens[:, :, 0].mean(1) > 0).long()
    probe = AttentiveProbe(16, 2, num_heads=2)
    assert probe(tokens[:7]).shape == (7, 2)
    settings = ProbeSettings(steps=200, batch_size=50, lr=3e-3, warmup_steps=10, num_heads=2)
    probe, _ = train_probe(tokens[:150], labels[:150], "classification", 2, settings, seed=0)
    accuracy = (predict(probe, tokens[150:]).argmax(1) == labels[150:]).float().mean()
    assert accuracy > 0.85


def test_recorded_targets_come_from_the_task(small_dataset):
    """The probe's state targets are the task's own arrays, recorded with the episodes."""
    import envs
    from jepa_world.data import EpisodeDataset

    data = EpisodeDataset(small_dataset)
    assert data.probe_targets == ["joint_sincos", "fingertip"]
    arrays = data.arrays(0)
    task = envs.make_task("reach")
    task.reset(seed=0)
    for qpos, tip, sincos in zip(arrays["qpos"][:5], arrays["fingertip"][:5],
                                 arrays["joint_sincos"][:5], strict=True):
        np.testing.assert_allclose(tip, task.fingertip_position(qpos), atol=1e-6)
        np.testing.assert_allclose(sincos[::2], np.sin(qpos), atol=1e-6)
    task.close()


def test_episode_split_is_whole_episodes_and_fixed():
    train, val = split_episodes([6, 4], 0.2, seed=0)
    assert len(val) == 2 and len(train) == 8
    assert not set(train) & set(val) and set(train) | set(val) == {
        (d, e) for d, n in enumerate([6, 4]) for e in range(n)
    }
    assert split_episodes([6, 4], 0.2, seed=0) == (train, val)
    with pytest.raises(UserError, match="only 1 episode"):
        split_episodes([1], 0.2, seed=0)


def test_random_encoder_has_the_same_architecture():
    from jepa_world.models import vit_encoder

    encoder = vit_encoder("micro", img_size=32, patch_size=8, num_frames=4)
    a, b = fresh_like(encoder, seed=5), fresh_like(encoder, seed=5)
    c = fresh_like(encoder, seed=6)
    shapes = {k: v.shape for k, v in encoder.state_dict().items()}
    assert {k: v.shape for k, v in a.state_dict().items()} == shapes
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in shapes)
    assert not torch.equal(a.blocks[0].attn.qkv.weight, c.blocks[0].attn.qkv.weight)
    assert not any(p.requires_grad for p in a.parameters()) and not a.training
