"""Recording datasets: real rollouts, real mp4 written by ffmpeg and decoded by decord."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import decord
import numpy as np
import pytest
import torch

from envs.collect import CollectConfig, CollectError, EpisodeJob, collect, rollout
from envs.dataset_format import DatasetError
from jepa_world.data import EpisodeDataset, WindowDataset
from tests.conftest import assert_one_line_error, run_cli


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_round_trip_through_decord_is_exact(small_dataset):
    manifest = json.loads((small_dataset / "manifest.json").read_text())
    assert manifest["env_id"] == "jepa_world/Reach-v0"
    assert manifest["image_size"] == 64
    assert [e["seed"] for e in manifest["episodes"]] == [100, 101, 102, 103]
    assert [e["length"] for e in manifest["episodes"]] == [20] * 4
    assert {"python", "numpy", "mujoco", "gymnasium", "imageio_ffmpeg"} <= set(
        manifest["software"]
    )
    # Re-running the same rollout gives the pixels that decord reads back, bit for bit.
    config = CollectConfig("jepa_world/Reach-v0", steps=20)
    expected = rollout(EpisodeJob(2, 102, str(small_dataset), config))
    reader = decord.VideoReader(str(small_dataset / "episodes" / "000002" / "frames.mp4"))
    assert len(reader) == 21
    np.testing.assert_array_equal(reader.get_batch(list(range(21))).asnumpy(), expected["frames"])
    arrays = np.load(small_dataset / "episodes" / "000002" / "arrays.npz")
    for key in ("actions", "proprio", "qpos", "qvel", "rewards"):
        np.testing.assert_array_equal(arrays[key], expected[key])
    assert arrays["actions"].shape == (20, 2) and arrays["proprio"].shape == (21, 6)


def test_reader_random_access(small_dataset):
    data = EpisodeDataset(small_dataset)
    assert len(data) == 4 and data.image_size == 64 and data.seeds == [100, 101, 102, 103]
    window = data.window(1, start=3, num_frames=4, frame_step=5)
    assert window["frames"].shape == (4, 64, 64, 3) and window["frames"].dtype == np.uint8
    assert window["actions"].shape == (3, 5, 2)
    full = data.arrays(1)
    np.testing.assert_array_equal(window["actions"].reshape(-1, 2), full["actions"][3:18])
    np.testing.assert_array_equal(window["proprio"], full["proprio"][[3, 8, 13, 18]])
    np.testing.assert_array_equal(window["frames"][2], data.frames(1)[13])
    with pytest.raises(IndexError):
        data.window(1, start=6, num_frames=4, frame_step=5)
    windows = WindowDataset(data, num_frames=3, frame_step=2, stride=4)
    assert len(windows) == 4 * 5  # starts 0, 4, 8, 12, 16 in each 20-step episode
    loader = torch.utils.data.DataLoader(windows, batch_size=4, num_workers=2, shuffle=False)
    batch = next(iter(loader))
    assert batch["frames"].shape == (4, 3, 64, 64, 3) and batch["actions"].shape == (4, 2, 2, 2)
    np.testing.assert_array_equal(batch["frames"][1].numpy(), windows[1]["frames"])


READ_THEN_LOAD = """
import sys, torch
from jepa_world.data import EpisodeDataset, WindowDataset
data = EpisodeDataset(sys.argv[1])
data.window(episode=3, start=0, num_frames=4, frame_step=5)  # opens a decord reader here
loader = torch.utils.data.DataLoader(WindowDataset(data, num_frames=4, frame_step=5),
                                     batch_size=8, shuffle=True, num_workers=2)
print(sum(len(batch["frames"]) for batch in loader))
"""


def test_reading_a_window_then_forking_loader_workers_does_not_hang(small_dataset):
    # The README's reading snippet: a decord reader open in the parent when the DataLoader forks
    # its workers used to leave them waiting forever on the reader's decoder threads.
    child = subprocess.Popen([sys.executable, "-c", READ_THEN_LOAD, str(small_dataset)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[1], start_new_session=True)
    try:
        out, err = child.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)  # the hung workers too, not only their parent
        child.communicate()
        pytest.fail("reading a window, then iterating a DataLoader with workers, hung")
    assert child.returncode == 0, err
    assert int(out.split()[-1]) == 4 * 6  # starts 0..5 of each 20-step episode


def test_parallel_workers_match_serial(tmp_path):
    collect("reach", 3, tmp_path / "one", steps=10, workers=1, seed=5, progress=False)
    collect("reach", 3, tmp_path / "two", steps=10, workers=2, seed=5, progress=False)
    one, two = _tree_digest(tmp_path / "one"), _tree_digest(tmp_path / "two")
    episodes = [k for k in one if k.startswith("episodes/")]
    assert len(episodes) == 9
    assert {k: one[k] for k in episodes} == {k: two[k] for k in episodes}


def test_append_keeps_existing_episodes(tmp_path):
    root = tmp_path / "data"
    collect("reach", 2, root, steps=8, workers=1, seed=10, progress=False)
    before = _tree_digest(root / "episodes")
    summary = collect("reach", 3, root, steps=8, workers=2, seed=10, progress=False)
    assert summary["recorded"] == 3 and summary["total_episodes"] == 5
    after = _tree_digest(root / "episodes")
    assert {k: after[k] for k in before} == before
    data = EpisodeDataset(root)
    assert [e["index"] for e in data.entries] == [0, 1, 2, 3, 4]
    assert data.seeds == [10, 11, 12, 13, 14]
    with pytest.raises(CollectError, match="already recorded"):
        collect("reach", 1, root, steps=8, seed=9, progress=False)  # index 5 -> seed 14
    with pytest.raises(DatasetError, match="image_size"):
        collect("reach", 1, root, steps=8, image_size=32, seed=50, progress=False)


def test_interrupted_run_leaves_no_partial_episode(tmp_path):
    root = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "envs.collect", "--env", "reach", "--episodes", "400",
         "--steps", "40", "--out", str(root), "--workers", "1", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        manifest = root / "manifest.json"
        if manifest.exists() and len(json.loads(manifest.read_text())["episodes"]) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    data = EpisodeDataset(root)  # every listed episode is complete and readable
    recorded = len(data)
    assert 2 <= recorded < 400
    for i in range(recorded):
        assert data.frames(i).shape == (41, 64, 64, 3)
    # A half-written episode (a killed ffmpeg) is never listed and is cleaned on the next run.
    stale = root / "episodes" / ".tmp-999999-1"
    stale.mkdir()
    (stale / "frames.mp4").write_bytes(b"\x00" * 10)
    summary = collect("reach", 1, root, steps=40, workers=1, progress=False)
    assert summary["total_episodes"] == recorded + 1
    assert not stale.exists()


def test_episode_left_out_of_manifest_is_adopted(tmp_path):
    root = tmp_path / "data"
    collect("reach", 3, root, steps=5, workers=1, progress=False)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["episodes"].pop()  # a crash between the rename and the manifest update
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert len(EpisodeDataset(root)) == 3
    summary = collect("reach", 1, root, steps=5, workers=1, progress=False)
    assert summary["total_episodes"] == 4
    assert [e["index"] for e in EpisodeDataset(root).entries] == [0, 1, 2, 3]


def test_cli_prints_summary(tmp_path):
    result = run_cli("-m", "envs.collect", "--env", "reach", "--episodes", "2", "--steps", "5",
                     "--out", str(tmp_path / "d"), "--workers", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "recorded 2 episodes (12 frames)" in result.stdout
    assert "recording" in result.stderr  # the progress bar


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--env", "pushy", "--episodes", "2"], "unknown env 'pushy'"),
        (["--env", "reach", "--episodes", "0"], "--episodes must be positive"),
        (["--env", "reach", "--episodes", "-3"], "--episodes must be positive"),
        (["--env", "reach", "--episodes", "1", "--image-size", "1000"], "image_size"),
    ],
)
def test_cli_bad_arguments(tmp_path, args, needle):
    result = run_cli("-m", "envs.collect", *args, "--out", str(tmp_path / "d"), "--quiet")
    assert_one_line_error(result, needle)


def test_cli_unwritable_output(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run_cli("-m", "envs.collect", "--env", "reach", "--episodes", "1",
                     "--out", str(blocker / "data"), "--quiet")
    assert_one_line_error(result, "cannot write to output folder")
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("damage", ["missing_video", "truncated_arrays", "corrupt_manifest"])
def test_damaged_dataset_is_reported_and_untouched(tmp_path, small_dataset, damage):
    root = tmp_path / "data"
    shutil.copytree(small_dataset, root)
    episode = root / "episodes" / "000001"
    if damage == "missing_video":
        (episode / "frames.mp4").unlink()
        needle = "missing file"
    elif damage == "truncated_arrays":
        payload = (episode / "arrays.npz").read_bytes()
        (episode / "arrays.npz").write_bytes(payload[: len(payload) // 2])
        needle = "truncated"
    else:
        (root / "manifest.json").write_text('{"format": "jepa-world-ep')
        needle = "unreadable"
    before = _tree_digest(root)
    result = run_cli("-m", "envs.collect", "--env", "reach", "--episodes", "1", "--steps", "20",
                     "--out", str(root), "--quiet")
    assert_one_line_error(result, needle)
    assert _tree_digest(root) == before  # nothing recorded is lost or changed
    with pytest.raises(DatasetError, match=needle):
        EpisodeDataset(root)


def test_reader_reports_bad_folders(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        EpisodeDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="manifest not found"):
        EpisodeDataset(tmp_path / "empty")
