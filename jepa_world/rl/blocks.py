"""Act in action blocks in the real task, as the world model and ImaginedEnv do."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class BlockActions(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """One action held for ``frameskip`` env steps per ``step`` call (fewer if the episode ends
    inside the block): an agent trained in ``ImaginedEnv(repeat_action=True)`` acts in the real
    task through this. The reward is the block's last one (the imagined env rewards the latent
    at the end of the block); ``info["success_any"]`` says whether the task reported success at
    any step of the block."""

    def __init__(self, env: gym.Env, frameskip: int) -> None:
        if int(frameskip) < 1:
            raise ValueError(f"frameskip must be a positive integer, got {frameskip}")
        gym.utils.RecordConstructorArgs.__init__(self, frameskip=frameskip)
        gym.Wrapper.__init__(self, env)
        self.frameskip = int(frameskip)

    def step(self, action: Any):
        hit = False
        for _ in range(self.frameskip):
            obs, reward, terminated, truncated, info = self.env.step(np.asarray(action))
            hit = hit or bool(info.get("is_success", False))
            if terminated or truncated:
                break
        return obs, reward, terminated, truncated, {**info, "success_any": hit}
