"""An env that breaks on purpose, registered on import as Faulty-v0 (`env.id=faulty_env:Faulty-v0`
from a command line with tests/ on the path). Episodes last 20 steps; each instance counts its own
steps (and resets) and misbehaves from the `fail_at`-th on, as `mode` says: raise in step, raise
in reset, or return a NaN observation or reward."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

MODES = ("raise", "raise_reset", "nan_obs", "nan_reward")


class FaultyEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, mode: str = "raise", fail_at: int = 40) -> None:
        assert mode in MODES, mode
        self.mode, self.fail_at = mode, fail_at
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.steps = self.resets = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.resets += 1
        if self.mode == "raise_reset" and self.resets >= self.fail_at:
            raise RuntimeError(f"simulated failure in reset number {self.resets}")
        return self.np_random.uniform(-1, 1, 4).astype(np.float32), {}

    def step(self, action):
        self.steps += 1
        obs = self.np_random.uniform(-1, 1, 4).astype(np.float32)
        reward = float(action)
        if self.steps >= self.fail_at:
            if self.mode == "raise":
                raise ValueError(f"simulated failure at step {self.steps}")
            if self.mode == "nan_obs":
                obs[2] = np.nan
            if self.mode == "nan_reward":
                reward = float("nan")
        return obs, reward, False, False, {}


if "Faulty-v0" not in gym.registry:
    gym.register(id="Faulty-v0", entry_point=FaultyEnv, max_episode_steps=20)
