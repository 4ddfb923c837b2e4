"""Training envs carry on across generations: an episode longer than a generation's rollouts is
played on, not cut short by a reset at every generation boundary."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from helpers import tiny_config
from rich.console import Console

from evorl_cli.train import train


class StepCounterEnv(gym.Env):
    """Observes its own step count; episodes last `length` steps. Every instance reports the
    highest step count it reached to `REACHED` (training and evaluation envs alike)."""

    metadata = {"render_modes": []}
    REACHED: list[int] = []

    def __init__(self, length: int = 300) -> None:
        self.length = length
        self.observation_space = gym.spaces.Box(0.0, float(length), (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        StepCounterEnv.REACHED.append(self.t)
        return np.array([self.t], np.float32), 1.0, False, self.t >= self.length, {}


if "evorl-test/StepCounter-v0" not in gym.registry:
    gym.register(id="evorl-test/StepCounter-v0", entry_point=StepCounterEnv)


def test_long_episodes_are_played_beyond_one_generation(tmp_path):
    # 2 members x 2 envs; 2 rollouts of 32 steps = 64 steps per env per generation; 512 steps in
    # all = 128 steps per env over 2 generations. Evaluation episodes stop at 50 steps.
    StepCounterEnv.REACHED.clear()
    config = tiny_config(**{"env.id": "evorl-test/StepCounter-v0", "env.name": "counter", "env.target": 1e9})
    result = train(config, tmp_path, Console(quiet=True))
    per_env = result.env_steps // (config.population.size * config.env.num_envs)
    generation = config.evolution.evo_steps
    assert result.generations >= 2 and per_env > generation
    # Reset once, when the run starts, and never at a generation boundary: every training env
    # reaches exactly its total step count (a reset per generation would stop at 64).
    assert max(StepCounterEnv.REACHED) == per_env


def test_hand_over_keeps_the_elites_recurrent_state_and_zeroes_the_others():
    import torch

    from evorl_cli.envs.batch import EnvBatch
    from evorl_cli.rollout import RolloutCollector

    config = tiny_config(**{"env.backend": "numpy"})
    collector = RolloutCollector(EnvBatch(config.env, 3 * 2), 3, 2, 4, torch.device("cpu"))
    collector.reset(0)
    before = torch.randn(3, 2, 5)
    before[2, 0, 0] = float("nan")  # a diverged member's state must not leak into its successor
    collector.state = before.clone()
    collector.hand_over([True, False, False])
    assert torch.equal(collector.state[0], before[0])
    assert torch.equal(collector.state[1:], torch.zeros(2, 2, 5))
