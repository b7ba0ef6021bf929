"""A run is what it trained on and how: resumed or rerun under other data or settings, it is
refused in one line; its world model is written whole; its folder's lock dies with it."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from jepa_world.files import FolderInUseError, exclusive
from tests.conftest import assert_one_line_error, run_cli
from tests.test_world_model import pretrained, tiny_model, train_ac  # noqa: F401 (fixture)

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture
def growing_dataset(tmp_path, small_dataset):
    copy = tmp_path / "data"
    shutil.copytree(small_dataset, copy)
    return copy


def _append_episode(dataset):
    from envs.collect import collect

    collect("reach", 1, dataset, steps=20, workers=1, seed=500, progress=False)


def test_train_ac_refuses_data_that_grew_under_the_same_path(tmp_path, pretrained,  # noqa: F811
                                                             growing_dataset):
    common = ("train.steps=4", "train.checkpoint_every=2", "train.eval_every=2")
    done, early = tmp_path / "done", tmp_path / "early"
    assert train_ac(done, pretrained, growing_dataset, *common).returncode == 0
    assert train_ac(early, pretrained, growing_dataset, *common,
                    "train.stop_at_step=2").returncode == 0
    recorded = (done / "world_model" / "provenance.json").read_bytes()
    _append_episode(growing_dataset)
    finished = train_ac(done, pretrained, growing_dataset, *common)
    assert_one_line_error(finished, "trained on other data", "4 episodes then, 5 episodes now")
    assert (done / "world_model" / "provenance.json").read_bytes() == recorded
    resumed = train_ac(early, pretrained, growing_dataset, *common)
    assert_one_line_error(resumed, "trained on other data")
    assert torch.load(early / "checkpoint.pt", weights_only=True)["step"] == 2


def test_an_unfinished_run_refuses_other_settings(tmp_path, pretrained,  # noqa: F811
                                                  small_dataset):
    out = tmp_path / "ac"
    common = ("train.steps=4", "train.checkpoint_every=2", "train.eval_every=2")
    assert train_ac(out, pretrained, small_dataset, *common,
                    "train.stop_at_step=2").returncode == 0
    changed = train_ac(out, pretrained, small_dataset, *common, "train.lr=0.001")
    assert_one_line_error(changed, "unfinished run (at step 2)", "train.lr")
    # how a run is executed may change: it resumes and finishes
    resumed = train_ac(out, pretrained, small_dataset, *common, "train.log_every=1")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr


def test_the_same_dataset_twice_is_refused(tmp_path, pretrained, small_dataset):  # noqa: F811
    twice = run_cli("-m", "jepa_world.train_ac", f"encoder.checkpoint={pretrained}",
                    f"data.paths=[{small_dataset},{small_dataset}/.]", f"out_dir={tmp_path / 'x'}")
    assert_one_line_error(twice, "data.paths names the same dataset twice")
    readout = run_cli("-m", "jepa_world.readout", "--env", "reach", "--data", str(small_dataset),
                      str(small_dataset), "--out", str(tmp_path / "r"))
    assert_one_line_error(readout, "--data names the same dataset twice")
    other_task = run_cli("-m", "jepa_world.readout", "--env", "push", "--data",
                         str(small_dataset), "--out", str(tmp_path / "r"))
    assert_one_line_error(other_task, "records jepa_world/Reach-v0, not push")


def test_a_finished_run_repairs_an_incomplete_world_model(tmp_path, pretrained,  # noqa: F811
                                                          small_dataset):
    out = tmp_path / "ac"
    common = ("train.steps=2", "train.checkpoint_every=2", "train.eval_every=2")
    assert train_ac(out, pretrained, small_dataset, *common).returncode == 0
    weights = (out / "world_model" / "weights.safetensors").read_bytes()
    (out / "world_model" / "config.json").unlink()  # killed between two files, old style
    again = train_ac(out, pretrained, small_dataset, *common)
    assert again.returncode == 0 and "nothing was changed" not in again.stderr, again.stderr
    assert (out / "world_model" / "config.json").is_file()
    assert (out / "world_model" / "weights.safetensors").read_bytes() == weights


def test_a_failed_world_model_save_keeps_the_previous_folder(tmp_path, monkeypatch):
    import jepa_world.files as files

    model = tiny_model()
    folder = model.save(tmp_path / "wm", provenance={"run": 1})
    kept = {p.name: p.read_bytes() for p in folder.iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "wm" / "config.json"))

    monkeypatch.setattr(files, "write_json_atomic", full_disk)
    with pytest.raises(OSError):
        model.save(folder, provenance={"run": 2})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wm"]  # no staging left behind


def test_the_lock_is_not_kept_by_a_killed_runs_forked_children(tmp_path):
    """DataLoader workers are forked children: they must not keep a killed run's lock."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, sys, time
        from jepa_world.files import exclusive
        with exclusive({str(tmp_path)!r}, "a holder"):
            child = os.fork()
            if child == 0:  # a worker that outlives its parent
                time.sleep(30)
                os._exit(0)
            print(child, flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    child = int(holder.stdout.readline())
    try:
        with pytest.raises(FolderInUseError):
            with exclusive(tmp_path, "a second run"):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        with exclusive(tmp_path, "the next run"):  # at once, with the child still alive
            pass
    finally:
        import os

        os.kill(child, signal.SIGKILL)


def test_one_process_cannot_take_a_folder_twice(tmp_path):
    with exclusive(tmp_path, "a run"):
        with pytest.raises(FolderInUseError, match="a nested run is already writing"):
            with exclusive(tmp_path, "a nested run"):
                pass
    with exclusive(tmp_path, "a later run"):
        pass


def test_a_pretrain_run_refuses_a_corpus_that_changed(tmp_path, small_dataset):
    from tests.test_pretrain import pretrain

    corpus = tmp_path / "videos"
    shutil.copytree(small_dataset / "episodes", corpus)
    run = tmp_path / "run"
    assert pretrain(run, corpus, "train.steps=1").returncode == 0
    extra = sorted(corpus.rglob("*.mp4"))[0]
    shutil.copy(extra, corpus / "extra.mp4")
    again = pretrain(run, corpus, "train.steps=1")
    assert_one_line_error(again, "trained on other data", "4 videos then, 5 videos now")


def test_json_state_of_a_distillation_is_checked(tmp_path):
    from jepa_world.distill import read_state
    from jepa_world.training.cli import UserError

    for damaged in ("{}", "[]", '{"config": {}}', "{"):
        (tmp_path / "state.json").write_text(damaged)
        with pytest.raises(UserError, match="state.json"):
            read_state(tmp_path, {})


def test_a_second_readout_into_the_same_folder_is_refused(tmp_path, small_dataset):
    out = tmp_path / "readout"
    out.mkdir()
    with exclusive(out, "a first readout"):
        second = run_cli("-m", "jepa_world.readout", "--env", "reach", "--data",
                         str(small_dataset), "--out", str(out), "--steps", "5")
    assert_one_line_error(second, "another jepa_world.readout is already writing")
    assert list(out.iterdir()) == [out / ".lock"]


SEEDS = [("seed=-1", "seed must be an integer in [0, 2147483647], got -1"),
         (f"seed={2**63 - 1}", "seed must be an integer in [0, 2147483647]")]
DEVICE = [("device=cuda:x", "device must be auto, cpu, cuda or cuda:N, got 'cuda:x'")]


@pytest.mark.parametrize("command, override, needle", [
    *[(c, o, n) for c in ("pretrain", "train_ac", "probe") for o, n in SEEDS + DEVICE],
    *[("distill", o, n) for o, n in SEEDS],  # distill runs on the CPU: it takes no device
])
def test_seeds_and_devices_are_checked_once_in_every_schema(command, override, needle):
    from jepa_world.schemas.distill import DistillConfig
    from jepa_world.schemas.pretrain import PretrainConfig
    from jepa_world.schemas.probe import ProbeConfig
    from jepa_world.schemas.train_ac import TrainACConfig
    from jepa_world.training.cli import UserError, load_config, typed_config

    schema = {"pretrain": PretrainConfig, "train_ac": TrainACConfig, "probe": ProbeConfig,
              "distill": DistillConfig}[command]
    with pytest.raises(UserError, match=re.escape(needle)):
        typed_config(schema, load_config(command, [override]))


def test_mpc_checks_its_device_before_loading_anything():
    result = run_cli("-m", "planners.mpc", "--env", "reach", "device=cuda:x")
    assert_one_line_error(result, "device must be auto, cpu, cuda or cuda:N")
