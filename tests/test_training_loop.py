"""The step loop the training commands share: cadence of logs and checkpoints, the non-finite
check before the weights move, and the RNG state handed over at the resume point."""

from __future__ import annotations

import json

import pytest
import torch

from jepa_world.training.logger import RunLogger
from jepa_world.training.loop import StepLoop, non_finite_message, optimiser_step
from jepa_world.training.runtime import NonFiniteLossError, Runtime, rng_state

CPU = Runtime(torch.device("cpu"))


def test_a_non_finite_loss_stops_before_the_weights_move():
    layer = torch.nn.Linear(3, 1)
    before = [p.detach().clone() for p in layer.parameters()]
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    loss = layer(torch.ones(2, 3)).sum() * float("nan")
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 7"):
        optimiser_step(CPU, optimizer, loss, layer.parameters(), 1.0, "step 7")
    assert all(torch.equal(a, b) for a, b in zip(before, layer.parameters(), strict=True))

    value, norm = optimiser_step(CPU, optimizer, layer(torch.ones(2, 3)).sum(),
                                 layer.parameters(), 0.5, "step 8")
    assert value == value and norm > 0.5  # the norm before clipping is reported
    assert not all(torch.equal(a, b) for a, b in zip(before, layer.parameters(), strict=True))


def _loop(tmp_path, start=0, total=7, stop_at=None, saved_rng=None, saves=None):
    logger = RunLogger(tmp_path, enabled=True, tensorboard=False, resume_step=start)
    return StepLoop(CPU, logger, start=start, total=total, stop_at_step=stop_at, log_every=3,
                    checkpoint_every=4, desc="test", progress=False,
                    save=lambda step, last: saves.append((step, dict(last))),
                    on_log=lambda step, means: {"doubled": 2 * means["loss"]},
                    saved_rng=saved_rng)


def test_logs_and_checkpoints_on_their_cadence_and_at_the_stop(tmp_path):
    saves: list = []
    loop = _loop(tmp_path, saves=saves)
    seen = []
    for step in loop:
        seen.append(step)
        loop.record({"loss": float(step)})
    assert seen == list(range(7)) and loop.steps_run == 7
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    # steps 1-3 average to 1.0, 4-6 to 4.0, and the stop logs the last step alone
    assert [(r["step"], r["loss"], r["doubled"]) for r in lines] == [
        (3, 1.0, 2.0), (6, 4.0, 8.0), (7, 6.0, 12.0)]
    assert [s for s, _ in saves] == [4, 7]
    assert saves[-1][1] == {"loss": 6.0, "doubled": 12.0}  # a checkpoint keeps what was logged


def test_stop_at_step_and_the_resumed_rng(tmp_path):
    saves: list = []
    torch.manual_seed(1)
    state = rng_state()
    expected = torch.rand(1)
    torch.manual_seed(99)  # start-up draws between loading and training
    loop = _loop(tmp_path, start=2, stop_at=5, saved_rng=state, saves=saves)
    drawn = []
    for step in loop:
        if step == 2:
            drawn.append(torch.rand(1))
        loop.record({"loss": 1.0})
    assert torch.equal(drawn[0], expected)
    assert loop.step == 5 and loop.steps_run == 3 and [s for s, _ in saves] == [4, 5]


def test_the_non_finite_message_names_the_kept_checkpoint(tmp_path):
    error = NonFiniteLossError("loss is nan at step 3")
    assert "no checkpoint had been written yet" in non_finite_message(error, tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    assert f"kept in {tmp_path / 'checkpoint.pt'}" in non_finite_message(error, tmp_path)


def test_a_slow_run_also_checkpoints_by_time(tmp_path, monkeypatch):
    # A step every minute and a checkpoint every 100 steps: without checkpoint_minutes a kill
    # would lose up to 100 minutes; with 5, the first log step 5 minutes after a save saves.
    import jepa_world.training.loop as loop_module

    clock = {"now": 0.0}
    monkeypatch.setattr(loop_module.time, "monotonic", lambda: clock["now"])
    saves: list = []
    logger = RunLogger(tmp_path, enabled=True, tensorboard=False, resume_step=0)
    loop = StepLoop(CPU, logger, start=0, total=10, stop_at_step=None, log_every=3,
                    checkpoint_every=100, checkpoint_minutes=5, desc="test", progress=False,
                    save=lambda step, last: saves.append(step))
    for step in loop:
        clock["now"] = 60.0 * (step + 1)
        loop.record({"loss": 1.0})
    assert saves == [6, 10]  # log steps 3, 6, 9: 3 minutes, 6 (saved), 3 since; the stop


def test_a_run_folder_gets_its_curves_as_a_png(tmp_path):
    from PIL import Image

    logger = RunLogger(tmp_path, enabled=True, tensorboard=True, resume_step=0)
    for step in range(1, 6):
        logger.log(step * 10, {"loss": 1.0 / step, "lr": 1e-3, "spread": float("nan")})
    assert not (tmp_path / "curves.png").exists()
    logger.close()
    with Image.open(tmp_path / "curves.png") as image:  # loss and lr; NaN-only spread left out
        assert image.format == "PNG" and image.size[0] > 300
    from jepa_world.training.curves import read_scalars

    assert set(read_scalars(tmp_path / "log.jsonl")) == {"loss", "lr"}
    (tmp_path / "empty").mkdir()
    from tests.conftest import assert_one_line_error, run_cli

    assert_one_line_error(run_cli("-m", "jepa_world.training.curves", str(tmp_path / "empty")),
                          "no logged scalars")
