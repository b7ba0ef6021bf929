"""Our sampling planners beside two libraries on the same world model, energy and budget of
scored sequences: pytorch-mppi's MPPI and nevergrad's NGOpt (issue 15).

    pip install pytorch-mppi nevergrad    # benchmark-only; nothing in the package needs them
    python benchmarks/bench_planner_libraries.py [--episodes 20] [--samples 128]
        [--iterations 4] [--checkpoint reach] [--no-record]

Every row runs ``planners.mpc.evaluate`` on the same held-out episodes (offset goals, budget 50
env steps, horizon and energy of configs/mpc.yaml: L2 averaged over the predicted blocks), with
the planner swapped through its ``plan=`` argument, so the protocol, the warm start (the
shifted last plan) and the success judgement are identical. Budget: ``samples x iterations``
sequences scored per replanning step for every planner.

- pytorch-mppi: ``MPPI`` searches one action per block (as ours do); its ``command`` is called
  ``iterations`` times per replanning step without shifting, starting from our warm start
  (``U_init``), and its nominal sequence is the plan. Its dynamics are Markov (state in,
  state out), so it steps the world model with ``WorldModel.step`` (the latent and proprio
  alone), where our planners' rollouts also attend to the earlier predicted steps. Its
  ``lambda_`` (temperature on raw costs) is the library default 1.0 and, as a second row, the
  scale of this model's energies.
- nevergrad: ``NGOpt`` on the H x A block actions in the action box, initialised at the warm
  start, asked for ``samples`` candidates at a time (``num_workers``), scored in one batch.
- pytorch-mppi's sampling noise has our CEM's ``std_init`` (configs/mpc.yaml) as its std.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.results import report  # noqa: E402
from jepa_world.training.cli import load_config  # noqa: E402
from planners import mpc  # noqa: E402
from planners.base import (  # noqa: E402
    PlannerSettings,
    PlanResult,
    Scorer,
    initial_mean,
    model_planner_settings,
    search_shape,
    to_blocks,
)


@dataclass
class LibrarySettings(PlannerSettings):
    """A library planner's budget: ``samples`` per iteration, ``iterations`` per plan."""

    samples: int = 128
    iterations: int = 4
    temperature: float = 1.0  # pytorch-mppi's lambda_
    std_init: float = 1.0


def _env_seed(generator: Any, e: int) -> int:
    """A seed for the library's own randomness, drawn from environment e's generator (so
    runs are repeatable and every replanning step draws new noise)."""
    if isinstance(generator, (list, tuple)):
        return int(torch.randint(0, 2**31 - 1, (1,), generator=generator[e]))
    return e


def _start(world_model: Any, z_now: Any, init_mean: Any, settings: LibrarySettings):
    shape = search_shape(settings, world_model)  # [H, 1, A]
    return shape, initial_mean(init_mean, z_now.shape[0], shape, settings,
                               torch.device(world_model.device))


def nevergrad_plan(world_model: Any, z_now: torch.Tensor, z_goal: torch.Tensor, *,
                   proprio: torch.Tensor | None = None, init_mean: Any = None,
                   generator: Any = None, settings: LibrarySettings,
                   optimizer_name: str = "NGOpt") -> PlanResult:
    import nevergrad as ng

    started = time.perf_counter()
    shape, mean = _start(world_model, z_now, init_mean, settings)
    plans, energies, model_s, evaluations = [], [], 0.0, 0
    for e in range(z_now.shape[0]):
        score = Scorer(world_model, z_now[e:e + 1], z_goal[e:e + 1],
                       None if proprio is None else proprio[e:e + 1],
                       settings.objective(world_model))
        param = ng.p.Array(init=mean[e].flatten().numpy().astype(np.float64))
        param.set_bounds(settings.action_low, settings.action_high)
        param.random_state = np.random.RandomState(_env_seed(generator, e))
        budget = settings.samples * settings.iterations
        optimizer = ng.optimizers.registry[optimizer_name](
            parametrization=param, budget=budget, num_workers=settings.samples)
        for _ in range(settings.iterations):
            asked = [optimizer.ask() for _ in range(settings.samples)]
            batch = torch.tensor(np.stack([a.value for a in asked]), dtype=torch.float32)
            energy = score(batch.reshape(1, len(asked), *shape))[0]
            for candidate, value in zip(asked, energy.tolist(), strict=True):
                optimizer.tell(candidate, value)
        best = torch.tensor(optimizer.provide_recommendation().value, dtype=torch.float32)
        best = best.reshape(1, 1, *shape)
        energies.append(score(best)[0])
        plans.append(best[0])
        model_s, evaluations = model_s + score.model_s, evaluations + score.evaluations
    params = torch.cat(plans)
    return PlanResult(to_blocks(params, int(world_model.frameskip)).contiguous(),
                      torch.cat(energies),
                      {"planner": f"nevergrad.{optimizer_name}", "evaluations": evaluations,
                       "model_s": model_s, "total_s": time.perf_counter() - started})


def pytorch_mppi_plan(world_model: Any, z_now: torch.Tensor, z_goal: torch.Tensor, *,
                      proprio: torch.Tensor | None = None, init_mean: Any = None,
                      generator: Any = None, settings: LibrarySettings) -> PlanResult:
    from pytorch_mppi import MPPI

    started = time.perf_counter()
    shape, mean = _start(world_model, z_now, init_mean, settings)
    horizon, _, action_dim = shape
    tokens, width = world_model.latent_shape
    latent_size = tokens * width
    fs = int(world_model.frameskip)
    objective = settings.objective(world_model)
    plans, energies, model_s, evaluations = [], [], 0.0, 0
    for e in range(z_now.shape[0]):
        goal = z_goal[e:e + 1]
        timer = {"s": 0.0}

        def dynamics(state: torch.Tensor, u: torch.Tensor, timer: dict = timer) -> torch.Tensor:
            began = time.perf_counter()
            z = state[:, :latent_size].reshape(-1, tokens, width)
            p = state[:, latent_size:] if state.shape[1] > latent_size else None
            z_next, p_next = world_model.step(z, u.unsqueeze(1).expand(-1, fs, -1), p)
            parts = [z_next.flatten(1)] + ([] if p_next is None else [p_next])
            timer["s"] += time.perf_counter() - began
            return torch.cat(parts, 1)

        def running_cost(state: torch.Tensor, u: torch.Tensor,
                         goal: torch.Tensor = goal) -> torch.Tensor:
            z = state[:, :latent_size].reshape(-1, tokens, width)
            return objective.distance(z, goal, objective.metric)

        state0 = [z_now[e].flatten()] + ([] if proprio is None else [proprio[e]])
        state0 = torch.cat(state0)
        torch.manual_seed(_env_seed(generator, e))
        low = torch.full((action_dim,), settings.action_low)
        high = torch.full((action_dim,), settings.action_high)
        controller = MPPI(dynamics, running_cost, state0.numel(),
                          noise_sigma=settings.std_init**2 * torch.eye(action_dim),
                          num_samples=settings.samples, horizon=horizon,
                          lambda_=settings.temperature, u_min=low, u_max=high,
                          U_init=mean[e, :, 0].clone())
        for _ in range(settings.iterations):
            controller.command(state0, shift_nominal_trajectory=False)
        params = controller.U.clamp(settings.action_low, settings.action_high)
        params = params.reshape(1, 1, *shape).float()
        score = Scorer(world_model, z_now[e:e + 1], goal,
                       None if proprio is None else proprio[e:e + 1], objective)
        energies.append(score(params)[0])
        plans.append(params[0])
        model_s += timer["s"]
        evaluations += settings.samples * settings.iterations
    params = torch.cat(plans)
    return PlanResult(to_blocks(params, fs).contiguous(), torch.cat(energies),
                      {"planner": "pytorch_mppi.MPPI", "evaluations": evaluations,
                       "model_s": model_s, "total_s": time.perf_counter() - started})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--checkpoint", default="reach")
    parser.add_argument("--energy-scale", type=float, default=0.01,
                        help="pytorch-mppi's second lambda_ (about this model's energy spread)")
    parser.add_argument("--nevergrad", default="NGOpt,CMA",
                        help="nevergrad optimisers, one row each")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    model = mpc.load_world_model(args.checkpoint, torch.device("cpu"))
    budget = {"samples": args.samples, "iterations": args.iterations}
    defaults = load_config("mpc", [])

    def elites(section: str) -> int:
        """The section's elite fraction of configs/mpc.yaml, at this budget's samples."""
        samples = model_planner_settings(model, section, defaults[section])["samples"]
        fraction = defaults[section].elites / samples
        return max(2, round(fraction * args.samples))

    overrides = [f"episodes={args.episodes}", f"checkpoint={args.checkpoint}"]

    def evaluate(extra: list[str], plan: Any = None) -> dict:
        cfg = load_config("mpc", overrides + extra)
        return mpc.evaluate(cfg, model=model, progress=False, log=lambda line: None, plan=plan)

    def library(plan_fn: Any, **keys: Any) -> dict:
        cfg = mpc.typed_config(mpc.MPCConfig, load_config("mpc", overrides))
        horizon, steps = mpc.planning_defaults(model, cfg.horizon, cfg.energy_steps)
        settings = LibrarySettings(horizon=horizon, metric=cfg.energy, energy_steps=steps,
                                   std_init=float(cfg.cem["std_init"]), **budget, **keys)
        settings.validate()
        return evaluate([], (plan_fn, settings))

    def attempt(name: str, run: Any) -> tuple[str, dict | str]:
        """A failing library is a row that says why, not a lost table."""
        try:
            return name, run()
        except Exception as exc:  # noqa: BLE001 - any library failure is reported
            return name, f"failed: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}"

    cem = [f"cem.samples={args.samples}", f"cem.iterations={args.iterations}",
           f"cem.elites={elites('cem')}"]
    mppi = ["planner=mppi", f"mppi.samples={args.samples}", f"mppi.iterations={args.iterations}",
            f"mppi.elites={elites('mppi')}"]
    runs = [
        attempt("ours: CEM (configs/mpc.yaml, this budget)", lambda: evaluate(cem)),
        attempt("ours: MPPI (configs/mpc.yaml, this budget)", lambda: evaluate(mppi)),
        attempt("pytorch-mppi MPPI, lambda 1 (default)", lambda: library(pytorch_mppi_plan)),
        attempt(f"pytorch-mppi MPPI, lambda {args.energy_scale:g}",
                lambda: library(pytorch_mppi_plan, temperature=args.energy_scale)),
    ]
    for name in [n for n in args.nevergrad.split(",") if n]:
        plan_fn = functools.partial(nevergrad_plan, optimizer_name=name)
        plan_fn.__module__, plan_fn.__qualname__ = __name__, f"nevergrad_plan[{name}]"
        runs.append(attempt(f"nevergrad {name}", lambda plan_fn=plan_fn: library(plan_fn)))
    rows = [[name, m, "", "", "", ""] if isinstance(m, str) else
            [name, f"{100 * m['success_rate']:.0f} %", f"{100 * m['success_any_rate']:.0f} %",
             f"{m['final_joint_error_mean']:.3f}", f"{m['plan_ms_median']:.0f}",
             f"{m['plan_ms_p90']:.0f}"] for name, m in runs]
    report(f"Planners against libraries: {args.checkpoint}, {args.samples} x "
           f"{args.iterations} sequences per replanning step, {args.episodes} episodes",
           ["planner", "success (end)", "success (any step)", "final joint error mean (rad)",
            "replan ms median", "replan ms p90"], rows,
           notes=("Offset goals, budget 50 env steps, the same held-out episodes and warm "
                  "start for every row, one environment at a time."),
           record=not args.no_record)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    # nevergrad's scipy-based optimisers run in a non-daemon thread that an error leaves
    # waiting forever, which would keep the interpreter from exiting
    os._exit(0)
