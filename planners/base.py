"""What every planner shares: settings, the result type, sampling, scoring, warm starts.

Planners search action sequences ``[E,H,fs,A]`` (E environments, H action blocks of ``fs`` env
steps, A action dims) whose predicted latents reach a goal latent. They only talk to the world
model through the protocol below, so the learned ``jepa_world.WorldModel``, the MuJoCo oracle
(``planners.oracle``) and the toy systems in the tests are interchangeable.

Batching over environments is exact: pass one ``torch.Generator`` per environment and every
random draw for environment ``e`` comes from generator ``e`` alone, every update is per
environment, and the world model is called once per iteration on all ``E*N`` sequences. Planning
E environments together therefore gives the same plans as E separate calls with the same
generators (bit-exact for models whose per-row outputs do not depend on the batch size).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor

from planners.energy import Energy
from planners.tail import PolicyTail
from planners.threads import cpu_workers, one_intra_op_thread, run_parallel

DEFAULT_HORIZON = 2  # action blocks, when neither the command line nor the model sets one
DEFAULT_ENERGY_STEPS = "all"  # likewise
CPU_CHUNK = 256  # sequences per world-model call when scoring on a CPU
# Fewer sequences than this per scoring thread are scored in the calling thread alone (with one
# intra-op thread): handing a few sequences to the pool costs more than it saves, and two
# intra-op threads on a batch this small wait for each other after every operation
# (benchmarks/RESULTS.md, issue 16: the Gauss-Newton polish's 11 and 4 sequences).
MIN_SEQUENCES_PER_WORKER = 8

Generators = torch.Generator | Sequence[torch.Generator] | None


@runtime_checkable
class WorldModelProtocol(Protocol):
    """The part of ``jepa_world.WorldModel`` that planners use: it predicts, the planner's
    ``planners.energy.Energy`` scores (a model may add a ``distance(z, goal, metric)`` of its
    own, as the simulator oracle does)."""

    action_dim: int
    frameskip: int
    device: torch.device

    def encode(self, frames: Any) -> Tensor: ...

    def rollout(self, z: Tensor, actions: Tensor, proprio: Tensor | None = None) -> Tensor: ...


@dataclass
class PlannerSettings:
    """Settings common to all planners.

    ``energy_steps="final"`` scores the last predicted latent only (the V-JEPA 2-AC / DINO-WM
    protocol); ``"all"`` averages the energy over every predicted block, weighted by
    ``step_weights`` (H values, normalised; uniform when None), which rewards getting close
    early. ``repeat_in_block`` searches one action per block, repeated ``frameskip`` times: the
    search space shrinks from H*fs*A to H*A dimensions. ``workers``: CPU threads that score
    candidates at once, one intra-op thread each (0 = torch's thread count; 1 = off, torch's
    own intra-op threads only). ``readout_weight``: the weight of the world model's state
    readout term in the energy (``jepa_world.readout``; None = the readout's own weight when
    the model carries one, 0 = off).
    """

    horizon: int = 5
    metric: str = "l1"
    energy_steps: str = "final"
    step_weights: tuple[float, ...] | None = None
    repeat_in_block: bool = True
    action_low: float = -1.0
    action_high: float = 1.0
    workers: int = 0
    readout_weight: float | None = None

    def objective(self, world_model: Any = None) -> Energy:
        """The energy these settings describe (with ``world_model``'s own distance, if any)."""
        return Energy.for_model(self, world_model)

    def validate(self) -> None:
        """Raise ValueError with a one-line reason for impossible settings."""
        _check_declared_numbers(self)
        _positive(self, "horizon")
        cpu_workers(self.workers)  # the one place that knows the valid worker counts
        self.objective()  # metric, energy_steps and step_weights valid
        if self.step_weights is not None and len(self.step_weights) != self.horizon:
            raise ValueError(f"step_weights needs {self.horizon} values (one per block), "
                             f"got {len(self.step_weights)}")
        if not self.action_low < self.action_high:
            raise ValueError(
                f"action_low must be below action_high, got {self.action_low}, {self.action_high}"
            )


@dataclass
class PlanResult:
    """The plan for E environments: ``actions`` [E,H,fs,A] within the action bounds, the
    predicted ``energy`` [E] of those actions, and diagnostics in ``info`` (``model_s``: time
    inside the world model, ``total_s``, ``evaluations``: sequences scored, ``history``: best
    energy per iteration [iters,E])."""

    actions: Tensor
    energy: Tensor
    info: dict[str, Any] = field(default_factory=dict)


S = TypeVar("S", bound=PlannerSettings)
T = TypeVar("T")


@functools.lru_cache(maxsize=1)
def _command_config() -> dict[str, Any]:
    from importlib import resources

    from omegaconf import OmegaConf

    loaded = OmegaConf.load(str(resources.files("configs") / "mpc.yaml"))
    return OmegaConf.to_container(loaded)  # type: ignore[return-value]


def command_setting(key: str) -> Any:
    """A default of ``planners.mpc`` (configs/mpc.yaml, the one place that holds them), e.g.
    ``command_setting("cem")``; a fresh copy, safe to change."""
    return copy.deepcopy(_command_config()[key])


def planning_defaults(
    model: Any, horizon: int | None, energy_steps: str | None
) -> tuple[int, str]:
    """The horizon and energy_steps to plan with: those asked for, else the world model's own
    (``model.config.planning``), else the project's defaults."""
    planning = getattr(getattr(model, "config", None), "planning", None) or {}
    if horizon is None:
        horizon = int(planning.get("horizon", DEFAULT_HORIZON))
    if energy_steps is None:
        energy_steps = str(planning.get("energy_steps", DEFAULT_ENERGY_STEPS))
    return horizon, energy_steps


# A sampling planner's settings that a world model may carry in ``config.planning`` (its
# builder chose them for it); null in configs/mpc.yaml means "the world model's, else the
# planner's own default".
MODEL_PLANNER_KEYS = ("polish_steps", "polish_lr", "polish_method")
# A planner's search size that a world model may carry as ``config.planning.<planner>_<key>``
# (``cem_samples``: its builder measured that a smaller search plans as well), and the
# command's own where it carries none; null in configs/mpc.yaml means "the world model's, else
# this".
MODEL_SEARCH_KEYS = {"cem": {"samples": 128, "iterations": 4}}
_MODEL_CARRIED = {*MODEL_PLANNER_KEYS, *(k for keys in MODEL_SEARCH_KEYS.values() for k in keys)}


def model_planner_settings(model: Any, planner: str, section: Any, *,
                           tail: bool = False) -> dict[str, Any]:
    """A copy of the settings ``section`` of ``planner`` (cem, mppi, ...) whose unset (None)
    model-carried keys take the world model's ``config.planning`` values where it has them:
    the search size (``MODEL_SEARCH_KEYS``, else the command's own size there) and the polish
    (``MODEL_PLANNER_KEYS``, else None: ``make_settings`` then uses the planner's own
    default). With a policy ``tail`` the model's values stay unused: they were chosen without
    one, and a tail refuses the polish."""
    planning = {} if tail else getattr(getattr(model, "config", None), "planning", None) or {}
    result = dict(section)
    for key, fallback in MODEL_SEARCH_KEYS.get(planner, {}).items():
        if result.get(key) is None:
            carried = planning.get(f"{planner}_{key}")
            result[key] = fallback if carried is None else carried
    for key in MODEL_PLANNER_KEYS:
        if key in result and result[key] is None and planning.get(key) is not None:
            result[key] = planning[key]
    return result


def make_settings(cls: type[S], settings: S | None, overrides: dict[str, Any]) -> S:
    """Settings from a dataclass instance and/or keyword overrides, validated; a None
    model-carried key (``MODEL_PLANNER_KEYS``, ``MODEL_SEARCH_KEYS``) keeps the settings' own
    value."""
    overrides = {k: v for k, v in overrides.items() if not (k in _MODEL_CARRIED and v is None)}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown} (known: {sorted(names)})")
    if settings is None:
        result = cls(**overrides)
    elif not isinstance(settings, cls):
        raise TypeError(f"settings must be {cls.__name__}, got {type(settings).__name__}")
    else:
        result = dataclasses.replace(settings, **overrides)
    if result.step_weights is not None:
        result.step_weights = tuple(float(w) for w in result.step_weights)
    result.validate()
    return result


def _check_declared_numbers(settings: Any) -> None:
    """Every field declared ``int`` holds an integer (2.0 is taken as 2, 2.5 is refused) and
    every float is finite: NaN or infinite settings would plan garbage and exit 0."""
    for item in dataclasses.fields(settings):
        value, kind = getattr(settings, item.name), str(item.type)
        if value is None or isinstance(value, str):
            continue
        if kind == "int":
            number = float(value)
            if isinstance(value, bool) or not number.is_integer():
                raise ValueError(f"{item.name} must be an integer, got {value}")
            setattr(settings, item.name, int(number))
        elif kind.startswith(("float", "tuple[float")):
            values = value if isinstance(value, (tuple, list)) else (value,)
            if not all(math.isfinite(float(v)) for v in values):
                raise ValueError(f"{item.name} must be finite, got {value}")


def _positive(settings: Any, *names: str) -> None:
    for name in names:
        if int(getattr(settings, name)) < 1:
            raise ValueError(f"{name} must be a positive integer, got {getattr(settings, name)}")


# ---------------------------------------------------------------------- action sequences
def shift_plan(actions: Tensor, blocks: int = 1, fill: str = "last") -> Tensor:
    """Warm start for the next replanning step: drop the ``blocks`` executed action blocks of
    ``actions`` [E,H,fs,A] and append copies of the last block (``fill="last"``) or zeros."""
    if actions.dim() != 4:
        raise ValueError(f"actions must be [E,H,fs,A], got {tuple(actions.shape)}")
    if fill not in ("last", "zeros"):
        raise ValueError(f"fill must be 'last' or 'zeros', got {fill!r}")
    horizon = actions.shape[1]
    blocks = min(max(int(blocks), 0), horizon)
    if blocks == 0:
        return actions.clone()
    kept = actions[:, blocks:]
    if fill == "zeros":
        pad = torch.zeros_like(actions[:, :blocks])
    else:
        pad = actions[:, -1:].expand(-1, blocks, -1, -1)
    return torch.cat([kept, pad], dim=1).contiguous()


def search_shape(settings: PlannerSettings, world_model: WorldModelProtocol) -> tuple[int, ...]:
    """Shape of one searched sequence: [H, 1 or fs, A]."""
    per_block = 1 if settings.repeat_in_block else int(world_model.frameskip)
    return (settings.horizon, per_block, int(world_model.action_dim))


def to_blocks(params: Tensor, frameskip: int) -> Tensor:
    """[..., H, 1 or fs, A] searched values -> [..., H, fs, A] executable actions."""
    if params.shape[-2] == frameskip:
        return params
    return params.expand(*params.shape[:-2], frameskip, params.shape[-1])


def initial_mean(
    init_mean: Tensor | None,
    num_envs: int,
    shape: tuple[int, ...],
    settings: PlannerSettings,
    device: torch.device,
) -> Tensor:
    """The search mean [E,H,b,A]: the warm start cut or padded (with its last block) to the
    horizon and averaged within blocks when one action per block is searched; zeros (the middle
    of the action box) without a warm start."""
    horizon, per_block, action_dim = shape
    middle = 0.5 * (settings.action_low + settings.action_high)
    if init_mean is None:
        return torch.full((num_envs, *shape), middle, device=device)
    init = torch.as_tensor(init_mean, dtype=torch.float32, device=device)
    if init.dim() != 4 or init.shape[0] != num_envs or init.shape[-1] != action_dim:
        raise ValueError(
            f"init_mean must be [{num_envs},H,fs,{action_dim}], got {tuple(init.shape)}"
        )
    if init.shape[1] >= horizon:
        init = init[:, :horizon]
    else:
        pad = init[:, -1:].expand(-1, horizon - init.shape[1], -1, -1)
        init = torch.cat([init, pad], dim=1)
    if per_block == 1:
        init = init.mean(dim=2, keepdim=True)
    elif init.shape[2] != per_block:
        raise ValueError(f"init_mean has {init.shape[2]} actions per block, expected {per_block}")
    return init.clamp(settings.action_low, settings.action_high).contiguous()


# ---------------------------------------------------------------------- randomness
def check_generators(generator: Generators, num_envs: int) -> Generators:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    generators = list(generator)
    if len(generators) != num_envs:
        raise ValueError(f"need one generator per environment ({num_envs}), got {len(generators)}")
    return generators


def randn(generator: Generators, num_envs: int, shape: tuple[int, ...], device) -> Tensor:
    """Standard normal noise [E,*shape]. With a list of generators, env ``e`` draws from
    generator ``e`` only, so its noise does not depend on the other environments in the batch
    (batched == unbatched). A single generator draws all E at once (fast, batch-dependent).
    Drawn on the CPU and moved, so a seed gives the same plan on every device."""
    return _draw(torch.randn, generator, num_envs, shape).to(device)


def rand(generator: Generators, num_envs: int, shape: tuple[int, ...], device) -> Tensor:
    """Uniform [0,1) noise [E,*shape]; per-environment generators as in ``randn``."""
    return _draw(torch.rand, generator, num_envs, shape).to(device)


def _draw(fn, generator: Generators, num_envs: int, shape: tuple[int, ...]) -> Tensor:
    if generator is None or isinstance(generator, torch.Generator):
        return fn((num_envs, *shape), generator=generator)
    return torch.stack([fn(shape, generator=g) for g in generator])


# ---------------------------------------------------------------------- scoring
class Scorer:
    """Scores candidate sequences [E,N,H,b,A] with batched world-model rollouts (``chunk``
    sequences per call: "auto" = ``CPU_CHUNK`` on a CPU, all at once elsewhere; None = all)
    and the planner's ``Energy``, and keeps the time spent inside the world model
    (``model_s``) for timing breakdowns.

    ``workers``: on a CPU, chunks are scored by that many threads at once, each with one
    intra-op thread (``planners.threads``; 0 = torch's thread count, 1 = off), for world
    models that declare ``parallel_scoring = True`` (their rollouts share no mutable state);
    batches too small to share, and gradients (the gradient planner, the polish), are
    computed in the calling thread with one intra-op thread. ``tail``: a
    policy that continues every sequence in the world model before it is scored
    (``planners.tail``)."""

    def __init__(
        self,
        world_model: WorldModelProtocol,
        z_now: Tensor,
        z_goal: Tensor,
        proprio: Tensor | None,
        objective: Energy,
        chunk: int | str | None = "auto",
        workers: int = 0,
        tail: PolicyTail | None = None,
    ) -> None:
        if not isinstance(objective, Energy):
            raise TypeError(f"objective must be a planners.energy.Energy, got "
                            f"{type(objective).__name__}")
        if tail is not None:
            if not hasattr(world_model, "rollout_many"):
                raise ValueError("a policy tail needs a learned world model (rollout_many)")
            tail.check_objective(objective)
        self.wm = world_model
        self.objective = objective
        self.tail = tail
        self.device = torch.device(world_model.device)
        self.frameskip = int(world_model.frameskip)
        self.z_now = z_now.to(self.device)
        self.z_goal = z_goal.to(self.device)
        if self.z_now.shape[0] != self.z_goal.shape[0] and self.z_goal.shape[0] != 1:
            raise ValueError(
                f"z_goal batch {self.z_goal.shape[0]} does not match z_now batch "
                f"{self.z_now.shape[0]} (or 1)"
            )
        self.proprio = None if proprio is None else torch.as_tensor(proprio).to(self.device)
        self.num_envs = self.z_now.shape[0]
        # sequences per world-model call: on a CPU a few hundred at a time stay in cache and
        # score a large batch faster than one call (benchmarks/RESULTS.md, issue 15)
        self.chunk = CPU_CHUNK if chunk == "auto" and self.device.type == "cpu" else (
            None if chunk == "auto" else chunk)
        parallel = self.device.type == "cpu" and getattr(world_model, "parallel_scoring", False)
        self.workers = cpu_workers(workers) if parallel else 1
        self.model_s = 0.0
        self.evaluations = 0

    def __call__(self, params: Tensor) -> Tensor:
        """params [E,N,H,b,A] -> energies [E,N] (differentiable if params require grad)."""
        e, n = params.shape[:2]
        goal = self.z_goal.expand(e, *self.z_goal.shape[1:])
        parts = self._score_chunks(
            lambda actions: self._energy(actions, goal), to_blocks(params, self.frameskip),
            1 if params.requires_grad else None)
        return torch.cat(parts, dim=1).float()

    def residuals(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """params [E,N,H,b,A] -> (energies [E,N], residuals [E,N,M]) from the same predictions,
        without gradients, chunked and shared over threads as ``__call__``: the residuals'
        squares sum to the energy less the objective's ``extra`` term (``Energy.residuals``)."""
        e = params.shape[0]
        goal = self.z_goal.expand(e, *self.z_goal.shape[1:])

        def chunk(actions: Tensor) -> tuple[Tensor, Tensor]:
            n = actions.shape[1]
            predicted = self._predict(actions)
            goals = goal.repeat_interleave(n, dim=0)
            return (self.objective(predicted, goals).reshape(e, n),
                    self.objective.residuals(predicted, goals).reshape(e, n, -1))

        with torch.no_grad():
            parts = self._score_chunks(chunk, to_blocks(params, self.frameskip))
        return (torch.cat([p[0] for p in parts], dim=1).float(),
                torch.cat([p[1] for p in parts], dim=1).float())

    def _score_chunks(self, score: Callable[[Tensor], T], actions: Tensor,
                      workers: int | None = None) -> list[T]:
        """``score`` on chunks of the N sequences of ``actions`` [E,N,H,fs,A] (along N), on
        up to ``self.workers`` threads; a batch too small to share (``MIN_SEQUENCES_PER_WORKER``)
        runs in the calling thread with one intra-op thread. Counts time and evaluations."""
        e, n = actions.shape[:2]
        started = time.perf_counter()
        if workers is None:
            workers = max(1, min(self.workers, e * n // MIN_SEQUENCES_PER_WORKER))
        step = max(1, self.chunk // e) if self.chunk else n
        if workers > 1:  # at least one chunk per worker
            step = min(step, -(-n // workers))
        jobs = [functools.partial(score, actions[:, i:i + step]) for i in range(0, n, step)]
        if workers == 1 and self.workers > 1:
            with one_intra_op_thread(self.device):
                parts = [job() for job in jobs]
        else:
            parts = run_parallel(jobs, workers)
        self.model_s += time.perf_counter() - started
        self.evaluations += e * n
        return parts

    def _predict(self, actions: Tensor) -> Tensor:
        """actions [E,n,H,fs,A] -> predicted latents [E*n,H',K,D], one world-model call."""
        e, n = actions.shape[:2]
        if self.tail is not None:
            goals = self.z_goal.expand(e, *self.z_goal.shape[1:]).repeat_interleave(n, dim=0)
            return self.wm.rollout_many(
                self.z_now, actions, self.proprio,
                then=lambda z, p: self.tail.act(z, p, goals), then_blocks=self.tail.blocks,
            ).flatten(0, 1)
        if hasattr(self.wm, "rollout_many"):  # shares the work that depends on the start only
            return self.wm.rollout_many(self.z_now, actions, self.proprio).flatten(0, 1)
        proprio = None if self.proprio is None else self.proprio.repeat_interleave(n, dim=0)
        return self.wm.rollout(self.z_now.repeat_interleave(n, dim=0), actions.flatten(0, 1),
                               proprio)

    def _energy(self, actions: Tensor, goal: Tensor) -> Tensor:
        """actions [E,n,H,fs,A] -> energies [E,n], one world-model call."""
        e, n = actions.shape[:2]
        energy = self.objective(self._predict(actions), goal.repeat_interleave(n, dim=0))
        return energy.reshape(e, n)


def gather_rows(values: Tensor, index: Tensor) -> Tensor:
    """values [E,N,...], index [E,M] -> [E,M,...] (per-environment selection)."""
    view = index.reshape(*index.shape, *([1] * (values.dim() - 2)))
    return torch.gather(values, 1, view.expand(*index.shape, *values.shape[2:]))


def lowest(energy: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """The ``count`` lowest energies per row and their indices, ties broken by index (stable,
    so the choice never depends on the batch)."""
    order = torch.sort(energy, dim=1, stable=True).indices[:, :count]
    return torch.gather(energy, 1, order), order


class BestTracker:
    """Keeps the lowest-energy sequence seen so far for every environment."""

    def __init__(self, num_envs: int, shape: tuple[int, ...], device: torch.device) -> None:
        self.energy = torch.full((num_envs,), float("inf"), device=device)
        self.params = torch.zeros((num_envs, *shape), device=device)

    def update(self, energy: Tensor, params: Tensor) -> None:
        """energy [E,N], params [E,N,...]: keep the best of the new candidates if it is better."""
        value, index = lowest(energy.detach(), 1)
        candidate = gather_rows(params.detach(), index)[:, 0]
        better = value[:, 0] < self.energy
        self.energy = torch.where(better, value[:, 0], self.energy)
        mask = better.reshape(-1, *([1] * (candidate.dim() - 1)))
        self.params = torch.where(mask, candidate, self.params)


def prepare(
    world_model: WorldModelProtocol,
    z_now: Tensor,
    z_goal: Tensor,
    init_mean: Tensor | None,
    generator: Generators,
    settings: PlannerSettings,
) -> tuple[Generators, tuple[int, ...], Tensor]:
    """Checks shared by the planners; returns the generators, search shape and initial mean."""
    if z_now.dim() < 2:
        raise ValueError(f"z_now must be [E,K,D], got {tuple(z_now.shape)}")
    num_envs = z_now.shape[0]
    generators = check_generators(generator, num_envs)
    shape = search_shape(settings, world_model)
    device = torch.device(world_model.device)
    mean = initial_mean(init_mean, num_envs, shape, settings, device)
    return generators, shape, mean
