"""Train the action-conditioned predictor on recorded trajectories; writes a WorldModel.

    python -m jepa_world.train_ac                         # reach default, from runs/pretrain
    python -m jepa_world.train_ac encoder.checkpoint=runs/pretrain data.paths=[data/reach]
    python -m jepa_world.train_ac encoder.train=true ...  # end to end (jepa_world.end_to_end)
    torchrun --nproc_per_node 4 -m jepa_world.train_ac out_dir=runs/ac ...

With a frozen encoder every frame is encoded once up front and training runs on cached
latents; end to end, every frame is decoded once and encoder, latent head and predictor train
together. Rerunning the same command with the same ``out_dir`` resumes from its checkpoint.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn

from envs.dataset_format import DatasetError
from jepa_world.data.episodes import EpisodeDataset
from jepa_world.data.fingerprint import episode_fingerprint, refuse_repeated_paths
from jepa_world.data.frames import FrameTrajectories
from jepa_world.data.latents import LatentTrajectories
from jepa_world.encoders import load_encoder
from jepa_world.end_to_end import (
    EndToEndObjective,
    calibrate_batchnorm,
    calibrated,
    reinitialise,
)
from jepa_world.files import write_text_atomic
from jepa_world.model_files import CONFIG, PROVENANCE, WEIGHTS
from jepa_world.models.ac_predictor import ACPredictor
from jepa_world.provenance import git_commit
from jepa_world.schemas.train_ac import TrainACConfig
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
from jepa_world.training.optim import hold, make_adamw, param_groups, set_lr_and_wd
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
from jepa_world.training.schedules import warmup_cosine
from jepa_world.world_model import WorldModel, WorldModelConfig

_FIXED_ON_RESUME = ("encoder", "model", "data", "train.context")


# ------------------------------------------------------------------------------- data
# ------------------------------------------------------------------------------- loss
class ACObjective(nn.Module):
    """Teacher-forced prediction of every next latent plus an autoregressive rollout, by L1
    (V-JEPA 2-AC's choice on frozen features) or MSE (LeWM's, end to end)."""

    def __init__(
        self,
        predictor: ACPredictor,
        rollout_steps: int,
        rollout_weight: float,
        proprio_weight: float,
        proprio_mean: Tensor,
        proprio_std: Tensor,
        decode_weight: float = 0.0,
        loss: str = "l1",
    ) -> None:
        super().__init__()
        self.predictor = predictor
        self.rollout_steps, self.rollout_weight = rollout_steps, rollout_weight
        self.proprio_weight, self.decode_weight = proprio_weight, decode_weight
        self.distance = {"l1": F.l1_loss, "mse": F.mse_loss}[loss]
        self.register_buffer("proprio_mean", proprio_mean)
        self.register_buffer("proprio_std", proprio_std)

    def forward(self, z: Tensor, actions: Tensor, proprio: Tensor | None,
                targets: Tensor | None = None) -> dict[str, Tensor]:
        """z [B,T+1,K,D] (inputs), actions [B,T,fs*A], proprio [B,T+1,P]; ``targets``: what
        the predictions are compared with (default: z itself)."""
        targets = z if targets is None else targets
        distance = self.distance
        if proprio is not None:
            proprio = (proprio - self.proprio_mean) / self.proprio_std
        steps = actions.shape[1]
        p_in = None if proprio is None else proprio[:, :steps]
        z_pred, p_pred = self.predictor(z[:, :steps], actions, p_in)
        parts = {"teacher": distance(z_pred.float(), targets[:, 1:].float())}
        with torch.no_grad():  # what predicting "nothing moves" would score
            parts["copy"] = distance(targets[:, :-1].float(), targets[:, 1:].float())
        if p_pred is not None:
            parts["proprio"] = F.l1_loss(p_pred.float(), proprio[:, 1:].float())
        if self.predictor.decoder is not None and proprio is not None:
            # the decoder also learns directly what every seen configuration looks like
            decoded = self.predictor.decoder(proprio[:, : steps + 1])
            parts["decode"] = distance(decoded.float(), targets[:, : steps + 1].float())
        if self.rollout_steps > 0:
            z_t, p_t, cache, errors = z[:, 0], None if proprio is None else proprio[:, 0], None, []
            for t in range(min(self.rollout_steps, steps)):
                z_t, p_t, cache = self.predictor.step(z_t, actions[:, t], p_t, t, cache)
                errors.append(distance(z_t.float(), targets[:, t + 1].float()))
            parts["rollout"] = torch.stack(errors).mean()
        loss = parts["teacher"] + self.rollout_weight * parts.get("rollout", 0.0)
        loss = loss + self.decode_weight * parts.get("decode", 0.0)
        parts["loss"] = loss + self.proprio_weight * parts.get("proprio", 0.0)
        return parts


# ---------------------------------------------------------------------------- training
def _split(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction)) if n > 1 else 0
    n_val = min(max(n_val, 1 if val_fraction > 0 and n > 1 else 0), n - 1)
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def _open_datasets(paths) -> list[EpisodeDataset]:
    if not paths:
        raise UserError("data.paths is empty: give data.paths=[DATASET_DIR,...]")
    refuse_repeated_paths(paths, "data.paths")
    try:
        datasets = [EpisodeDataset(p) for p in paths]
    except DatasetError as exc:
        raise UserError(str(exc)) from None
    tasks = sorted({d.env_id for d in datasets})
    if len(tasks) > 1:
        raise UserError(f"data.paths mixes datasets of several tasks ({', '.join(tasks)})")
    sizes = sorted({d.image_size for d in datasets})
    if len(sizes) > 1:
        listed = "; ".join(f"{s} px: {', '.join(str(d.root) for d in datasets if d.image_size == s)}"
                           for s in sizes)
        raise UserError(f"data.paths mixes image sizes ({listed}): record them at one size")
    return datasets


def _task_name(env_id: str) -> str:
    """The short name the commands take for a dataset's task (its id if not registered)."""
    import envs

    try:
        return envs.short_name(env_id)
    except envs.UnknownEnvError:
        return env_id


def build_world_model(
    cfg: TrainACConfig, datasets: list[EpisodeDataset]
) -> tuple[WorldModel, dict]:
    loaded = load_encoder(
        cfg.encoder.checkpoint, released=cfg.encoder.released, key=cfg.encoder.key
    )
    encoder, pretrained_predictor = loaded.encoder, loaded.predictor_state
    end_to_end = cfg.encoder.train
    if cfg.encoder.init == "random":
        encoder = reinitialise(encoder)
    proprio = np.concatenate([d.arrays(e)["proprio"] for d in datasets for e in range(len(d))])
    actions = datasets[0].arrays(0)["actions"]
    use_proprio = cfg.model.use_proprio
    pred_cfg = asdict(cfg.model.predictor)
    if cfg.model.init == "pretrained":
        if not pretrained_predictor:
            raise UserError("model.init=pretrained but the encoder checkpoint has no predictor")
        blocks = {k for k in pretrained_predictor if k.startswith("predictor_blocks.")}
        width = pretrained_predictor["predictor_embed.weight"].shape[0]
        pred_cfg.update(
            embed_dim=int(width),
            depth=len({k.split(".")[1] for k in blocks}),
            num_heads=_predictor_heads(cfg, width),
        )
    config = WorldModelConfig(
        encoder=encoder.config.to_dict(),
        predictor=pred_cfg,
        action_dim=int(actions.shape[1]),
        frameskip=cfg.model.frameskip,
        proprio_dim=proprio.shape[1] if use_proprio else 0,
        pool=None if cfg.model.pool is None or end_to_end else list(cfg.model.pool),
        pool_mode="mean" if end_to_end else cfg.model.pool_mode,
        head=asdict(cfg.model.head) if end_to_end else None,
        proprio_mean=proprio.mean(0).tolist() if use_proprio else [],
        proprio_std=(proprio.std(0) + 1e-6).tolist() if use_proprio else [],
        env_id=datasets[0].env_id,
        planning=cfg.model.planning.as_dict(),
    )
    try:
        model = WorldModel(config, encoder=encoder)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    copied = []
    if cfg.model.init == "pretrained":
        try:
            copied = model.predictor.load_from_masked(pretrained_predictor)
        except ValueError as exc:
            raise UserError(f"model.init=pretrained: {exc}") from None
    return model, {"copied_from_pretrained": len(copied), "encoder_source": loaded.provenance,
                   "built": "end_to_end" if end_to_end else "frozen",
                   "encoder_init": cfg.encoder.init}


def _predictor_heads(cfg: TrainACConfig, width: int) -> int:
    heads = cfg.model.predictor.num_heads
    if width % heads:
        raise UserError(f"model.predictor.num_heads={heads} does not divide the width {width}")
    return heads


def train(cfg: TrainACConfig, rt: Runtime) -> dict[str, Any]:
    """Train as ``cfg`` says (``typed_config(TrainACConfig, composed)`` checked it), holding
    ``out_dir``'s lock."""
    with own_out_dir(cfg.out_dir, rt.is_main, "another jepa_world.train_ac run") as out_dir:
        rt.barrier()
        return _train(cfg, rt, out_dir)


def _finished(cfg: TrainACConfig, resume: dict[str, Any], out_dir: Path) -> dict[str, Any] | None:
    """The summary of a finished run rerun with the same settings and data (nothing is
    rewritten); None when its world model is missing or incomplete (killed before it was
    written whole, or damaged since): the rerun writes it again from the checkpoint."""
    model_dir = out_dir / "world_model"
    if not all((model_dir / name).is_file() for name in (WEIGHTS, CONFIG, PROVENANCE)):
        return None
    return {"step": int(resume["step"]), "total_steps": cfg.train.steps, "seconds": 0.0,
            "steps_run": 0, "metrics": resume.get("metrics") or {}, "world_model": str(model_dir),
            "finished_before": True}


def _train(cfg: TrainACConfig, rt: Runtime, out_dir: Path) -> dict[str, Any]:
    tc = cfg.train
    datasets = _open_datasets(list(cfg.data.paths))
    data = episode_fingerprint(datasets)
    resume = read_resume(out_dir, asdict(cfg), _FIXED_ON_RESUME, lambda: data)
    if resume is not None and finished(resume):
        summary = _finished(cfg, resume, out_dir)
        if summary is not None:
            return summary
    seed_everything(cfg.seed + rt.rank)
    world_model, init_info = build_world_model(cfg, datasets)
    world_model.to(rt.device)
    recorded = datasets[0].image_size
    init_info["frames_resized"] = None
    if recorded != world_model.image_size:  # kept in the provenance, said once here
        init_info["frames_resized"] = {"recorded_px": recorded, "encoder_px": world_model.image_size}
        if rt.is_main:
            print(f"note: frames recorded at {recorded} px are resized to the encoder's "
                  f"{world_model.image_size} px", file=sys.stderr)
    fs, steps = world_model.frameskip, tc.context
    end_to_end = cfg.encoder.train
    if end_to_end:  # the encoder learns: frames, decoded once, not cached latents
        trajectories = FrameTrajectories(datasets, rt.is_main)
    else:
        trajectories = LatentTrajectories(datasets, world_model, tc.encode_batch_size, rt.is_main)
    train_eps, val_eps = _split(len(trajectories), cfg.data.val_fraction, cfg.seed)
    if not end_to_end:
        trajectories.standardise(world_model, train_eps)
    train_windows = trajectories.windows(train_eps, steps, fs)
    val_windows = trajectories.windows(val_eps, steps, fs)
    if len(train_windows) == 0:
        raise UserError(f"episodes are too short for {steps} steps of {fs} env steps")

    objective, learned, optimizer = _objective(cfg, world_model)

    def calibration() -> Iterator[Tensor]:
        """Frames of training windows spread over the whole set, the same ones every time."""
        count = min(len(train_windows), tc.calibration_batches * tc.batch_size)
        pick = train_windows[np.linspace(0, len(train_windows) - 1, count).astype(int)]
        for start in range(0, count, tc.batch_size):
            yield trajectories.batch(pick[start : start + tc.batch_size], steps, fs,
                                     rt.device)["frames"]

    objective.to(rt.device)
    step = 0
    if resume is not None:
        with checkpoint_must_fit(out_dir / CHECKPOINT):
            learned.load_state_dict(resume[_learned_key(cfg)])
            optimizer.load_state_dict(resume["opt"])
            if end_to_end:
                objective.load_ema_state(resume.get("ema"))
            step = int(resume["step"])
        if rt.is_main:
            print(
                f"resuming from {out_dir / CHECKPOINT} at step {step}/{tc.steps}", file=sys.stderr
            )
    trained = for_training(objective, rt, tc.compile)
    if rt.is_main:
        write_text_atomic(out_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    use_proprio = world_model.proprio_dim > 0
    key = trajectories.observation_key

    def on_log(step: int, _: dict[str, float]) -> dict[str, float]:
        if not loop.due(tc.eval_every):
            return {"lr": lr}
        with calibrated(world_model, calibration) if end_to_end else contextlib.nullcontext():
            return {"lr": lr, **evaluate(objective, trajectories, val_windows, steps, fs, rt,
                                         use_proprio)}

    def save(step: int, metrics: dict[str, float]) -> None:
        _save(out_dir, cfg, rt, objective, learned, optimizer, step, metrics, data)

    loop = StepLoop(
        rt, RunLogger(out_dir, rt.is_main, tensorboard=tc.tensorboard, resume_step=step),
        start=step, total=tc.steps, stop_at_step=tc.stop_at_step, log_every=tc.log_every,
        checkpoint_every=tc.checkpoint_every, checkpoint_minutes=tc.checkpoint_minutes,
        desc="train_ac", save=save, on_log=on_log,
        saved_rng=None if resume is None else rt.own_rng_state(resume["rng"]),
        last=None if resume is None else resume.get("metrics"),
    )
    started, total = time.perf_counter(), tc.steps
    lr = tc.start_lr
    for step in loop:
        rng = np.random.default_rng([cfg.seed, step])
        chosen = rng.integers(0, len(train_windows), tc.batch_size * rt.world_size)
        mine = chosen[rt.rank * tc.batch_size : (rt.rank + 1) * tc.batch_size]
        batch = trajectories.batch(train_windows[mine], steps, fs, rt.device)
        lr = warmup_cosine(step, total, tc.warmup_steps, tc.start_lr, tc.lr, tc.final_lr)
        set_lr_and_wd(optimizer, lr, tc.weight_decay)
        if end_to_end and step < cfg.encoder.frozen_steps:
            hold(optimizer, "encoder")
        with rt.autocast(tc.bf16):
            parts = trained(batch[key], batch["actions"], batch["proprio"] if use_proprio else None)
        loop.optimise(optimizer, parts["loss"], learned.parameters(), tc.clip_grad)
        if end_to_end:
            objective.update_target()
        loop.record({k: float(v.detach()) for k, v in parts.items()})
    step, last = loop.step, loop.last
    summary = {
        "step": step,
        "total_steps": total,
        "seconds": time.perf_counter() - started,
        "steps_run": loop.steps_run,
        "metrics": last,
        **init_info,
        "train_episodes": len(train_eps),
        "val_episodes": len(val_eps),
    }
    if step >= total and rt.is_main:
        if end_to_end:  # planning encodes in eval mode: statistics of the final weights
            calibrate_batchnorm(world_model, calibration())
        world_model.freeze()
        model_dir = world_model.save(
            out_dir / "world_model", provenance=_provenance(cfg, datasets, summary),
            weights=cfg.model.weights_dtype,
        )
        summary["world_model"] = str(model_dir)
    return summary


def _objective(cfg: TrainACConfig, world_model: WorldModel
               ) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
    """The loss, the module whose weights it trains (the predictor on a frozen encoder, the
    whole world model end to end) and its optimizer."""
    tc, end_to_end = cfg.train, cfg.encoder.train
    learned = world_model if end_to_end else world_model.predictor
    learned.train()
    for param in learned.parameters():
        param.requires_grad_(True)
    prediction = ACObjective(
        world_model.predictor, tc.rollout_steps, tc.rollout_weight, tc.proprio_weight,
        world_model.proprio_mean, world_model.proprio_std, tc.decode_weight,
        cfg.prediction_loss(),
    )
    objective: nn.Module = prediction
    if end_to_end:
        objective = EndToEndObjective(world_model, prediction, tc.sigreg_weight,
                                      tc.sigreg_directions, tc.target, tc.ema_momentum)
        encoder = world_model.encoder
        rest = [m for m in world_model.children() if m is not encoder]
        groups = param_groups([encoder], cfg.encoder.lr_scale, "encoder") + param_groups(rest)
    else:
        groups = param_groups([learned])
    optimizer = make_adamw(groups, lr=tc.lr, weight_decay=tc.weight_decay,
                           betas=tuple(tc.betas))
    return objective, learned, optimizer


def _learned_key(cfg: TrainACConfig) -> str:
    """Where the checkpoint keeps the trained weights."""
    return "world_model" if cfg.encoder.train else "predictor"


@torch.no_grad()
def evaluate(
    objective: nn.Module,
    trajectories: LatentTrajectories | FrameTrajectories,
    windows: np.ndarray,
    steps: int,
    fs: int,
    rt: Runtime,
    use_proprio: bool,
    limit: int = 512,
) -> dict[str, float]:
    """Validation errors on held-out episodes, and the copy-the-current-frame baseline.
    Training's random stream is left as it was (SIGReg draws directions), so that a run
    stopped and resumed where it evaluated continues exactly as one that never stopped."""
    if len(windows) == 0:
        return {}
    objective.eval()
    pick = windows[np.linspace(0, len(windows) - 1, min(limit, len(windows))).astype(int)]
    batch = trajectories.batch(pick, steps, fs, rt.device)
    with torch.random.fork_rng(devices=[rt.device] if rt.device.type == "cuda" else []):
        parts = objective(batch[trajectories.observation_key], batch["actions"],
                          batch["proprio"] if use_proprio else None)
    objective.train()
    metrics = {
        "val_teacher": float(parts["teacher"]),
        "val_rollout": float(parts.get("rollout", 0)),
        "val_copy_baseline": float(parts["copy"]),
    }
    if "spread" in parts:
        metrics["val_spread"] = float(parts["spread"])
    return metrics


def _save(out_dir: Path, cfg: TrainACConfig, rt: Runtime, objective: nn.Module,
          learned: nn.Module, optimizer, step: int, metrics: dict[str, float],
          data: dict[str, Any]) -> None:
    states = rt.rng_states()
    if rt.is_main:
        state = {
            _learned_key(cfg): learned.state_dict(),
            "opt": optimizer.state_dict(),
            "step": step,
            "config": asdict(cfg),
            "rng": states,
            "world_size": rt.world_size,
            "metrics": metrics,  # the last logged ones: the provenance of a resumed finish
            DATA_KEY: data,
        }
        ema = objective.ema_state() if cfg.encoder.train else None
        if ema is not None:
            state["ema"] = ema
        save_checkpoint(state, out_dir / CHECKPOINT)
    rt.barrier()


def _provenance(cfg: TrainACConfig, datasets: list[EpisodeDataset], summary: dict) -> dict:
    return {
        "git_commit": git_commit(),
        "training_config": asdict(cfg),
        "data": [
            {
                "path": str(d.root),
                "env_id": d.env_id,
                "episodes": len(d),
                "image_size": d.image_size,
                "seeds": [min(d.seeds), max(d.seeds)],
                "software": d.manifest.get("software"),
            }
            for d in datasets
        ],
        "metrics": summary["metrics"],
        "encoder_source": summary["encoder_source"],
        "reproduce": f"python -m jepa_world.build --env {_task_name(datasets[0].env_id)} --install",
        "init": cfg.model.init,
        "built": summary["built"],
        "encoder_init": summary["encoder_init"],
        "copied_from_pretrained": summary["copied_from_pretrained"],
        "frames_resized": summary.get("frames_resized"),
    }


def main(argv: list[str]) -> int:
    cfg = typed_config(TrainACConfig, load_config("train_ac", argv))
    rt = setup_runtime(cfg.device)
    try:
        summary = train(cfg, rt)
    except NonFiniteLossError as exc:
        if rt.is_main:
            print(non_finite_message(exc, cfg.out_dir), file=sys.stderr)
        return 1
    finally:
        rt.shutdown()
    if rt.is_main:
        if summary.get("finished_before"):
            print(f"train_ac: {cfg.out_dir} already holds this finished run "
                  f"({summary['step']} steps); nothing was changed", file=sys.stderr)
        m = summary["metrics"]
        line = (
            f"train_ac: step {summary['step']}/{summary['total_steps']} "
            f"({summary['steps_run']} this run, {summary['seconds']:.1f} s); "
            f"train loss {m.get('loss', float('nan')):.4f}"
        )
        if "val_teacher" in m:
            line += (
                f"; val {cfg.prediction_loss().upper()} teacher {m['val_teacher']:.4f} rollout "
                f"{m['val_rollout']:.4f} (copy-current-frame baseline "
                f"{m['val_copy_baseline']:.4f})"
            )
            if "val_spread" in m:
                line += f"; embedding spread {m['val_spread']:.3f}, SIGReg {m['sigreg']:.3f}"
        print(line)
        if "world_model" in summary:
            print(f"world model: {summary['world_model']}")
    return 0


if __name__ == "__main__":
    run_command(main)


__all__ = ["ACObjective", "LatentTrajectories", "build_world_model", "main", "train"]
