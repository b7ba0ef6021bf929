"""The world model inside RL code: wrappers, imagined env and planner policy, against real
MuJoCo tasks and a real RL library (stable-baselines3)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env

import envs
from jepa_world.rl import (
    BlockActions,
    GoalEnergyReward,
    GoalImageObservation,
    ImaginedEnv,
    ImaginedStarts,
    ImaginedVectorEnv,
    LatentObservation,
    PlannerPolicy,
    VectorLatentObservation,
)
from jepa_world.world_model import WorldModel, WorldModelConfig

SIZE = 32


def check_env(env: gym.Env, **kwargs) -> None:
    """Gymnasium's checker on the env as given (it warns that wrappers may hide problems of the
    raw env, which is not what is under test here, and about the unbounded latent space)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(different from the unwrapped|infinity).*")
        gym_check_env(env, **kwargs)
FAST_CEM = {"samples": 16, "elites": 4, "iterations": 2, "horizon": 2}


def tiny_model(action_dim: int = 2, proprio_dim: int = 6, env_id: str | None = None) -> WorldModel:
    torch.manual_seed(0)
    config = WorldModelConfig(
        encoder={"size": "micro", "img_size": SIZE, "patch_size": 8, "num_frames": 2, "depth": 2},
        predictor={"embed_dim": 48, "depth": 2, "num_heads": 4},
        action_dim=action_dim,
        frameskip=5,
        proprio_dim=proprio_dim,
        pool=[2, 2],
        env_id=env_id,
    )
    model = WorldModel(config)
    with torch.no_grad():  # actions must matter: the residual head starts at zero
        gen = torch.Generator().manual_seed(0)
        model.predictor.frame_head.weight.normal_(0, 0.2, generator=gen)
        if model.predictor.proprio_head is not None:
            model.predictor.proprio_head.weight.normal_(0, 0.2, generator=gen)
    return model.freeze()


@pytest.fixture(scope="module")
def wm() -> WorldModel:
    return tiny_model()


def reach(max_steps: int = 20) -> gym.Env:
    return gym.make("jepa_world/Reach-v0", image_size=SIZE, max_episode_steps=max_steps)


# ---------------------------------------------------------------------- LatentObservation
def test_latent_observation_spaces_and_dtypes(wm):
    k, d = wm.latent_shape
    for proprio, goal, size in [(True, True, 2 * k * d + 6), (False, True, 2 * k * d),
                                (True, False, k * d + 6), (False, False, k * d)]:
        env = LatentObservation(reach(), wm, proprio=proprio, goal=goal)
        obs, _ = env.reset(seed=3)
        assert env.observation_space.shape == (size,) and env.observation_space.dtype == np.float32
        assert obs.shape == (size,) and obs.dtype == np.float32
        assert env.observation_space.contains(obs)
        obs, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        env.close()


def test_latent_observation_holds_the_encodings(wm):
    env = LatentObservation(reach(), wm)
    obs, _ = env.reset(seed=5)
    raw, info = reach().reset(seed=5)
    latent = wm.encode(torch.from_numpy(raw["pixels"][None]))
    goal = wm.encode(torch.from_numpy(info["goal_pixels"][None]))
    layout = env.layout
    torch.testing.assert_close(layout.latent(obs[None]), latent)
    torch.testing.assert_close(layout.goal_latent(obs[None]), goal)
    np.testing.assert_array_equal(layout.proprio(obs[None])[0].numpy(), raw["proprio"])
    env.close()


def test_vector_wrapper_equals_the_single_env_wrapper(wm):
    seeds = [11, 12, 13]
    vector = VectorLatentObservation(
        gym.vector.SyncVectorEnv([lambda: reach(max_steps=3) for _ in seeds]), wm
    )
    singles = [LatentObservation(reach(max_steps=3), wm) for _ in seeds]
    batch, _ = vector.reset(seed=seeds)
    single = np.stack([env.reset(seed=s)[0] for env, s in zip(singles, seeds, strict=True)])
    np.testing.assert_array_equal(batch, single)  # one batched encoder pass, same values
    rng = np.random.default_rng(0)
    done = [False] * len(seeds)
    for _ in range(5):  # crosses an episode end: autoreset must re-encode the goals
        actions = rng.uniform(-1, 1, (len(seeds), 2)).astype(np.float32)
        batch, *_ = vector.step(actions)
        rows = []
        for e, env in enumerate(singles):  # Gymnasium's next-step autoreset, by hand
            if done[e]:
                obs, _ = env.reset()
                done[e] = False
            else:
                obs, _, terminated, truncated, _ = env.step(actions[e])
                done[e] = terminated or truncated
            rows.append(obs)
        np.testing.assert_array_equal(batch, np.stack(rows))
    vector.close()


def test_check_env_passes_on_the_wrapped_task(wm):
    check_env(LatentObservation(reach(), wm), skip_render_check=True)
    env = GoalEnergyReward(LatentObservation(reach(), wm), wm)
    check_env(env, skip_render_check=True)


# ---------------------------------------------------------------------- GoalEnergyReward
@pytest.mark.parametrize("metric", ["l1", "l2"])
def test_reward_is_minus_the_world_model_energy(wm, metric):
    env = GoalEnergyReward(reach(), wm, metric=metric)
    _, info = env.reset(seed=7)
    goal = wm.encode(torch.from_numpy(info["goal_pixels"][None]))
    for _ in range(3):
        obs, reward, _, _, info = env.step(env.action_space.sample())
        latent = wm.encode(torch.from_numpy(obs["pixels"][None]))
        assert reward == pytest.approx(-float(wm.energy(latent, goal, metric)[0]), abs=1e-6)
        assert "is_success" in info and "env_reward" in info
    stacked = GoalEnergyReward(LatentObservation(reach(), wm), wm, metric=metric)
    plain = GoalEnergyReward(reach(), wm, metric=metric)
    stacked.reset(seed=9)
    plain.reset(seed=9)
    action = np.array([0.5, -0.3], np.float32)
    assert stacked.step(action)[1] == pytest.approx(plain.step(action)[1], abs=1e-6)


# ---------------------------------------------------------------------- bad input
def test_bad_inputs_get_one_clear_line(wm, small_dataset):
    with pytest.raises(ValueError, match="dict holding 'pixels'"):
        LatentObservation(gym.make("CartPole-v1"), wm)
    with pytest.raises(ValueError, match="dict holding 'pixels'"):
        GoalEnergyReward(gym.make("CartPole-v1"), wm)
    with pytest.raises(ValueError, match="acts in 3 dims but the env's actions have 2"):
        LatentObservation(reach(), tiny_model(action_dim=3))
    with pytest.raises(ValueError, match="unknown energy metric"):
        GoalEnergyReward(reach(), wm, metric="cosine")
    with pytest.raises(ValueError, match="acts in 3"):
        ImaginedStarts(tiny_model(action_dim=3), small_dataset)
    with pytest.raises(ValueError, match="was trained on jepa_world/Push-v0"):
        ImaginedStarts(tiny_model(env_id="jepa_world/Push-v0"), small_dataset)
    with pytest.raises(ValueError, match="does not predict proprioception"):
        ImaginedEnv(tiny_model(proprio_dim=0), small_dataset)
    with pytest.raises(ValueError, match="does not fit this world model"):
        PlannerPolicy(wm, "cem", **FAST_CEM).predict(np.zeros(10, np.float32))


# ---------------------------------------------------------------------- ImaginedEnv
@pytest.fixture(scope="module")
def starts(wm, small_dataset) -> ImaginedStarts:
    return ImaginedStarts(wm, small_dataset)


def test_imagined_env_passes_the_checker_and_truncates(wm, starts):
    env = ImaginedEnv(wm, starts, max_blocks=3)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert 1 <= info["goal_blocks"] <= 3
    layout = env.core.layout
    goal = layout.goal_latent(obs[None])
    for block in range(3):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        energy = wm.energy(layout.latent(obs[None]), goal, "l2")
        assert reward == pytest.approx(-float(energy[0]), abs=1e-5)
        assert not terminated and truncated == (block == 2)
        torch.testing.assert_close(layout.goal_latent(obs[None]), goal)


def test_imagined_env_starts_from_recorded_latents(wm, starts):
    env = ImaginedEnv(wm, starts)
    obs, _ = env.reset(seed=4)
    latent = env.core.layout.latent(obs[None])[0]
    distances = [float((z - latent).abs().amax(dim=(-2, -1)).min()) for z in starts.latents]
    assert min(distances) < 1e-6  # the start is a recorded frame's latent


def test_imagined_vector_env_equals_single_envs(wm, starts):
    vector = ImaginedVectorEnv(wm, starts, num_envs=3, max_blocks=2)
    singles = [ImaginedEnv(wm, starts, max_blocks=2) for _ in range(3)]
    batch, _ = vector.reset(seed=20)
    single = np.stack([env.reset(seed=20 + e)[0] for e, env in enumerate(singles)])
    np.testing.assert_allclose(batch, single, atol=1e-5)
    rng = np.random.default_rng(1)
    for _ in range(2):
        actions = rng.uniform(-1, 1, (3, 2)).astype(np.float32)
        batch, rewards, _, truncated, _ = vector.step(actions)
        steps = [env.step(a) for env, a in zip(singles, actions, strict=True)]
        np.testing.assert_allclose(batch, np.stack([s[0] for s in steps]), atol=1e-5)
        np.testing.assert_allclose(rewards, [s[1] for s in steps], atol=1e-5)
        assert list(truncated) == [s[3] for s in steps]
    batch, rewards, *_ = vector.step(np.zeros((3, 2), np.float32))  # next-step autoreset
    assert (rewards == 0).all()
    single = np.stack([env.reset()[0] for env in singles])
    np.testing.assert_allclose(batch, single, atol=1e-5)


# ---------------------------------------------------------------------- PlannerPolicy
def test_planner_policy_acts_in_the_box_and_replans_per_block(wm):
    env = GoalImageObservation(reach())
    policy = PlannerPolicy(wm, "cem", **FAST_CEM)
    obs, _ = env.reset(seed=1)
    actions = []
    for step in range(7):
        action, state = policy.predict(obs, episode_start=step == 0)
        assert state is None and action.shape == (2,) and np.all(np.abs(action) <= 1)
        actions.append(action)
        obs, *_ = env.step(action)
    assert policy.stats.replans == 2  # a block of 5 steps, then a new plan
    assert np.allclose(actions[0], actions[4])  # one action held per block (repeat_in_block)


def test_planner_policy_resets_its_warm_start_on_episode_start(wm):
    env = GoalImageObservation(reach())
    obs, _ = env.reset(seed=2)
    used = PlannerPolicy(wm, "cem", **FAST_CEM)
    for step in range(7):  # two plans: the second starts from the first one's warm start
        used.predict(obs, episode_start=step == 0)
    assert used._warm[0] is not None
    fresh = PlannerPolicy(wm, "cem", **FAST_CEM)
    for policy in (used, fresh):
        policy.bind(None, None, [123])  # the same noise for the new episode
    a, _ = used.predict(obs, episode_start=True)
    b, _ = fresh.predict(obs, episode_start=True)
    np.testing.assert_array_equal(a, b)  # nothing of the old episode's plan leaked in


def test_planner_policy_gives_the_actions_planners_mpc_executes(wm, tmp_path):
    from planners.episodes import eval_seed
    from planners.mpc import evaluate

    folder = wm.save(tmp_path / "wm")
    overrides = {"checkpoint": str(folder), "image_size": SIZE, "episodes": 2, "num_envs": 2,
                 "budget": 12, "horizon": 2,
                 "cem": {"samples": 16, "elites": 4, "iterations": 2}}
    from importlib import resources

    from omegaconf import OmegaConf

    defaults = OmegaConf.load(str(resources.files("configs") / "mpc.yaml"))  # as the command
    metrics = evaluate(OmegaConf.merge(defaults, overrides), progress=False, log=lambda _: None)
    policy = PlannerPolicy(WorldModel.load(folder), "cem", budget=12, **FAST_CEM)
    for i, record in enumerate(metrics["records"]):
        env = GoalImageObservation(envs.make_task("reach", image_size=SIZE))
        obs, _ = env.reset(seed=eval_seed(0, i), options={"goal_protocol": "offset"})
        policy.bind(None, None, [eval_seed(0, i)])
        for step in range(12):
            action, _ = policy.predict(obs, episode_start=step == 0)
            obs, _, _, _, info = env.step(action)
        assert info["joint_error"] == pytest.approx(record["final_joint_error"], abs=1e-9)
        assert policy.episode_info(0)["final_energy"] == pytest.approx(record["final_energy"])


def test_planner_policy_reads_flat_latent_observations(wm):
    dict_env = GoalImageObservation(reach())
    flat_env = LatentObservation(reach(), wm)
    obs_dict, _ = dict_env.reset(seed=8)
    obs_flat, _ = flat_env.reset(seed=8)
    a, _ = PlannerPolicy(wm, "cem", **FAST_CEM).predict(obs_dict, episode_start=True)
    b, _ = PlannerPolicy(wm, "cem", **FAST_CEM).predict(obs_flat, episode_start=True)
    np.testing.assert_allclose(a, b, atol=1e-5)


# ---------------------------------------------------------------------- stable-baselines3
def test_stable_baselines3_trains_through_the_wrappers(wm, starts):
    sb3 = pytest.importorskip("stable_baselines3")
    env = GoalEnergyReward(LatentObservation(reach(max_steps=10), wm), wm)
    agent = sb3.PPO("MlpPolicy", env, n_steps=16, batch_size=8, n_epochs=1, seed=0, device="cpu")
    agent.learn(total_timesteps=32)
    obs, _ = env.reset(seed=0)
    action, _ = agent.predict(obs, deterministic=True)
    assert env.action_space.contains(action)
    imagined = sb3.SAC("MlpPolicy", ImaginedEnv(wm, starts, max_blocks=4), learning_starts=8,
                       batch_size=8, seed=0, device="cpu")
    imagined.learn(total_timesteps=16)


def test_planner_policy_runs_in_stable_baselines3_evaluation(wm):
    sb3 = pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    vec = DummyVecEnv([lambda: Monitor(GoalImageObservation(reach(max_steps=10)))
                       for _ in range(2)])
    policy = PlannerPolicy(wm, "cem", **FAST_CEM)
    rewards, lengths = evaluate_policy(policy, vec, n_eval_episodes=2, return_episode_rewards=True)
    assert lengths == [10, 10] and len(rewards) == 2
    assert sb3 is not None


def test_nothing_in_the_core_imports_stable_baselines3():
    import subprocess
    import sys

    code = ("import sys, jepa_world, jepa_world.rl, planners.mpc, envs; "
            "print('stable_baselines3' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], check=True)
    assert out.stdout.strip() == "False"


def test_block_actions_hold_one_action_for_a_block(wm):
    held = BlockActions(reach(max_steps=12), frameskip=5)
    stepwise = reach(max_steps=12)
    held.reset(seed=3)
    stepwise.reset(seed=3)
    action = np.array([0.7, -0.4], np.float32)
    obs, _, _, truncated, info = held.step(action)
    for _ in range(5):
        expected, *_ = stepwise.step(action)
    np.testing.assert_array_equal(obs["pixels"], expected["pixels"])
    assert "success_any" in info and not truncated
    held.step(action)
    *_, truncated, _ = held.step(action)  # steps 11-12 end the episode inside the block
    assert truncated
    check_env(BlockActions(LatentObservation(reach(), wm), 5), skip_render_check=True)
