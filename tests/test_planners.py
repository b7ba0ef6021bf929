"""Planners on a tiny linear latent system whose optimal actions are known."""

from __future__ import annotations

import pytest
import torch

from planners import (
    PLANNERS,
    CEMSettings,
    UnknownPlannerError,
    WorldModelProtocol,
    get_planner,
    shift_plan,
)
from planners.base import Scorer, initial_mean
from planners.energy import Energy
from planners.policies import PlannerPolicy


class LinearModel:
    """z' = A z + B a_block on [B,K,D] latents (K=2 tokens of width D=3), a_block = the sum of
    the block's ``frameskip`` actions. A = I (an integrator, so the goal set is reachable) or a
    rotation-like mix; B embeds the 2-D action into the 6-D latent."""

    def __init__(self, frameskip: int = 4, mix: bool = False, proprio_dim: int = 0) -> None:
        gen = torch.Generator().manual_seed(0)
        self.action_dim, self.frameskip, self.device = 2, frameskip, torch.device("cpu")
        self.k, self.d = 2, 3
        n = self.k * self.d
        self.A = torch.eye(n)
        if mix:
            q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen))
            self.A = 0.9 * torch.eye(n) + 0.1 * q
        self.B = 0.1 * torch.randn(n, self.action_dim, generator=gen)
        self.proprio_dim = proprio_dim
        self.calls = 0

    def encode(self, frames):  # pragma: no cover - not used by planners
        raise NotImplementedError

    def step(self, z: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
        flat = z.reshape(z.shape[0], -1)
        nxt = flat @ self.A.T + block.sum(dim=1) @ self.B.T
        return nxt.reshape(z.shape)

    def rollout(self, z, actions, proprio=None):
        self.calls += 1
        if self.proprio_dim:
            assert proprio is not None and proprio.shape == (z.shape[0], self.proprio_dim)
        outputs = []
        for t in range(actions.shape[1]):
            z = self.step(z, actions[:, t])
            outputs.append(z)
        return torch.stack(outputs, dim=1)

    def energy(self, z, z_goal, metric="l1"):
        if z_goal.dim() == 3 and z.dim() == 4:
            z_goal = z_goal.unsqueeze(1)
        diff = z - z_goal
        return diff.abs().mean((-2, -1)) if metric == "l1" else diff.pow(2).mean((-2, -1))

    def to(self, device):
        return self


def problem(num_envs: int = 1, seed: int = 0, horizon: int = 3, frameskip: int = 4):
    """Start latents and reachable goals: the goal is where known actions in [-0.6, 0.6] lead."""
    model = LinearModel(frameskip=frameskip)
    gen = torch.Generator().manual_seed(seed)
    z0 = torch.randn(num_envs, model.k, model.d, generator=gen)
    target = (torch.rand(num_envs, horizon, 1, 2, generator=gen) - 0.5) * 1.2
    actions = target.expand(-1, -1, frameskip, -1)
    goal = model.rollout(z0, actions)[:, -1]
    return model, z0, goal, actions


def generators(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


SMALL = {
    "cem": {"samples": 200, "elites": 20, "iterations": 25},
    "mppi": {"samples": 256, "elites": 32, "iterations": 25, "temperature": 5.0},
    "gradient": {"steps": 150, "lr": 0.1, "restarts": 2},
}


def test_model_follows_protocol():
    assert isinstance(LinearModel(), WorldModelProtocol)


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_reaches_the_goal(name):
    plan, _ = get_planner(name)
    model, z0, goal, _ = problem(num_envs=2)
    result = plan(model, z0, goal, generator=generators([1, 2]), horizon=3, **SMALL[name])
    assert result.actions.shape == (2, 3, 4, 2)
    assert result.energy.shape == (2,)
    reached = model.rollout(z0, result.actions)[:, -1]
    start_energy = model.energy(z0, goal)
    final = model.energy(reached, goal)
    assert torch.allclose(final, result.energy, atol=1e-5)
    assert torch.all(final < 0.02), (final, start_energy)
    assert torch.all(final < 0.1 * start_energy)


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_batched_equals_unbatched(name):
    plan, _ = get_planner(name)
    model, z0, goal, _ = problem(num_envs=3, seed=4)
    settings = {**SMALL[name], "iterations": 5} if name != "gradient" else {"steps": 10}
    batched = plan(model, z0, goal, generator=generators([7, 8, 9]), horizon=3, **settings)
    for e, seed in enumerate([7, 8, 9]):
        single = plan(model, z0[e : e + 1], goal[e : e + 1], generator=generators([seed]),
                      horizon=3, **settings)
        torch.testing.assert_close(batched.actions[e : e + 1], single.actions, rtol=0, atol=1e-6)
        torch.testing.assert_close(batched.energy[e : e + 1], single.energy, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_same_seed_same_plan(name):
    plan, _ = get_planner(name)
    model, z0, goal, _ = problem(num_envs=2, seed=3)
    settings = {"iterations": 3} if name != "gradient" else {"steps": 5}
    a = plan(model, z0, goal, generator=generators([5, 6]), **settings)
    b = plan(model, z0, goal, generator=generators([5, 6]), **settings)
    c = plan(model, z0, goal, generator=generators([50, 60]), **settings)
    assert torch.equal(a.actions, b.actions) and torch.equal(a.energy, b.energy)
    assert not torch.equal(a.actions, c.actions)


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_actions_stay_in_the_box(name):
    plan, _ = get_planner(name)
    model, z0, _, _ = problem(num_envs=2)
    far_goal = z0 + 100.0  # unreachable: the planner pushes against the bounds
    settings = {"iterations": 4} if name != "gradient" else {"steps": 20, "lr": 1.0}
    result = plan(model, z0, far_goal, generator=generators([0, 1]), **settings,
                  action_low=-0.5, action_high=0.25)
    assert result.actions.min() >= -0.5 and result.actions.max() <= 0.25
    # pushed against the box (not merely left in the middle)
    assert result.actions.max() > 0.2 or result.actions.min() < -0.45


def test_repeat_in_block_false_searches_every_step():
    plan, _ = get_planner("cem")
    model, z0, goal, _ = problem()
    held = plan(model, z0, goal, generator=generators([0]), iterations=2)
    free = plan(model, z0, goal, generator=generators([0]), iterations=2, repeat_in_block=False)
    assert torch.all(held.actions == held.actions[:, :, :1])  # one action per block
    assert not torch.all(free.actions == free.actions[:, :, :1])


def test_energy_steps_all_prefers_early_arrival():
    """With the goal one block away and horizon 3, 'final' only cares where the last block
    ends; 'all' also wants the arm there early, so its first block moves (nearly) all the way."""
    model = LinearModel(frameskip=4)
    z0 = torch.zeros(1, 2, 3)
    step = torch.tensor([[[0.5, -0.5]]]).expand(1, 4, 2)
    goal = model.step(z0, step)
    plan, _ = get_planner("cem")
    kwargs = {"generator": generators([0]), "horizon": 3, "samples": 300, "iterations": 30}
    all_steps = plan(model, z0, goal, energy_steps="all", **kwargs)
    final = plan(model, z0, goal, energy_steps="final", **kwargs)
    first_all = model.energy(model.rollout(z0, all_steps.actions)[:, 0], goal)
    first_final = model.energy(model.rollout(z0, final.actions)[:, 0], goal)
    assert first_all < 0.02
    assert first_all < first_final
    # weights that only count the last block turn "all" back into "final"
    candidates = torch.rand(1, 16, 3, 1, 2) * 2 - 1
    score_final = Scorer(model, z0, goal, None, CEMSettings(horizon=3).objective())
    weighted = CEMSettings(horizon=3, energy_steps="all", step_weights=(0.0, 0.0, 2.0))
    score_last = Scorer(model, z0, goal, None, weighted.objective())
    torch.testing.assert_close(score_last(candidates), score_final(candidates))
    uniform = Scorer(model, z0, goal, None,
                     CEMSettings(horizon=3, energy_steps="all").objective())
    per_step = model.energy(model.rollout(z0.expand(16, -1, -1),
                                          candidates[0].expand(-1, -1, 4, -1)), goal)
    torch.testing.assert_close(uniform(candidates)[0], per_step.mean(dim=1))


def test_metric_l2_and_unknown_metric():
    plan, _ = get_planner("cem")
    model, z0, goal, _ = problem()
    result = plan(model, z0, goal, generator=generators([0]), metric="l2", iterations=10)
    reached = model.rollout(z0, result.actions)[:, -1]
    torch.testing.assert_close(model.energy(reached, goal, "l2"), result.energy)
    with pytest.raises(ValueError, match="metric"):
        plan(model, z0, goal, metric="cosine")


def test_warm_start_is_kept_when_it_is_optimal():
    """CEM always scores its mean: a perfect warm start survives any noise."""
    plan, _ = get_planner("cem")
    model, z0, goal, actions = problem(seed=2)
    result = plan(model, z0, goal, generator=generators([0]), init_mean=actions, iterations=2,
                  samples=10, elites=2, horizon=3)
    torch.testing.assert_close(result.actions, actions)
    assert result.energy.item() < 1e-6


def test_shift_plan():
    actions = torch.arange(2 * 3 * 2 * 1, dtype=torch.float32).reshape(2, 3, 2, 1)
    shifted = shift_plan(actions)
    torch.testing.assert_close(shifted[:, :2], actions[:, 1:])
    torch.testing.assert_close(shifted[:, 2], actions[:, 2])
    zeros = shift_plan(actions, blocks=2, fill="zeros")
    torch.testing.assert_close(zeros[:, 0], actions[:, 2])
    assert torch.all(zeros[:, 1:] == 0)
    assert torch.equal(shift_plan(actions, blocks=0), actions)


def test_mpc_warm_start_tracks_the_goal():
    """Receding horizon on the toy: execute a block, shift the plan, replan; the state reaches
    the goal and the shifted plan keeps its tail."""
    plan, _ = get_planner("cem")
    model, z, goal, _ = problem(seed=5)
    warm = None
    for step in range(4):
        result = plan(model, z, goal, generator=generators([step]), init_mean=warm,
                      iterations=10, energy_steps="all")
        z = model.step(z, result.actions[:, 0])
        warm = shift_plan(result.actions)
        torch.testing.assert_close(warm[:, :-1], result.actions[:, 1:])
    assert model.energy(z, goal).item() < 0.02


def test_init_mean_is_cut_padded_and_clamped():
    settings = CEMSettings(horizon=4)
    init = torch.tensor([0.5, 2.0]).view(1, 1, 1, 2).expand(1, 2, 3, 2)
    mean = initial_mean(init, 1, (4, 1, 2), settings, torch.device("cpu"))
    assert mean.shape == (1, 4, 1, 2)
    torch.testing.assert_close(mean[0, :, 0], torch.tensor([[0.5, 1.0]] * 4))


def test_proprio_is_passed_to_every_sequence():
    model = LinearModel(proprio_dim=3)
    _, z0, goal, _ = problem(num_envs=2)
    plan, _ = get_planner("mppi")
    result = plan(model, z0, goal, proprio=torch.zeros(2, 3), generator=generators([0, 1]),
                  iterations=2, samples=16, elites=4)
    assert result.actions.shape == (2, 3, 4, 2)


def test_one_rollout_call_per_iteration():
    model, z0, goal, _ = problem(num_envs=3)
    plan, _ = get_planner("cem")
    model.calls = 0
    result = plan(model, z0, goal, generator=generators([0, 1, 2]), iterations=7, samples=32,
                  elites=4)
    assert model.calls == 7
    assert result.info["evaluations"] == 7 * 3 * 32
    assert result.info["history"].shape == (7, 3)
    assert torch.all(result.info["history"][1:] <= result.info["history"][:-1])


def test_mppi_outputs():
    model, z0, goal, _ = problem(num_envs=2)
    plan, _ = get_planner("mppi")
    for output in ("mean", "best", "sample"):
        result = plan(model, z0, goal, generator=generators([0, 1]), iterations=3, output=output)
        reached = model.rollout(z0, result.actions)[:, -1]
        torch.testing.assert_close(model.energy(reached, goal), result.energy)


def test_gradient_clamp_squash():
    model, z0, goal, _ = problem()
    plan, _ = get_planner("gradient")
    result = plan(model, z0, goal, generator=generators([0]), squash="clamp", steps=100, lr=0.05)
    assert result.energy.item() < 0.05


def test_bad_settings():
    model, z0, goal, _ = problem()
    with pytest.raises(UnknownPlannerError, match="known: cem, gradient, mppi"):
        get_planner("random-shooting")
    plan, _ = get_planner("cem")
    with pytest.raises(ValueError, match="elites"):
        plan(model, z0, goal, samples=4, elites=8)
    with pytest.raises(ValueError, match="unknown CEMSettings keys"):
        plan(model, z0, goal, temperature=1.0)
    with pytest.raises(ValueError, match="step_weights"):
        plan(model, z0, goal, energy_steps="all", step_weights=(1.0,))
    with pytest.raises(ValueError, match="one generator per environment"):
        plan(model, z0, goal, generator=generators([0, 1]))


class BiasedModel(LinearModel):
    """A wrong model of the toy: it believes every block also drifts the latent by a constant
    and that actions act 30% more strongly than they do."""

    def __init__(self, truth: LinearModel, drift: float = 0.1) -> None:
        super().__init__(frameskip=truth.frameskip)
        self.A, self.B = truth.A, 1.3 * truth.B
        self.drift = drift

    def step(self, z: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
        return super().step(z, block) + self.drift


def closed_loop(correct: bool, gain: float = 1.0, steps: int = 12) -> float:
    """Receding horizon with a biased model on the true toy; the final true energy."""
    from planners.correction import OffsetCorrection

    plan, _ = get_planner("cem")
    truth, z, goal, _ = problem(seed=3)
    model = BiasedModel(truth)
    correction = OffsetCorrection(gain) if correct else None
    warm = None
    for step in range(steps):
        target = goal if correction is None else correction.goal(goal, z)
        result = plan(model, z, target, generator=generators([step]), init_mean=warm,
                      iterations=10, energy_steps="all", std_min=0.01)
        if correction is not None:
            correction.expect(model, z, result.actions[:, :1])
        z = truth.step(z, result.actions[:, 0])
        warm = shift_plan(result.actions)
    return truth.energy(z, goal).item()


def test_offset_correction_removes_a_biased_models_steady_error():
    uncorrected = closed_loop(correct=False)
    corrected = closed_loop(correct=True)
    assert uncorrected > 0.03  # the bias parks the toy away from the goal
    assert corrected < 0.25 * uncorrected


def test_offset_correction_goal_and_validation():
    from planners.correction import OffsetCorrection

    model = LinearModel()
    correction = OffsetCorrection(gain=0.5)
    z, goal = torch.zeros(1, 2, 3), torch.ones(1, 2, 3)
    assert torch.equal(correction.goal(goal, z), goal)  # nothing predicted yet
    expected = correction.expect(model, z, torch.ones(1, 1, model.frameskip, 2))
    z_seen = expected + 0.2
    torch.testing.assert_close(correction.goal(goal, z_seen), goal - 0.1)
    correction.reset()
    assert correction.expected is None
    with pytest.raises(ValueError, match="gain"):
        OffsetCorrection(gain=1.5)


@pytest.mark.parametrize(("name", "overrides", "needle"), [
    ("cem", {"samples": 2.5}, "samples must be an integer, got 2.5"),
    ("cem", {"std_init": float("nan")}, "std_init must be finite"),
    ("cem", {"step_weights": (1.0, float("nan"), 1.0)}, "step_weights must be finite"),
    ("mppi", {"temperature": float("inf")}, "temperature must be finite"),
    ("gradient", {"lr": float("nan")}, "lr must be finite"),
])
def test_non_finite_or_fractional_settings_are_refused(name, overrides, needle):
    from planners import get_planner
    from planners.base import make_settings

    _, settings_cls = get_planner(name)
    with pytest.raises(ValueError, match=needle):
        make_settings(settings_cls, None, overrides)
    assert make_settings(settings_cls, None, {"horizon": 3.0}).horizon == 3


def test_energy_objective_validates_and_weights_blocks():
    from planners.energy import Energy, latent_distance

    with pytest.raises(ValueError, match="metric"):
        Energy(metric="cosine")
    with pytest.raises(ValueError, match="energy_steps"):
        Energy(steps="first")
    for weights in ((1.0, -1.0), (0.0, 0.0), (1.0, float("nan"))):
        with pytest.raises(ValueError, match="step_weights"):
            Energy(step_weights=weights)
    predicted = torch.stack([torch.full((2, 3, 4), float(t)) for t in range(3)], dim=1)
    goal = torch.zeros(2, 3, 4)
    torch.testing.assert_close(Energy("l1", "final")(predicted, goal), torch.full((2,), 2.0))
    torch.testing.assert_close(Energy("l2", "all")(predicted, goal), torch.full((2,), 5 / 3))
    weighted = Energy("l1", "all", (0.0, 1.0, 3.0))(predicted, goal)
    torch.testing.assert_close(weighted, torch.full((2,), (1.0 + 6.0) / 4))
    with pytest.raises(ValueError, match="3 predicted blocks"):
        Energy(step_weights=(1.0, 1.0))(predicted, goal)
    torch.testing.assert_close(latent_distance(predicted[:, 2], goal, "l2"), torch.full((2,), 4.0))


def test_scorer_uses_the_world_models_own_distance():
    """A model that defines ``distance`` (the simulator oracle does) is scored with it."""
    from planners.energy import Energy

    class OwnDistance(LinearModel):
        def distance(self, z, goal, metric):
            return (z - goal)[..., 0, 0].abs()  # the first channel of the first token only

    model = OwnDistance(frameskip=4)
    model_plain = LinearModel(frameskip=4)
    _, z0, goal, _ = problem()
    candidates = torch.rand(1, 8, 3, 1, 2) * 2 - 1
    settings = CEMSettings(horizon=3, energy_steps="final")
    assert settings.objective(model).distance == model.distance
    own = Scorer(model, z0, goal, None, settings.objective(model))(candidates)
    plain = Scorer(model_plain, z0, goal, None, settings.objective(model_plain))(candidates)
    last = model.rollout(z0.expand(8, -1, -1), candidates[0].expand(-1, -1, 4, -1))[:, -1]
    torch.testing.assert_close(own[0], (last - goal)[:, 0, 0].abs())
    assert not torch.allclose(own, plain)
    with pytest.raises(TypeError, match="Energy"):
        Scorer(model, z0, goal, None, settings)
    assert isinstance(settings.objective(), Energy)


def test_sampling_skeleton_takes_any_refit():
    """Random shooting is the skeleton with a refit that changes nothing: it still keeps the
    best sequence seen, so its best energy never rises over the iterations."""
    from planners.sampling import SamplingSettings, search

    model, z0, goal, _ = problem(num_envs=2)
    settings = SamplingSettings(horizon=3, samples=32, elites=4, iterations=5)
    settings.validate()
    calls = []

    def unchanged(elites, elite_energy, mean, std):
        calls.append((tuple(elites.shape), tuple(elite_energy.shape)))
        return mean, std

    found = search(model, z0, goal, None, None, generators([0, 1]), settings, unchanged)
    assert calls == [((2, 4, 3, 1, 2), (2, 4))] * 5
    history = torch.stack(found.history)
    assert (history[1:] <= history[:-1]).all()
    result = found.result("shooting", found.best.params, found.best.energy, model.frameskip)
    assert result.actions.shape == (2, 3, 4, 2)
    assert result.info["evaluations"] == 2 * 32 * 5
    with pytest.raises(ValueError, match="sampling.elites"):
        SamplingSettings(samples=4, elites=8).validate()


def test_proposals_are_scored_in_the_first_iteration():
    """A proposal that reaches the goal is kept even by a search too small to find it; bad
    proposal shapes or counts are refused."""
    from planners.sampling import SamplingSettings, search

    model, z0, goal, known = problem(num_envs=2, seed=5)
    settings = SamplingSettings(horizon=3, samples=4, elites=2, iterations=1, energy_steps="final")

    def keep(elites, elite_energy, mean, std):
        return mean, std

    blind = search(model, z0, goal, None, None, generators([0, 1]), settings, keep)
    helped = search(model, z0, goal, None, None, generators([0, 1]), settings, keep,
                    proposals=known.unsqueeze(1))
    exact = settings.objective(model)(model.rollout(z0, known), goal)
    torch.testing.assert_close(helped.best.energy, exact)
    assert (helped.best.energy < blind.best.energy).all()
    with pytest.raises(ValueError, match="more samples"):
        search(model, z0, goal, None, None, generators([0, 1]), settings, keep,
               proposals=known.unsqueeze(1).expand(-1, 4, -1, -1, -1))
    with pytest.raises(ValueError, match="proposals must be"):
        search(model, z0, goal, None, None, generators([0, 1]), settings, keep, proposals=known)
    with pytest.raises(ValueError, match="takes no proposals"):
        PlannerPolicy(model, "gradient", proposal=lambda z, g, p: known)


def test_scoring_in_chunks_gives_the_same_energies():
    model, z0, goal, _ = problem(num_envs=2)
    objective = CEMSettings(horizon=3, energy_steps="all").objective()
    candidates = torch.rand(2, 10, 3, 1, 2) * 2 - 1
    whole = Scorer(model, z0, goal, None, objective, chunk=None)
    model.calls = 0
    pieces = Scorer(model, z0, goal, None, objective, chunk=6)  # 3 sequences per env per call
    torch.testing.assert_close(pieces(candidates), whole(candidates))
    assert model.calls == 4 + 1 and pieces.evaluations == 20
    assert Scorer(model, z0, goal, None, objective).chunk == 256  # "auto" on the CPU


def test_explore_keeps_a_wide_fraction_of_the_samples():
    """A search started narrow finds a far better sequence only through its wide fraction."""
    from planners.sampling import SamplingSettings, search

    model, z0, goal, _ = problem(num_envs=2, seed=7)

    def keep(elites, elite_energy, mean, std):
        return mean, std

    def best(explore: float):
        settings = SamplingSettings(horizon=3, samples=64, elites=4, iterations=1,
                                    std_init=0.01, explore=explore, energy_steps="final")
        settings.validate()
        return search(model, z0, goal, None, None, generators([0, 1]), settings, keep).best.energy

    assert (best(0.5) < 0.8 * best(0.0)).all()
    with pytest.raises(ValueError, match="explore"):
        SamplingSettings(explore=1.0).validate()


@pytest.mark.parametrize("name", ["cem", "mppi"])
def test_min_improvement_stops_each_environment_on_its_own(name):
    """An environment whose warm start is already optimal stops after two iterations while a
    far one searches on; each gets the plan it would get alone, and a batch whose
    environments have all stopped ends early."""
    plan, _ = get_planner(name)
    model, z0, goal, actions = problem(num_envs=2, seed=5)
    warm = actions.clone()
    warm[1] = 0.0  # environment 0 starts on its optimum, environment 1 does not
    settings = {**SMALL[name], "iterations": 8, "min_improvement": 0.01}
    batched = plan(model, z0, goal, generator=generators([3, 4]), init_mean=warm, horizon=3,
                   **settings)
    ran = batched.info["iterations_per_env"].tolist()
    assert ran[0] == 2 and ran[1] > 2, ran
    for e, seed in enumerate([3, 4]):
        single = plan(model, z0[e : e + 1], goal[e : e + 1], generator=generators([seed]),
                      init_mean=warm[e : e + 1], horizon=3, **settings)
        torch.testing.assert_close(batched.actions[e : e + 1], single.actions, rtol=0, atol=1e-6)
        assert single.info["iterations_per_env"].item() == ran[e]
    settled = plan(model, z0[:1], goal[:1], generator=generators([3]), init_mean=warm[:1],
                   horizon=3, **settings)
    assert settled.info["iterations"] == 2
    full = plan(model, z0, goal, generator=generators([3, 4]), init_mean=warm, horizon=3,
                **{**settings, "min_improvement": 0.0})
    assert full.info["iterations"] == 8
    with pytest.raises(ValueError, match="min_improvement"):
        plan(model, z0, goal, horizon=3, **{**settings, "min_improvement": 1.5})


class ThreadRecordingModel(LinearModel):
    """Opts into parallel scoring and records which threads ran its rollouts, with which
    intra-op thread count and grad mode."""

    parallel_scoring = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, int, bool]] = []

    def rollout(self, z, actions, proprio=None):
        import threading

        self.seen.append((threading.get_ident(), torch.get_num_threads(),
                          torch.is_grad_enabled()))
        return super().rollout(z, actions, proprio)


def test_parallel_scoring_splits_chunks_over_single_threaded_workers():
    import threading

    model, z0, goal, _ = problem(num_envs=2, seed=1)
    model = ThreadRecordingModel()
    objective = CEMSettings(horizon=3, energy_steps="all").objective()
    candidates = torch.rand(2, 40, 3, 1, 2) * 2 - 1
    serial = Scorer(model, z0, goal, None, objective, chunk=20, workers=1)(candidates)
    assert {seen[0] for seen in model.seen} == {threading.get_ident()}
    before = torch.get_num_threads()
    model.seen.clear()
    with torch.no_grad():
        parallel = Scorer(model, z0, goal, None, objective, chunk=20, workers=3)(candidates)
    torch.testing.assert_close(parallel, serial)
    assert len({seen[0] for seen in model.seen}) >= 2 and len(model.seen) == 4  # 4 chunks
    assert all(threads == 1 and not grad for _, threads, grad in model.seen)
    assert torch.get_num_threads() == before  # the process's setting comes back
    # gradients stay in the calling thread; a model that does not opt in is never split
    model.seen.clear()
    params = candidates.clone().requires_grad_(True)
    Scorer(model, z0, goal, None, objective, chunk=20, workers=3)(params).sum().backward()
    assert {seen[0] for seen in model.seen} == {threading.get_ident()}
    # residuals (the Gauss-Newton polish's pass) are split the same way, in the same order
    objective = CEMSettings(horizon=3, metric="l2", energy_steps="all").objective()
    serial = Scorer(model, z0, goal, None, objective, workers=1)(candidates)
    model.seen.clear()
    serial_energy, serial_residual = Scorer(model, z0, goal, None, objective, chunk=20,
                                            workers=1).residuals(candidates)
    model.seen.clear()
    energy, residual = Scorer(model, z0, goal, None, objective, chunk=20,
                              workers=3).residuals(candidates)
    assert len({seen[0] for seen in model.seen}) >= 2 and len(model.seen) == 4
    torch.testing.assert_close(energy, serial_energy)
    torch.testing.assert_close(residual, serial_residual)
    torch.testing.assert_close(energy, serial)
    # a batch too small to share (fewer than MIN_SEQUENCES_PER_WORKER sequences per thread)
    # runs in the calling thread, with one intra-op thread
    model.seen.clear()
    few = Scorer(model, z0, goal, None, objective, workers=3)
    few(candidates[:, :3])
    few.residuals(candidates[:, :3])
    assert [seen[:2] for seen in model.seen] == [(threading.get_ident(), 1)] * 2
    assert torch.get_num_threads() == before
    plain = LinearModel()
    assert Scorer(plain, z0, goal, None, objective, workers=3).workers == 1
    with pytest.raises(ValueError, match="workers"):
        CEMSettings(workers=-1).validate()


def test_a_policy_tail_extends_every_scored_sequence():
    """With a tail the energy covers the planned blocks and the blocks a goal-conditioned
    policy acts after them (each sequence with its own environment's goal); the planners and
    PlannerPolicy pass it on, and settings it cannot serve are refused."""
    from planners import cem
    from planners.energy import Energy
    from planners.tail import PolicyTail
    from tests.test_rl import tiny_model

    model = tiny_model()
    gen = torch.Generator().manual_seed(3)
    z0 = torch.randn(2, *model.latent_shape, generator=gen)
    goal = torch.randn(2, *model.latent_shape, generator=gen)
    proprio = torch.randn(2, 6, generator=gen)

    def toward(latent, p, goal_rows):  # reads the goal: a misaligned goal changes the actions
        push = torch.tanh((goal_rows - latent).mean(dim=1)[:, :2])
        return push[:, None].expand(-1, model.frameskip, -1)

    tail = PolicyTail(toward, 2)
    objective = Energy("l2", "all")
    candidates = torch.rand(2, 5, 2, 1, 2, generator=gen) * 2 - 1
    scored = Scorer(model, z0, goal, proprio, objective, tail=tail)(candidates)
    blocks = candidates.expand(-1, -1, -1, model.frameskip, -1)
    goals = goal.repeat_interleave(5, 0)
    with torch.no_grad():
        extended = model.rollout_many(z0, blocks, proprio,
                                      then=lambda z, p: toward(z, p, goals), then_blocks=2)
    assert extended.shape[2] == 4
    torch.testing.assert_close(scored, objective(extended.flatten(0, 1), goals).reshape(2, 5))
    plain = Scorer(model, z0, goal, proprio, objective)(candidates)
    assert not torch.allclose(scored, plain)

    result = cem.plan(model, z0, goal, proprio=proprio, generator=generators([0, 1]),
                      samples=16, elites=4, iterations=2, horizon=2, energy_steps="all", tail=tail)
    assert result.actions.shape == (2, 2, model.frameskip, 2)
    policy = PlannerPolicy(model, "cem", tail=tail, **FAST_TAIL_CEM)
    assert policy.tail is tail
    with pytest.raises(ValueError, match="takes no policy tail"):
        PlannerPolicy(model, "gradient", tail=tail)
    with pytest.raises(ValueError, match="step_weights=null"):
        PlannerPolicy(model, "cem", tail=tail, step_weights=[1.0, 2.0], **FAST_TAIL_CEM)
    with pytest.raises(ValueError, match="blocks >= 1"):
        PolicyTail(toward, 0)


FAST_TAIL_CEM = {"samples": 16, "elites": 4, "iterations": 2, "horizon": 2, "energy_steps": "all"}


@pytest.mark.parametrize(("name", "method", "steps"), [("cem", "adam", 30), ("mppi", "adam", 30),
                                                      ("cem", "gauss_newton", 3),
                                                      ("mppi", "gauss_newton", 3)])
def test_polish_walks_the_last_of_the_way_and_never_raises_the_energy(name, method, steps):
    plan, _ = get_planner(name)
    model, z0, goal, _ = problem(num_envs=3, seed=5)
    coarse = {"samples": 16, "elites": 4, "iterations": 2, "metric": "l2",
              "energy_steps": "final", **({"output": "best"} if name == "mppi" else {})}
    seeds = [1, 2, 3]
    base = plan(model, z0, goal, generator=generators(seeds), horizon=3, **coarse)
    polish = {**coarse, "polish_steps": steps, "polish_lr": 0.05, "polish_method": method}
    polished = plan(model, z0, goal, generator=generators(seeds), horizon=3, **polish)
    assert torch.all(polished.energy <= base.energy)
    assert torch.all(polished.energy < 0.2 * base.energy), (base.energy, polished.energy)
    reached = model.rollout(z0, polished.actions)[:, -1]
    torch.testing.assert_close(model.energy(reached, goal, "l2"), polished.energy)
    assert polished.actions.abs().max() <= 1.0
    for e, seed in enumerate(seeds):  # each environment gets its own gradient
        single = plan(model, z0[e : e + 1], goal[e : e + 1], generator=generators([seed]),
                      horizon=3, **polish)
        torch.testing.assert_close(polished.actions[e : e + 1], single.actions, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="polish_steps must be >= 0"):
        plan(model, z0, goal, horizon=3, **{**polish, "polish_steps": -1})
    with pytest.raises(ValueError, match="polish_lr positive"):
        plan(model, z0, goal, horizon=3, **{**polish, "polish_lr": 0.0})
    with pytest.raises(ValueError, match="polish_method must be one of adam, gauss_newton"):
        plan(model, z0, goal, horizon=3, **{**polish, "polish_method": "newton"})
    if method == "gauss_newton":
        with pytest.raises(ValueError, match="gauss_newton needs energy=l2"):
            plan(model, z0, goal, horizon=3, **{**polish, "metric": "l1"})


def test_gauss_newton_lands_on_a_linear_model_s_optimum_in_the_box():
    """On a linear world model the l2 energy is an exact quadratic: one Gauss-Newton step of
    the weakest damping lands next to the least-squares optimum, which the Adam polish only
    approaches; the clamp keeps every action in the box."""
    model, z0, goal, _ = problem(num_envs=2, seed=7)
    coarse = {"samples": 16, "elites": 4, "iterations": 2, "metric": "l2",
              "energy_steps": "all", "horizon": 3}
    plan, _ = get_planner("cem")
    base = plan(model, z0, goal, generator=generators([4, 5]), **coarse)
    newton = plan(model, z0, goal, generator=generators([4, 5]), polish_steps=2,
                      polish_method="gauss_newton", **coarse)
    adam = plan(model, z0, goal, generator=generators([4, 5]), polish_steps=2, polish_lr=0.05,
                **coarse)
    assert torch.all(newton.energy < 0.05 * base.energy), (base.energy, newton.energy)
    assert torch.all(newton.energy < adam.energy), (adam.energy, newton.energy)
    assert newton.actions.abs().max() <= 1.0


@pytest.mark.parametrize(("steps", "weights"), [("final", None), ("all", None),
                                                ("all", (1.0, 0.0, 3.0))])
def test_energy_residuals_square_and_sum_to_the_energy(steps, weights):
    generator = torch.Generator().manual_seed(0)
    predicted = torch.randn(4, 3, 2, 5, generator=generator)
    goal = torch.randn(4, 2, 5, generator=generator)
    objective = Energy("l2", steps, weights)
    residual = objective.residuals(predicted, goal)
    torch.testing.assert_close(residual.pow(2).sum(-1), objective(predicted, goal))
    with pytest.raises(ValueError, match="needs the l2 energy on latents"):
        Energy("l1", steps, weights).residuals(predicted, goal)


def test_gradient_passes_run_with_one_intra_op_thread_and_restore_the_count(monkeypatch):
    """The polish's and the gradient planner's small gradient passes run single-threaded on
    a CPU; torch's thread count comes back afterwards, after an error too."""
    from planners.base import Scorer
    from planners.threads import one_intra_op_thread

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _check_one_intra_op_thread(monkeypatch, Scorer, one_intra_op_thread)
    finally:
        torch.set_num_threads(before)


def _check_one_intra_op_thread(monkeypatch, Scorer, one_intra_op_thread):
    seen = []
    original = Scorer.__call__

    def watching(self, params):
        seen.append((params.requires_grad, torch.get_num_threads()))
        return original(self, params)

    monkeypatch.setattr(Scorer, "__call__", watching)
    model, z0, goal, _ = problem(num_envs=1, seed=5)
    for name, settings in [("cem", {"samples": 8, "elites": 2, "iterations": 1,
                                    "polish_steps": 2}), ("gradient", {"steps": 2})]:
        seen.clear()
        plan, _ = get_planner(name)
        plan(model, z0, goal, generator=generators([1]), horizon=2, **settings)
        assert {threads for grad, threads in seen if grad} == {1}, seen
        assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError, match="inside"), one_intra_op_thread(torch.device("cpu")):
        assert torch.get_num_threads() == 1
        raise RuntimeError("inside")
    assert torch.get_num_threads() == 2
    with one_intra_op_thread(torch.device("meta")):  # other devices: left alone
        assert torch.get_num_threads() == 2
