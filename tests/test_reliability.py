"""Faults injected for real (a file-size limit standing in for a full disk, SIGKILL, a second
process on the same folder): what the project already wrote must survive each of them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from jepa_world.files import (
    FolderInUseError,
    atomic_open,
    exclusive,
    remove_stale_tmp,
    replace_folder,
    swap_folder,
    write_json_atomic,
)
from jepa_world.training.logger import RunLogger, trim_logs
from jepa_world.training.run_dir import changed_settings

REPO = Path(__file__).resolve().parents[1]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"success_rate": 0.9})
    with pytest.raises(RuntimeError), atomic_open(path) as handle:
        handle.write('{"success_rate": 0.')
        raise RuntimeError("the writer died half-way")
    assert json.loads(path.read_text()) == {"success_rate": 0.9}
    assert leftovers(tmp_path) == []


def test_a_failed_folder_replacement_keeps_the_old_folder(tmp_path):
    """What build --install and distill install=true go through."""
    target = tmp_path / "reach"
    replace_folder(target, lambda staging: (staging / "weights").write_text("old"))

    def dies_half_way(staging: Path) -> None:
        (staging / "weights").write_text("half")
        raise RuntimeError("the copy died half-way")

    with pytest.raises(RuntimeError):
        replace_folder(target, dies_half_way)
    assert (target / "weights").read_text() == "old" and leftovers(tmp_path) == []
    replace_folder(target, lambda staging: (staging / "config").write_text("new"))
    assert [p.name for p in target.iterdir()] == ["config"] and leftovers(tmp_path) == []


def test_a_swap_left_half_done_by_a_crash_is_finished_by_the_next_swap(tmp_path):
    """A kill between moving the old folder aside and deleting it leaves the aside copy; the
    next swap (distill's pending policy, replace_folder) clears it and keeps only the new."""
    target, aside = tmp_path / "policy", tmp_path / ".tmp-old-policy"
    aside.mkdir()
    (aside / "weights").write_text("older")
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "weights").write_text("new")
    swap_folder(staging, target)  # no target yet: the staging folder becomes it
    assert (target / "weights").read_text() == "new" and not staging.exists()
    assert not aside.exists()
    staging.mkdir()
    (staging / "weights").write_text("newer")
    swap_folder(staging, target)
    assert (target / "weights").read_text() == "newer" and leftovers(tmp_path) == []


def test_a_full_disk_keeps_the_old_file(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse writes past 4 KB, as a full disk would."""
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"success_rate": 0.9})
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        from jepa_world.files import write_json_atomic
        try:
            write_json_atomic({str(path)!r}, {{"episodes": list(range(100000))}})
        except OSError as exc:
            print(exc.errno)
            sys.exit(3)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert result.returncode == 3, result.stderr
    assert json.loads(path.read_text()) == {"success_rate": 0.9}
    assert leftovers(tmp_path) == []


def test_stale_temporary_files_are_removed_under_the_lock(tmp_path):
    (tmp_path / ".tmp-abc.json").write_text("{")
    (tmp_path / "kept.json").write_text("{}")
    with exclusive(tmp_path, "a test"):
        remove_stale_tmp(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "kept.json"]


def test_a_second_writer_is_refused_and_the_lock_dies_with_its_holder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from jepa_world.files import exclusive
            with exclusive({str(tmp_path)!r}, "a holder"):
                print("held", flush=True)
                time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderInUseError, match="a second run is already writing to"):
            with exclusive(tmp_path, "a second run"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with exclusive(tmp_path, "the next run"):  # a killed holder leaves no stale lock
        pass


def test_resumed_logs_keep_each_step_once(tmp_path):
    logger = RunLogger(tmp_path, True, tensorboard=False)
    for step in (10, 20, 30):
        logger.log(step, {"loss": 1.0 / step})
    with open(tmp_path / "log.jsonl", "a") as handle:
        handle.write('{"step": 40, "lo')  # killed while writing
    # the checkpoint holds step 20: 30 and the half line go, 20 stays once
    resumed = RunLogger(tmp_path, True, tensorboard=False, resume_step=20)
    resumed.log(30, {"loss": 0.5})
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30]
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0] == "step,loss" and [r.split(",")[0] for r in rows[1:]] == ["10", "20", "30"]
    trim_logs(tmp_path, 0)  # a fresh start in a folder whose run never checkpointed
    assert (tmp_path / "log.jsonl").read_text() == ""


def test_changed_settings_ignore_how_a_run_is_executed():
    saved = {"out_dir": "a", "device": "cpu", "train": {"lr": 1e-3, "betas": (0.9, 0.99),
                                                      "log_every": 10}}
    same = {"out_dir": "b", "device": "cuda", "train": {"lr": 1e-3, "betas": [0.9, 0.99],
                                                      "log_every": 5}}
    assert changed_settings(saved, same) == []
    other = {**same, "train": {**same["train"], "lr": 2e-3}}
    assert changed_settings(saved, other) == ["train.lr"]


def test_collect_killed_at_any_moment_leaves_a_dataset_the_next_run_adopts(tmp_path):
    from jepa_world.data.episodes import EpisodeDataset

    out = tmp_path / "data"
    command = [sys.executable, "-m", "envs.collect", "--env", "reach", "--episodes", "40",
               "--steps", "10", "--workers", "2", "--out", str(out), "--quiet"]
    run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    episodes = out / "episodes"
    while time.time() < deadline and not (
        episodes.is_dir() and any(not p.name.startswith(".") for p in episodes.iterdir())
    ):
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)  # the recorder and its workers, mid-flight
    run.wait()
    assert (out / "manifest.json").is_file()
    again = subprocess.run([*command[:6], "2", *command[7:]], cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    data = EpisodeDataset(out)
    assert len(data) >= 3 and len(set(data.seeds)) == len(data)


def test_a_video_on_a_full_disk_fails_loudly_and_leaves_no_file(tmp_path):
    """ffmpeg's exit status is checked: no undecodable file appears, the error says why."""
    path = tmp_path / "episode.mp4"
    script = textwrap.dedent(f"""
        import resource, signal, sys
        import numpy as np
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        from envs.video_io import VideoWriteError, write_mp4
        frames = np.random.default_rng(0).integers(0, 256, (20, 64, 64, 3), dtype=np.uint8)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
        try:
            write_mp4({str(path)!r}, frames, fps=10.0)
        except VideoWriteError as exc:
            print(exc)
            sys.exit(3)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "could not write" in result.stdout and "ffmpeg" in result.stdout
    assert not path.exists() and leftovers(tmp_path) == []


def test_a_video_round_trips_bit_exactly(tmp_path):
    import decord
    import numpy as np

    from envs.video_io import write_mp4

    frames = np.random.default_rng(1).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    write_mp4(tmp_path / "clip.mp4", frames, fps=20.0)
    decoded = decord.VideoReader(str(tmp_path / "clip.mp4")).get_batch(range(6)).asnumpy()
    assert np.array_equal(decoded, frames)


def test_atomic_files_get_the_usual_permissions(tmp_path):
    write_json_atomic(tmp_path / "a.json", {})
    (tmp_path / "b.json").write_text("{}")
    assert (tmp_path / "a.json").stat().st_mode == (tmp_path / "b.json").stat().st_mode
    import torch

    from jepa_world.files import save_safetensors_atomic

    save_safetensors_atomic({"w": torch.zeros(2)}, tmp_path / "w.safetensors")  # its own writer
    assert (tmp_path / "w.safetensors").stat().st_mode == (tmp_path / "b.json").stat().st_mode


@pytest.mark.parametrize("change, needle", [
    (lambda m: m.update(image_size="64"), "image_size must be an integer >= 1"),
    (lambda m: m["episodes"][0].update(length=-3), "length must be an integer >= 1"),
    (lambda m: m["episodes"][0].update(name="../../etc"), "is not a folder name"),
    (lambda m: m["episodes"][0].pop("files"), "files must be an object"),
    (lambda m: m["episodes"].append(7), "not a JSON object"),
], ids=["image-size-as-text", "negative-length", "path-as-name", "no-file-sizes", "not-an-object"])
def test_a_manifest_with_wrong_contents_is_one_line(tmp_path, small_dataset, change, needle):
    import shutil

    from tests.conftest import assert_one_line_error, run_cli

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    manifest = json.loads((data / "manifest.json").read_text())
    change(manifest)
    (data / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli("-m", "envs.collect", "--env", "reach", "--episodes", "1", "--steps", "5",
                     "--out", str(data), "--seed", "900", "--quiet")
    assert_one_line_error(result, needle)


def test_pretrain_killed_mid_run_resumes_with_each_step_logged_once(tmp_path, small_dataset):
    from tests.test_pretrain import TINY

    out = tmp_path / "run"
    command = [sys.executable, "-m", "jepa_world.pretrain", *TINY,
               f"data.paths=[{small_dataset / 'episodes'}]", f"out_dir={out}",
               "train.steps=30", "train.checkpoint_every=4"]
    run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    log = out / "log.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 7):
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)  # between checkpoints: steps 5-7 are logged, not saved
    run.wait()
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "resuming from" in again.stderr
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == list(range(1, 31))
    rows = (out / "log.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, 31))


def test_collect_on_a_full_disk_is_one_line_and_the_dataset_survives(tmp_path):
    from jepa_world.data.episodes import EpisodeDataset
    from tests.conftest import assert_one_line_error

    out = tmp_path / "data"
    args = ["--env", "reach", "--episodes", "2", "--steps", "8", "--out", str(out), "--quiet"]
    assert subprocess.run([sys.executable, "-m", "envs.collect", *args], cwd=REPO,
                          timeout=300).returncode == 0
    manifest = (out / "manifest.json").read_bytes()
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # no video fits
        from envs.collect import main
        sys.exit(main({[*args[:3], "1", *args[4:], "--seed", "50"]!r}))
    """)
    full = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert_one_line_error(full, "could not write", "completed episodes are kept")
    assert len(EpisodeDataset(out)) == 2
    assert json.loads((out / "manifest.json").read_bytes())["episodes"] == json.loads(
        manifest)["episodes"]
    again = subprocess.run([sys.executable, "-m", "envs.collect", *args[:3], "1", *args[4:],
                            "--seed", "50"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert len(EpisodeDataset(out)) == 3


def limited(command: list[str], limit: int) -> subprocess.CompletedProcess:
    """``command`` (python -m ...) with files capped at ``limit`` bytes, as on a full disk."""
    script = textwrap.dedent(f"""
        import resource, runpy, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        sys.argv = {[command[1], *command[2:]]!r}
        runpy.run_module({command[1]!r}, run_name="__main__", alter_sys=True)
    """)
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def test_mpc_json_on_a_full_disk_keeps_the_old_results(tmp_path):
    report = tmp_path / "metrics.json"
    report.write_text('{"success_rate": 0.94}\n')
    result = limited(["-m", "planners.mpc", "--env", "reach", "--model", "random", "--episodes",
                      "1", "--budget", "5", "--quiet", "--json", str(report)], 2048)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and len(errors) == 1, result.stderr
    assert "File too large" in errors[0] and "Traceback" not in result.stderr
    assert json.loads(report.read_text()) == {"success_rate": 0.94}
    assert leftovers(tmp_path) == []


def test_a_checkpoint_on_a_full_disk_keeps_the_last_one(tmp_path, small_dataset):
    from tests.test_pretrain import TINY

    out = tmp_path / "run"
    command = [sys.executable, "-m", "jepa_world.pretrain", *TINY,
               f"data.paths=[{small_dataset / 'episodes'}]", f"out_dir={out}",
               "train.steps=4", "train.checkpoint_every=2"]
    first = subprocess.run([*command, "train.stop_at_step=2"], cwd=REPO, capture_output=True,
                           text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    kept = (out / "checkpoint.pt").read_bytes()
    full = limited(command[1:], 64 * 1024)  # logs fit, a checkpoint does not
    errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert full.returncode != 0 and len(errors) == 1 and "File too large" in errors[0], full.stderr
    assert str(out / "checkpoint.pt") in errors[0]  # the file it could not write
    assert "Traceback" not in full.stderr
    assert (out / "checkpoint.pt").read_bytes() == kept and leftovers(out) == []
    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0 and "at step 2/4" in resumed.stderr, resumed.stderr


def test_safetensors_on_a_full_disk_is_an_os_error_naming_the_file(tmp_path):
    """A world model, a policy or a readout: safetensors' own error becomes the OSError that
    every command reports in one line, and the old file stays."""
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"old")
    script = textwrap.dedent(f"""
        import resource, signal, sys
        import torch
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        from jepa_world.files import describe_os_error, save_safetensors_atomic
        try:
            save_safetensors_atomic({{"w": torch.zeros(10000)}}, {str(path)!r})
        except OSError as exc:
            print(describe_os_error(exc))
            sys.exit(3)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert result.returncode == 3, result.stderr
    assert result.stdout.strip() == f"File too large: {path}"
    assert path.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_truncated_safetensors_weights_are_one_value_error(tmp_path):
    import torch

    from jepa_world.files import load_safetensors_into, save_safetensors_atomic

    layer = torch.nn.Linear(4, 4)
    path = tmp_path / "weights.safetensors"
    save_safetensors_atomic(layer.state_dict(), path)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ValueError, match="distilled policy weights .* are unusable"):
        load_safetensors_into(layer, path, "distilled policy")
