"""V-JEPA self-supervised pretraining on video corpora.

    python -m jepa_world.pretrain                                  # CPU default on reach videos
    python -m jepa_world.pretrain data=video data.paths=[/videos,/lists/k400.txt] model=large
    torchrun --nproc_per_node 8 -m jepa_world.pretrain out_dir=runs/big ...   # DDP

Rerunning the same command with the same ``out_dir`` resumes from its last checkpoint.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from jepa_world.data.fingerprint import video_fingerprint
from jepa_world.data.video import (
    ClipSpec,
    CorpusError,
    VideoClipDataset,
    discover_videos,
    make_step_loader,
)
from jepa_world.files import write_text_atomic
from jepa_world.masks import MaskSpec, MultiBlockMaskSampler
from jepa_world.schemas.pretrain import PretrainConfig, VideoData
from jepa_world.training.checkpoint import (
    CHECKPOINT,
    checkpoint_must_fit,
    save_checkpoint,
)
from jepa_world.training.cli import UserError, load_config, run_command, typed_config
from jepa_world.training.logger import RunLogger
from jepa_world.training.loop import (
    DATA_KEY,
    StepLoop,
    for_training,
    non_finite_message,
    read_resume,
)
from jepa_world.training.optim import make_adamw, set_lr_and_wd
from jepa_world.training.run_dir import (
    finished,
    own_out_dir,
)
from jepa_world.training.runtime import (
    NonFiniteLossError,
    Runtime,
    seed_everything,
    setup_runtime,
)
from jepa_world.training.schedules import cosine, linear, warmup_cosine
from jepa_world.vjepa import (
    VJEPA,
    build_encoder,
    build_predictor,
    ema_update,
    make_target_encoder,
    pixel_targets,
    target_features,
)

# Settings that change what the weights mean: a resumed run must not change them.
_FIXED_ON_RESUME = ("objective", "model", "mask", "data.resolution", "data.frames_per_clip", "data.frame_step")


# ------------------------------------------------------------------------------------ data
def ensure_default_corpus(data_cfg: VideoData, rt: Runtime) -> None:
    """Record the task's videos with envs.collect when the default corpus is absent."""
    record = data_cfg.record
    paths = list(data_cfg.paths)
    if not record or paths != [f"{record.out}/episodes"] or Path(paths[0]).exists():
        return
    if rt.is_main:
        from envs.collect import collect

        print(
            f"recording the default corpus: {record.episodes} {record.env} episodes -> "
            f"{record.out} (once)",
            file=sys.stderr,
        )
        collect(
            record.env,
            int(record.episodes),
            record.out,
            steps=record.steps,
            image_size=data_cfg.resolution,
            seed=record.seed,
            workers=min(2, os.cpu_count() or 1),
        )
    rt.barrier()


def build_loader(
    cfg: PretrainConfig, rt: Runtime, start: int
) -> tuple[DataLoader, VideoClipDataset]:
    data = cfg.data
    spec = ClipSpec(
        frames_per_clip=data.frames_per_clip,
        frame_step=data.frame_step,
        resolution=data.resolution,
        crop_scale=tuple(data.crop_scale),
        crop_aspect=tuple(data.crop_aspect),
        hflip=data.hflip,
        train=True,
    )
    try:
        clips = VideoClipDataset(list(data.paths), spec, weights=data.weights, seed=cfg.seed)
    except (CorpusError, ValueError) as exc:
        raise UserError(str(exc)) from None
    loader = make_step_loader(
        clips,
        cfg.train.batch_size,
        start,
        cfg.train.steps,
        cfg.seed,
        rank=rt.rank,
        world_size=rt.world_size,
        num_workers=cfg.train.num_workers,
        pin_memory=rt.device.type == "cuda",
    )
    return loader, clips


# ------------------------------------------------------------------------------- training
def train(cfg: PretrainConfig, rt: Runtime) -> dict[str, Any]:
    """Pretrain as ``cfg`` says (``typed_config(PretrainConfig, composed)`` checked it),
    holding ``out_dir``'s lock."""
    with own_out_dir(cfg.out_dir, rt.is_main, "another jepa_world.pretrain run") as out_dir:
        rt.barrier()
        return _train(cfg, rt, out_dir)


def _corpus_fingerprint(sources: list[str]) -> dict[str, Any]:
    return video_fingerprint([path for source in sources for path in discover_videos(source)])


def _upgrade(config: dict[str, Any]) -> None:
    config.setdefault("objective", "features")  # runs from before the pixel baseline


def _train(cfg: PretrainConfig, rt: Runtime, out_dir: Path) -> dict[str, Any]:
    corpus: dict[str, Any] = {}  # the corpus's fingerprint, taken once (on resume: to check it)

    def corpus_now() -> dict[str, Any]:
        corpus["fingerprint"] = _corpus_fingerprint(cfg.data.paths)
        return corpus["fingerprint"]

    resume = read_resume(out_dir, asdict(cfg), _FIXED_ON_RESUME, corpus_now, _upgrade)
    if resume is not None and finished(resume):  # same settings and data change nothing
        return {"step": int(resume["step"]), "total_steps": cfg.train.steps, "steps_run": 0,
                "first_loss": None, "last_loss": resume.get("loss"), "seconds": 0.0,
                "clips_per_s": 0.0, "checkpoint": str(out_dir / CHECKPOINT),
                "world_size": rt.world_size, "finished_before": True}
    seed_everything(cfg.seed + rt.rank)

    mask_specs = [MaskSpec(**asdict(m)) for m in cfg.mask]
    model_cfg, data_cfg = asdict(cfg.model), asdict(cfg.data)
    try:
        encoder = build_encoder(model_cfg, data_cfg)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    predictor = build_predictor(
        model_cfg, data_cfg, encoder.embed_dim, len(mask_specs), cfg.objective
    )
    target = make_target_encoder(encoder)
    model = VJEPA(
        encoder,
        predictor,
        cfg.objective,
        variance_weight=cfg.train.variance_weight,
        covariance_weight=cfg.train.covariance_weight,
    ).to(rt.device)
    target.to(rt.device)
    masks = MultiBlockMaskSampler(encoder.grid_size, mask_specs)
    tc = cfg.train
    optimizer = make_adamw(
        [model], lr=tc.lr, weight_decay=tc.weight_decay, betas=tuple(tc.betas)
    )

    step = 0
    if resume is not None:
        with checkpoint_must_fit(out_dir / CHECKPOINT):
            model.encoder.load_state_dict(resume["encoder"])
            model.predictor.load_state_dict(resume["predictor"])
            target.load_state_dict(resume["target_encoder"])
            optimizer.load_state_dict(resume["opt"])
            step = int(resume["step"])
        if rt.is_main:
            print(
                f"resuming from {out_dir / CHECKPOINT} at step {step}/{tc.steps}", file=sys.stderr
            )
    if rt.is_main:
        write_text_atomic(out_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    ensure_default_corpus(cfg.data, rt)
    loader, clips = build_loader(cfg, rt, step)
    trained = for_training(model, rt, tc.compile)
    logger = RunLogger(out_dir, rt.is_main, tensorboard=tc.tensorboard, resume_step=step)
    run = _Run(cfg, rt, trained, model, target, optimizer, masks, loader, logger, out_dir,
               corpus.get("fingerprint") or video_fingerprint(clips.paths))
    saved_rng = None if resume is None else rt.own_rng_state(resume["rng"])
    summary = _loop(run, step, saved_rng)
    summary["data"] = clips.summary()
    return summary


@dataclass
class _Run:
    """What the training loop works on."""

    cfg: PretrainConfig
    rt: Runtime
    trained: torch.nn.Module  # the model as wrapped for training (DDP / compiled)
    model: VJEPA
    target: torch.nn.Module
    optimizer: torch.optim.Optimizer
    masks: MultiBlockMaskSampler
    loader: DataLoader
    logger: RunLogger
    out_dir: Path
    data: dict[str, Any]  # the corpus's fingerprint: a resume on other videos is refused


def _loop(run: _Run, step: int, saved_rng: dict | None) -> dict[str, Any]:
    cfg, rt, model, target, optimizer = run.cfg, run.rt, run.model, run.target, run.optimizer
    tc = cfg.train
    total = tc.steps
    batch_size = tc.batch_size * rt.world_size
    # what a log line adds to the window's mean loss: this step's schedule, gradient, speed
    now: dict[str, float] = {}
    timing = {"window": time.perf_counter(), "data_wait": 0.0, "steps": 0}

    def on_log(_: int, __: dict[str, float]) -> dict[str, float]:
        elapsed = max(time.perf_counter() - timing["window"], 1e-9)
        extra = {**now, "clips_per_s": timing["steps"] * batch_size / elapsed,
                 "data_wait_frac": timing["data_wait"] / elapsed}
        timing.update(window=time.perf_counter(), data_wait=0.0, steps=0)
        return extra

    loop = StepLoop(rt, run.logger, start=step, total=total, stop_at_step=tc.stop_at_step,
                    log_every=tc.log_every, checkpoint_every=tc.checkpoint_every,
                    checkpoint_minutes=tc.checkpoint_minutes, desc="pretrain", save=lambda s, _: _save(run, s, last["loss"]),
                    on_log=on_log, saved_rng=saved_rng, postfix=("loss", "clips_per_s"))
    if step >= loop.stop and not (run.out_dir / CHECKPOINT).exists():
        _save(run, step, None)  # train.steps=0: the initialised model, as a control
    started = time.perf_counter()
    last: dict[str, float | None] = {"first": None, "loss": None}
    batches = iter(run.loader)
    generator = torch.Generator()
    target.eval()  # the target encoder never drops paths: its features are the regression target
    pixels = cfg.objective == "pixels"
    patch = (model.encoder.patch_size, model.encoder.tubelet_size)
    for step in loop:
        fetch_t = time.perf_counter()
        video = next(batches).to(rt.device, non_blocking=True)
        timing["data_wait"] += time.perf_counter() - fetch_t
        lr = warmup_cosine(step, total, tc.warmup_steps, tc.start_lr, tc.lr, tc.final_lr)
        wd = cosine(step, total, tc.weight_decay, tc.final_weight_decay)
        set_lr_and_wd(optimizer, lr, wd)
        generator.manual_seed(cfg.seed * 1_000_003 + step * 1009 + rt.rank)
        batch_masks = [
            (c.to(rt.device), t.to(rt.device)) for c, t in run.masks(video.shape[0], generator)
        ]
        model.train()
        with rt.autocast(tc.bf16):
            targets = pixel_targets(video, *patch) if pixels else target_features(target, video)
            loss = run.trained(video, batch_masks, targets)
        mean_loss, grad_norm = loop.optimise(optimizer, loss, model.parameters(), tc.clip_grad)
        if not pixels:
            ema_update(target, model.encoder, linear(step, total, *tc.ema))
        last["first"] = mean_loss if last["first"] is None else last["first"]
        last["loss"] = mean_loss
        now.update(lr=lr, weight_decay=wd, grad_norm=grad_norm)
        timing["steps"] += 1
        loop.record({"loss": mean_loss, "regularizer": float(model.last_regularizer)})
    seconds = time.perf_counter() - started
    return {
        "step": loop.step,
        "total_steps": total,
        "steps_run": loop.steps_run,
        "first_loss": last["first"],
        "last_loss": last["loss"],
        "seconds": seconds,
        "clips_per_s": loop.steps_run * batch_size / max(seconds, 1e-9),
        "checkpoint": str(run.out_dir / CHECKPOINT),
        "world_size": rt.world_size,
    }


def _save(run: _Run, step: int, loss: float | None) -> None:
    rt = run.rt
    states = rt.rng_states()
    if rt.is_main:
        save_checkpoint(
            {
                "encoder": run.model.encoder.state_dict(),
                "predictor": run.model.predictor.state_dict(),
                # pixels: no target encoder; the encoder is what downstream code loads
                "target_encoder": (
                    run.model.encoder if run.cfg.objective == "pixels" else run.target
                ).state_dict(),
                "encoder_config": run.model.encoder.config.to_dict(),
                "opt": run.optimizer.state_dict(),
                "step": step,
                "loss": loss,
                "world_size": rt.world_size,
                "config": asdict(run.cfg),
                "rng": states,
                DATA_KEY: run.data,
            },
            run.out_dir / CHECKPOINT,
        )
    rt.barrier()


def _peak_memory_mb(rt: Runtime) -> float:
    if rt.device.type == "cuda":
        return torch.cuda.max_memory_allocated(rt.device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fmt(value: float | None) -> str:
    return "n/a (already complete)" if value is None else f"{value:.4f}"


def _last_line(exc: BaseException) -> str:
    """A worker's exception arrives with the worker's traceback inside its message."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    line = lines[-1] if lines else type(exc).__name__
    return line.split("CorpusError: ", 1)[-1]


def main(argv: list[str]) -> int:
    cfg = typed_config(PretrainConfig, load_config("pretrain", argv))
    rt = setup_runtime(cfg.device)
    try:
        summary = train(cfg, rt)
    except CorpusError as exc:  # raised lazily, possibly inside a DataLoader worker
        raise UserError(_last_line(exc)) from None
    except NonFiniteLossError as exc:
        if rt.is_main:
            print(non_finite_message(exc, cfg.out_dir), file=sys.stderr)
        return 1
    finally:
        rt.shutdown()
    if rt.is_main and summary.get("finished_before"):
        print(f"pretrain: {cfg.out_dir} already holds this finished run ({summary['step']} "
              f"steps); nothing was changed\ncheckpoint: {summary['checkpoint']}")
    elif rt.is_main:
        data = summary["data"]
        print(
            f"pretrain ({cfg.objective}): step {summary['step']}/{summary['total_steps']} "
            f"({summary['steps_run']} this run, {summary['seconds']:.1f} s, "
            f"{summary['clips_per_s']:.1f} clips/s on {summary['world_size']} process(es)); "
            f"loss {_fmt(summary['first_loss'])} -> {_fmt(summary['last_loss'])}; "
            f"peak memory {_peak_memory_mb(rt):.0f} MB\n"
            f"data: {data['videos']} videos, {data['skipped']} skipped as unreadable; "
            f"checkpoint: {summary['checkpoint']}"
        )
    return 0


if __name__ == "__main__":
    run_command(main)
