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


class RampEnv(gym.Env):
    """Episodes of 4 steps (time limit); the reward of the k-th step this instance ever took is k,
    so every episode's return is known by hand: steps 1-4 return 10, steps 5-8 return 26, ..."""

    metadata = {"render_modes": []}
    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.k = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.k += 1
        return np.array([self.k], np.float32), float(self.k), False, self.k % 4 == 0, {}


if "evorl-test/Ramp-v0" not in gym.registry:
    gym.register(id="evorl-test/Ramp-v0", entry_point=RampEnv)


def test_an_episode_handed_over_mid_way_is_credited_to_no_one():
    import torch

    from evorl_cli.envs.batch import EnvBatch
    from evorl_cli.population import Population
    from evorl_cli.rollout import RolloutCollector

    # 2 slots x 1 env, rollouts of 3 steps; episodes are steps 1-4 (return 1+2+3+4 = 10) and 5-8
    # (5+6+7+8 = 26). The hand-over falls after step 3, in the middle of the first episode: slot 0
    # keeps its network (the elite in its own slot), slot 1 gets another one.
    config = tiny_config(**{"env.id": "evorl-test/Ramp-v0", "env.name": "ramp", "env.num_envs": 1})
    env = EnvBatch(config.env, 2)
    pop = Population.create(config, env.obs_dim, env.action, torch.device("cpu"), torch.Generator().manual_seed(0))
    collector = RolloutCollector(env, 2, 1, steps=3, device=torch.device("cpu"))
    collector.reset(0)
    gen = torch.Generator().manual_seed(0)
    collector.collect(pop, gen)  # steps 1-3: no episode ends
    collector.hand_over([True, False])
    collector.episodes.clear()  # a new generation starts
    collector.collect(pop, gen)  # steps 4-6: the first episode ends at step 4
    collector.collect(pop, gen)  # steps 7-9: the second ends at step 8
    tracker = collector.episodes
    assert tracker.count.tolist() == [2, 1]  # slot 1's first episode was inherited: not counted
    # slot 0 played both episodes with one network: (10 + 26) / 2; slot 1 only the second whole.
    np.testing.assert_allclose(tracker.mean_returns(), [18.0, 26.0])
    assert tracker.running.tolist() == [9.0, 9.0]  # the third episode runs on, credited to its slots

    # A second hand-over in the third episode drops it for slot 0 too; the episode after is whole.
    collector.hand_over([False, True])
    collector.episodes.clear()
    collector.collect(pop, gen)  # steps 10-12: the third episode (9+10+11+12 = 42) ends at 12
    collector.collect(pop, gen)  # steps 13-15
    collector.collect(pop, gen)  # steps 16-18: the fourth (13+14+15+16 = 58) ends at 16
    assert tracker.count.tolist() == [1, 2]  # slot 0's third episode was inherited: not counted
    np.testing.assert_allclose(tracker.mean_returns(), [58.0, (42.0 + 58.0) / 2])


def test_inherited_episodes_survive_a_checkpoint():
    import torch

    from evorl_cli.envs.batch import EnvBatch
    from evorl_cli.rollout import RolloutCollector

    config = tiny_config(**{"env.backend": "numpy"})
    collectors = [RolloutCollector(EnvBatch(config.env, 3 * 2), 3, 2, 4, torch.device("cpu")) for _ in range(2)]
    for c in collectors:
        c.reset(0)
    collectors[0].hand_over([True, False, True])
    meta, tensors = collectors[0].save_state()
    assert collectors[1].load_state(meta, tensors)
    assert collectors[1].episodes.whole.tolist() == [True, True, False, False, True, True]
