"""GPU speed: a V-JEPA ViT-L pretraining step at 16 frames x 224 px, and replanning with CEM.

    python benchmarks/bench_gpu.py [--device auto] [--batch-sizes 16,32,64] [--steps 10]
        [--warmup 3] [--size large] [--frames 16] [--resolution 224] [--no-fp32]
        [--attention default|flash|efficient|cudnn|math] [--no-record]

Why: the other benchmarks time the CPU default (the micro model at 64 px); the paper-size
encoder only trains on an accelerator, and its step time and the batch that fits are what size
a real pretraining run. The step is jepa_world.pretrain's, built from the same pieces and
configs (configs/model/<size>.yaml, configs/mask/multiblock.yaml, configs/pretrain.yaml's
optimiser), without Hydra: EMA-target features of the whole clip, context encoder + predictor
per multiblock mask, L1, backward, clipped AdamW step, EMA update, under bf16 autocast on CUDA
(fp32 on the CPU; ``--no-fp32`` skips the fp32 reference row). Clips are random tensors already
on the device: data loading is not timed. Planning: one replanning step as planners.mpc times it
(encode the frame, CEM of configs/mpc.yaml's size, warm-started, actions back on the host) on
the shipped reach world model; it needs no MuJoCo.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import report  # noqa: E402
from jepa_world import WorldModel  # noqa: E402
from jepa_world.masks import MaskSpec, MultiBlockMaskSampler  # noqa: E402
from jepa_world.training.optim import make_adamw  # noqa: E402
from jepa_world.training.runtime import Runtime, resolve_device  # noqa: E402
from jepa_world.vjepa import (  # noqa: E402
    VJEPA,
    build_encoder,
    build_predictor,
    ema_update,
    make_target_encoder,
    target_features,
)
from planners import get_planner  # noqa: E402
from planners.base import make_settings, model_planner_settings, planning_defaults  # noqa: E402
from planners.policies import PlannerPolicy  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ATTENTION = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
             "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}


def config(name: str) -> Any:
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, warmup: int, steps: int) -> list[float]:
    """Seconds per call of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


# ------------------------------------------------------------------------------ pretraining
def pretrain_step_fn(size: str, frames: int, resolution: int, batch: int, rt: Runtime,
                     bf16: bool) -> Callable[[], float]:
    """One jepa_world.pretrain training step (features objective) on a fixed random batch."""
    model_cfg = config(f"model/{size}")
    data_cfg = {"resolution": resolution, "frames_per_clip": frames}
    train = config("pretrain")["train"]
    specs = [MaskSpec(**m) for m in config("mask/multiblock")]
    encoder = build_encoder(model_cfg, data_cfg)
    predictor = build_predictor(model_cfg, data_cfg, encoder.embed_dim, len(specs))
    target = make_target_encoder(encoder).to(rt.device).eval()
    model = VJEPA(encoder, predictor).to(rt.device).train()
    optimizer = make_adamw([model], lr=train["lr"], weight_decay=train["weight_decay"],
                           betas=tuple(train["betas"]))
    sampler = MultiBlockMaskSampler(encoder.grid_size, specs)
    video = torch.randn(batch, 3, frames, resolution, resolution, device=rt.device)
    generator = torch.Generator().manual_seed(0)

    def step() -> float:
        masks = [(c.to(rt.device), t.to(rt.device)) for c, t in sampler(batch, generator)]
        with rt.autocast(bf16):
            loss = model(video, masks, target_features(target, video))
        value = float(loss.detach())  # the training loop reads the loss every step
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train["clip_grad"])
        optimizer.step()
        ema_update(target, model.encoder, train["ema"][0])
        return value

    return step


def pretrain_rows(args: argparse.Namespace, rt: Runtime) -> list[list]:
    runs = [(b, True) for b in args.batch_sizes]
    if not args.no_fp32 and rt.device.type == "cuda":
        runs.append((args.batch_sizes[0], False))
    rows, too_big = [], None
    for batch, bf16 in runs:
        precision = "bf16 autocast" if bf16 and rt.device.type == "cuda" else "fp32"
        if too_big is not None and batch >= too_big:
            continue  # a larger batch than one that did not fit
        if rt.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(rt.device)
        backend = (contextlib.nullcontext() if args.attention == "default"
                   else sdpa_kernel(ATTENTION[args.attention]))
        try:
            step = pretrain_step_fn(args.size, args.frames, args.resolution, batch, rt, bf16)
            with backend:
                times = timed(step, rt.device, args.warmup, args.steps)
                loss = step()
        except torch.OutOfMemoryError:
            rows.append([batch, precision, "out of memory", "", "", "", ""])
            too_big = batch if bf16 else too_big
            continue
        finally:
            step = None  # free the model before the next row
        median = statistics.median(times)
        peak = torch.cuda.max_memory_allocated(rt.device) / 2**30 if rt.device.type == "cuda" else 0
        rows.append([batch, precision, f"{1000 * median:.0f}", f"{1000 * min(times):.0f}",
                     f"{batch / median:.1f}", f"{peak:.1f}" if peak else "-", f"{loss:.4f}"])
        print(f"pretrain batch {batch} {precision}: {1000 * median:.0f} ms median", flush=True)
    return rows


# ------------------------------------------------------------------------------ planning
def planning_rows(args: argparse.Namespace, device: torch.device) -> tuple[list[list], str]:
    model = WorldModel.load(args.model, device=device)
    mpc = config("mpc")
    horizon, energy_steps = planning_defaults(model, mpc["horizon"], mpc["energy_steps"])
    plan_fn, settings_cls = get_planner("cem")
    settings = make_settings(settings_cls, None, {
        "horizon": horizon,
        "metric": mpc["energy"],
        "energy_steps": energy_steps,
        "repeat_in_block": mpc["repeat_in_block"],
        **model_planner_settings(model, "cem", mpc["cem"]),
    })
    rng = np.random.default_rng(0)
    s = model.image_size
    rows = []
    for envs in args.num_envs:
        pixels = rng.integers(0, 256, (envs + 1, s, s, 3), dtype=np.uint8)
        observations = {"pixels": pixels[:envs],
                        "proprio": np.zeros((envs, model.proprio_dim), np.float32),
                        "goal_pixels": np.repeat(pixels[-1:], envs, axis=0)}
        policy = PlannerPolicy(model, plan_fn, settings, warm_start=mpc["warm_start"])
        # a replanning step as planners.mpc times it: encode, plan (warm start), actions to host
        times = timed(lambda o=observations, p=policy: p.replan(o), device,
                      args.warmup, args.plans)
        median = statistics.median(times)
        rows.append([envs, f"{settings.samples} x {settings.iterations}", settings.horizon,
                     f"{1000 * median:.1f}", f"{1000 * np.percentile(times, 90):.1f}",
                     f"{envs * settings.samples * settings.iterations / median:.0f}"])
        print(f"planning {envs} env(s): {1000 * median:.1f} ms median", flush=True)
    size = model.config.encoder["size"]
    return rows, f"{args.model} ({size} encoder, {s} px, latent {model.latent_shape})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--size", default="large", help="configs/model/<size>.yaml")
    parser.add_argument("--frames", type=int, default=config("data/video")["frames_per_clip"])
    parser.add_argument("--resolution", type=int, default=config("data/video")["resolution"])
    parser.add_argument("--batch-sizes", default="16,32,64",
                        type=lambda v: [int(b) for b in v.split(",")])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-fp32", action="store_true", help="skip the fp32 reference row")
    parser.add_argument("--attention", default="default", choices=["default", *ATTENTION],
                        help="scaled_dot_product_attention backend for pretraining "
                        "(default: torch's own choice)")
    parser.add_argument("--model", default="reach", help="world model to plan with")
    parser.add_argument("--num-envs", default="1,8", type=lambda v: [int(e) for e in v.split(",")])
    parser.add_argument("--plans", type=int, default=20, help="timed replanning steps per row")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    rt = Runtime(resolve_device(args.device))
    torch.manual_seed(0)
    on = torch.cuda.get_device_name(rt.device) if rt.device.type == "cuda" else "CPU"
    dtype = "bf16 autocast" if rt.device.type == "cuda" else "fp32"
    header = f"torch {torch.__version__}, {on}, {dtype}"
    print(header, flush=True)

    plan_rows, model_note = planning_rows(args, rt.device)
    rows = pretrain_rows(args, rt)
    name = f"ViT-{args.size}"
    report(
        f"{on}: {name} pretraining step, {args.frames} frames x {args.resolution} px",
        ["batch", "precision", "step ms median", "step ms min", "clips/s", "peak GiB",
         "last loss"],
        rows,
        notes=f"{header}. jepa_world.pretrain's step (features objective, 2 multiblock masks, "
        f"predictor {config(f'model/{args.size}')['predictor']}), median of {args.steps} steps "
        f"after {args.warmup} warm-up steps; attention backend {args.attention}; random clips "
        "already on the device (no data loading); fp32 = no autocast (TF32 off, torch's "
        "default).",
        record=not args.no_record,
    )
    report(
        f"{on}: replanning step with CEM, world model {args.model}",
        ["envs", "CEM samples x iterations", "horizon", "replan ms median", "replan ms p90",
         "sequences/s"],
        plan_rows,
        notes=f"{header}. World model {model_note}; configs/mpc.yaml's CEM, warm-started; one "
        f"step = encode the frame + plan + actions to the host, as planners.mpc times it; "
        f"median of {args.plans} after {args.warmup} warm-up steps; random frames.",
        record=not args.no_record,
    )


if __name__ == "__main__":
    main()
