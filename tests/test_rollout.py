"""Rollouts: truncated episodes are bootstrapped from their final observation, terminated ones are not;
Discrete observations are one-hot encoded; evaluation gives every member the same episodes."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import tiny_config

from evorl_cli.envs.batch import EnvBatch, observation_encoder
from evorl_cli.fitness import evaluate
from evorl_cli.population import Population
from evorl_cli.rollout import RolloutCollector, members_first


class CountEnv(gym.Env):
    """obs = [steps taken, 1]; reward 1 per step; ends after 3 steps by termination or time limit."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, terminate: bool = False):
        self.terminate = terminate
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0, 1.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t, 1.0], np.float32), 1.0, self.terminate and self.t == 3, False, {}


gym.register(id="EvorlCount-v0", entry_point=CountEnv, max_episode_steps=3)


@pytest.mark.parametrize("terminate", [False, True], ids=["truncated", "terminated"])
def test_time_limit_is_bootstrapped_but_termination_is_not(terminate):
    config = tiny_config(**{"env.id": "EvorlCount-v0", "env.num_envs": 1, "env.kwargs": {"terminate": terminate},
                            "population.size": 2})
    env = EnvBatch(config.env, 2)
    pop = Population.create(config, env.obs_dim, env.action, torch.device("cpu"), torch.Generator().manual_seed(0))
    pop.hp["gamma"] = np.array([0.9, 0.5])
    collector = RolloutCollector(env, 2, 1, steps=4, device=torch.device("cpu"))
    collector.reset(seed=0)
    ro = collector.collect(pop, torch.Generator().manual_seed(0))

    final_value = pop.value_normalized(torch.tensor([[[3.0, 1.0]], [[3.0, 1.0]]]))[:, 0]
    expected = torch.zeros(2) if terminate else torch.tensor([0.9, 0.5]) * final_value
    assert torch.allclose(ro.bootstrap[2, :, 0], expected, atol=1e-6)
    assert torch.equal(ro.bootstrap[[0, 1, 3]], torch.zeros(3, 2, 1))
    assert torch.equal(ro.rewards[:, :, 0], torch.ones(4, 2))  # raw rewards
    assert torch.equal(ro.dones[:, 0, 0], torch.tensor([0.0, 0.0, 1.0, 0.0]))
    # After the autoreset the next observation is the first of a new episode.
    assert torch.equal(ro.obs[3, 0, 0], torch.tensor([0.0, 1.0]))  # normalisation is off: obs is raw
    assert collector.episodes.count.tolist() == [1, 1]
    assert collector.episodes.mean_returns().tolist() == [3.0, 3.0]


def test_discrete_observations_are_one_hot():
    space = gym.spaces.Discrete(4, start=1)
    encoder = observation_encoder(space)
    assert encoder.dim == 4 and encoder.image is None
    assert np.array_equal(encoder(np.array([1, 4])), np.array([[1, 0, 0, 0], [0, 0, 0, 1]], np.float32))
    config = tiny_config(**{"env.id": "FrozenLake-v1", "env.kwargs": {"is_slippery": False}})
    env = EnvBatch(config.env, 3)
    obs = env.reset(seed=0)
    assert obs.shape == (3, 16) and (obs.sum(1) == 1).all() and (obs[:, 0] == 1).all()


def test_images_move_channels_first_and_scale():
    space = gym.spaces.Box(0, 255, (4, 5, 3), np.uint8)  # H, W, C
    encoder = observation_encoder(space, channels_last=True)
    assert encoder.image == (3, 4, 5) and encoder.dim == 60
    frames = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    out = encoder(frames).reshape(2, 3, 4, 5)
    assert np.allclose(out, frames.transpose(0, 3, 1, 2) / 255.0)


def test_unsupported_spaces_get_a_clear_error():
    from evorl_cli.errors import EvorlError

    with pytest.raises(EvorlError, match="not supported"):
        observation_encoder(gym.spaces.Dict({"a": gym.spaces.Discrete(2)}))


def test_masked_observation_indices_read_zero():
    config = tiny_config(**{"env.id": "CartPole-v1", "env.mask_indices": [1, 3]})
    obs = EnvBatch(config.env, 4).reset(seed=0)
    assert (obs[:, [1, 3]] == 0).all() and (obs[:, [0, 2]] != 0).any()


def test_evaluation_gives_members_the_same_episodes():
    config = tiny_config(**{"population.size": 3})
    env = EnvBatch(config.env, 3 * 4)
    pop = Population.create(config, env.obs_dim, env.action, torch.device("cpu"), torch.Generator().manual_seed(0))
    pop.gather(np.array([0, 0, 0]))  # three identical members
    result = evaluate(pop, env, 4, seed=11, gen=torch.Generator().manual_seed(0), deterministic=True)
    assert result.returns.shape == (3, 4)
    assert (result.returns == result.returns[0]).all()  # same policy, same starts -> same returns


def test_reward_scaling_tracks_discounted_returns():
    from evorl_cli.normalize import RewardScaler

    scaler = RewardScaler(2, torch.device("cpu"), enabled=True)
    a, b = torch.randn(2, 50) * 3, torch.randn(2, 70) + 5
    scaler.update(a)
    scaler.update(b)
    both = torch.cat([a, b], dim=1)
    assert torch.allclose(scaler.var, both.var(1, unbiased=False), rtol=1e-5)
    assert torch.allclose(scaler.scale(), both.var(1, unbiased=False).rsqrt(), rtol=1e-4)
    assert torch.equal(RewardScaler(2, torch.device("cpu"), enabled=False).scale(), torch.ones(2))


def test_collector_records_discounted_returns_for_scaling():
    config = tiny_config(**{"env.id": "EvorlCount-v0", "env.num_envs": 1, "population.size": 1,
                            "evolution.tournament_size": 1, "algo.normalize_rewards": True, "algo.gamma": 0.5})
    env = EnvBatch(config.env, 1)
    pop = Population.create(config, env.obs_dim, env.action, torch.device("cpu"), torch.Generator().manual_seed(0))
    collector = RolloutCollector(env, 1, 1, steps=5, device=torch.device("cpu"))
    collector.reset(seed=0)
    ro = collector.collect(pop, torch.Generator().manual_seed(0))
    # reward 1 per step, episodes of 3 steps: 1, 1.5, 1.75, then a new episode 1, 1.5
    assert torch.allclose(ro.returns_seen[:, 0, 0], torch.tensor([1.0, 1.5, 1.75, 1.0, 1.5]))


@pytest.mark.parametrize("env_id", ["Acrobot-v1", "Pendulum-v1"], ids=["discrete", "continuous"])
@pytest.mark.parametrize("recurrent", [None, "lstm"], ids=["mlp", "lstm"])
def test_stored_log_probs_and_values_are_the_policys(env_id, recurrent):
    """What a rollout stores (drawn from noise drawn up front, log-probabilities taken after the
    loop) is what the policy gives when the stored observations are replayed: the update's first
    ratios are exactly 1."""
    from evorl_cli.nets.distributions import log_prob
    from evorl_cli.ppo import SequencePlan

    config = tiny_config(**{"env.id": env_id, "env.backend": "auto", "env.num_envs": 3, "population.size": 2,
                            "net.recurrent": recurrent, "algo.normalize_obs": True, "algo.max_seq_len": 4})
    env = EnvBatch(config.env, 6)
    pop = Population.create(config, env.obs_dim, env.action, torch.device("cpu"), torch.Generator().manual_seed(0))
    collector = RolloutCollector(env, 2, 3, steps=8, device=torch.device("cpu"))
    collector.reset(seed=0)
    ro = collector.collect(pop, torch.Generator().manual_seed(1))
    with torch.no_grad():
        if recurrent is None:
            head, value, _ = pop.net.forward(pop.views, members_first(ro.obs), pop.masks)  # autograd-path weights
            head, value = head.view(2, 8, 3, -1).transpose(0, 1), value.view(2, 8, 3).transpose(0, 1)
        else:  # replayed as one sequence per env from the rollout's first state
            plan = SequencePlan.build(8, 3, config.algo.__class__(bptt="whole"), True, torch.device("cpu"))
            head, value = pop.forward_sequence(plan.units(ro.obs), ro.states[0], plan.units(ro.starts))
            head, value = head.permute(2, 0, 1, 3), value.permute(2, 0, 1)  # [P, N, T, ...] -> [T, P, N, ...]
    torch.testing.assert_close(ro.values, value, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ro.logp, log_prob(head, pop.log_std(), ro.actions), atol=1e-5, rtol=1e-5)
    if env.action.discrete:  # every action is one the env could take, and not always the same one
        assert ro.actions.min() >= 0 and ro.actions.max() < env.action.n and ro.actions.unique().numel() > 1
