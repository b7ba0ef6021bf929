"""The world model inside RL code: latent observations, an image-goal reward, an imagined
environment and the planner as a stable-baselines3-style policy.

    from jepa_world import WorldModel
    from jepa_world.rl import GoalEnergyReward, LatentObservation, PlannerPolicy
    import envs

    wm = WorldModel.load("reach")
    env = GoalEnergyReward(LatentObservation(envs.make_task("reach"), wm), wm)
    policy = PlannerPolicy(wm, "cem", samples=128)    # predict(obs) -> (action, None)

Nothing here imports stable-baselines3; it is only needed to train agents (``.[rl]``).
"""

from __future__ import annotations

from jepa_world.rl.blocks import BlockActions
from jepa_world.rl.evaluation import held_out_success
from jepa_world.rl.imagined import ImaginedEnv, ImaginedStarts, ImaginedVectorEnv
from jepa_world.rl.layout import LatentLayout
from jepa_world.rl.observations import (
    GoalImageObservation,
    LatentObservation,
    VectorLatentObservation,
)
from jepa_world.rl.reward import GoalEnergyReward
from planners.policies import PlannerPolicy

__all__ = [
    "BlockActions",
    "GoalEnergyReward",
    "GoalImageObservation",
    "ImaginedEnv",
    "ImaginedStarts",
    "ImaginedVectorEnv",
    "LatentLayout",
    "LatentObservation",
    "PlannerPolicy",
    "VectorLatentObservation",
    "held_out_success",
]
