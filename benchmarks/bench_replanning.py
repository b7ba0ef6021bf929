"""Replanning speed of a learned world model inside the planner: FLOPs, time, how close it
comes to the machine's matrix rate, and how it scales with samples, horizon and environments.

    python benchmarks/bench_replanning.py [--checkpoint reach] [--repeats 20]
        [--precisions fp32,bf16] [--compile] [--no-record] [key=value ...]

Trailing key=value arguments override configs/mpc.yaml's planner settings (``cem.samples=128``,
``horizon=5``). Tables:
1. one replanning step per precision (and, with ``--compile``, the same through
   ``WorldModel.compile_rollouts``): FLOPs of the step (torch's FlopCounterMode on the eager
   model: matrix products and attention), median / p90 time, achieved GFLOP/s and its share
   of the machine's measured fp32 matrix rate (a 2048^3 matmul, best of 5, same threads);
2. replanning time against samples and against horizon (fp32);
3. environments planned in one call: time per call and per environment.
The inputs are random latents, goals and proprio (the compute does not depend on their
values), the warm start a previous plan; each time is the median of ``--repeats`` calls after
three warm-ups. Success is measured by planners.mpc / bench_planning.py, not here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.results import report  # noqa: E402
from jepa_world.training.cli import load_config  # noqa: E402
from planners import mpc, shift_plan  # noqa: E402


def matmul_rate(dtype: torch.dtype, size: int = 2048) -> float:
    """GFLOP/s of the best of five size^3 matrix products."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(5))
    return 2 * size**3 / best / 1e9


def _seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


class Case:
    """One planner call on E environments with fixed random inputs, warm-started."""

    def __init__(self, model: Any, cfg: Any, num_envs: int, seed: int = 0) -> None:
        self.model = model
        self.plan, self.settings = mpc.planner_settings(cfg)
        gen = torch.Generator().manual_seed(seed)
        shape = (num_envs, *model.latent_shape)
        self.z = torch.randn(shape, generator=gen)
        self.goal = torch.randn(shape, generator=gen)
        p = getattr(model, "proprio_dim", 0)
        self.proprio = torch.randn(num_envs, p, generator=gen) if p else None
        self.generators = [torch.Generator().manual_seed(seed + e) for e in range(num_envs)]
        self.warm = None

    def __call__(self) -> Any:
        result = self.plan(self.model, self.z, self.goal, proprio=self.proprio,
                           init_mean=self.warm, generator=self.generators,
                           settings=self.settings)
        self.warm = shift_plan(result.actions, 1)
        return result

    def flops(self) -> int:
        """FLOPs of one call, counted with scoring in this thread only (the counter does not
        see other threads' work; the work is the same)."""
        import dataclasses

        from torch.utils.flop_counter import FlopCounterMode

        settings, warm = self.settings, self.warm
        self.settings = dataclasses.replace(settings, workers=1)
        try:
            with FlopCounterMode(display=False) as counter:
                self()
        finally:
            self.settings, self.warm = settings, warm
        return counter.get_total_flops()

    def times_ms(self, repeats: int) -> list[float]:
        for _ in range(3):
            self()
        return [1000 * _seconds(self) for _ in range(repeats)]


def median_p90(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="reach")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--samples", default="64,128,256,512")
    parser.add_argument("--horizons", default="1,3,5")
    parser.add_argument("--envs", default="1,4,16")
    parser.add_argument("--compile", action="store_true",
                        help="also time each precision with the rollouts compiled")
    parser.add_argument("--no-record", action="store_true")
    args, overrides = parser.parse_known_args()
    record = not args.no_record
    model = mpc.load_world_model(args.checkpoint, torch.device("cpu"))
    base = load_config("mpc", overrides)
    mpc.apply_model_planning(base, model)

    def case(num_envs: int = 1, **keys: Any) -> Case:
        cfg = load_config("mpc", overrides)
        cfg.horizon, cfg.energy_steps = base.horizon, base.energy_steps
        cfg.cem, cfg.mppi = base.cem, base.mppi
        for key, value in keys.items():
            section, _, name = key.rpartition(".")
            (cfg[section] if section else cfg)[name] = value
        return Case(model, cfg, num_envs)

    peaks = {"fp32": matmul_rate(torch.float32), "bf16": matmul_rate(torch.bfloat16)}
    cem = base.cem
    what = (f"CEM {cem.samples} x {cem.iterations}, horizon {base.horizon}, "
            f"{args.checkpoint} model")
    with torch.inference_mode():
        rows = []
        for precision in args.precisions.split(","):
            model.precision = precision
            one = case()
            flops = one.flops()  # on the eager model: the counter does not see compiled kernels
            for compiled in (False, True) if args.compile else (False,):
                model.compile_rollouts(compiled)
                med, p90 = median_p90(one.times_ms(args.repeats))
                rate = flops / (med / 1000) / 1e9
                rows.append([precision + (", compiled" if compiled else ""),
                             f"{flops / 1e9:.1f}", f"{med:.0f}", f"{p90:.0f}", f"{rate:.0f}",
                             f"{100 * rate / peaks['fp32']:.0f} %",
                             f"{100 * rate / peaks[precision]:.0f} %"])
            model.compile_rollouts(False)
        model.precision = "fp32"
        report(f"Replanning step: FLOPs, time and matrix-rate utilisation ({what})",
               ["precision", "GFLOP per step", "ms median", "ms p90", "GFLOP/s",
                "of fp32 matmul peak", "of this precision's peak"], rows,
               notes=(f"Matrix rate of this machine (2048^3 matmul): fp32 "
                      f"{peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s. "
                      f"One environment, {args.repeats} calls after 3 warm-ups."),
               record=record)

        rows = []
        for samples in [int(s) for s in args.samples.split(",")]:
            elites = min(int(cem.elites), samples)
            med, p90 = median_p90(case(**{"cem.samples": samples, "cem.elites": elites})
                                  .times_ms(args.repeats))
            rows.append([samples, cem.iterations, base.horizon, f"{med:.0f}", f"{p90:.0f}"])
        for horizon in [int(h) for h in args.horizons.split(",")]:
            if horizon == base.horizon:
                continue
            med, p90 = median_p90(case(horizon=horizon, step_weights=None)
                                  .times_ms(args.repeats))
            rows.append([cem.samples, cem.iterations, horizon, f"{med:.0f}", f"{p90:.0f}"])
        report(f"Replanning time against samples and horizon ({args.checkpoint} model, fp32)",
               ["samples", "iterations", "horizon (blocks)", "ms median", "ms p90"], rows,
               record=record)

        rows = []
        for num_envs in [int(e) for e in args.envs.split(",")]:
            med, p90 = median_p90(case(num_envs).times_ms(max(3, args.repeats // num_envs)))
            rows.append([num_envs, f"{med:.0f}", f"{p90:.0f}", f"{med / num_envs:.0f}"])
        report(f"Environments planned in one call ({what}, fp32)",
               ["environments", "ms per call median", "ms p90", "ms per environment"], rows,
               record=record)


if __name__ == "__main__":
    main()
