"""MultiDiscrete (and MultiBinary) actions: a product of independent categoricals, one per action
entry, over consecutive blocks of the policy head's logits. Oracles: torch's own Categorical per
entry, the env's own space check, a task that needs every entry, and a saved-then-loaded agent."""

from __future__ import annotations

import numpy as np
import pytest
import space_envs  # noqa: F401  registers the envs below
import torch
from rich.console import Console

import evorl_cli
from evorl_cli import checkpoint
from evorl_cli.config import EnvConfig, build_train_config
from evorl_cli.envs.batch import EnvBatch
from evorl_cli.nets.distributions import choose, draw_noise, log_prob, sample
from evorl_cli.ppo_loss import TERMS, Coefficients, Minibatch, ppo_objective
from evorl_cli.train import train

NVEC = (3, 2, 4)


def _categoricals(head: torch.Tensor) -> list[torch.distributions.Categorical]:
    return [torch.distributions.Categorical(logits=block) for block in head.split(NVEC, -1)]


def test_log_prob_and_entropy_are_sums_over_per_entry_categoricals():
    g = torch.Generator().manual_seed(0)
    head = torch.randn(2, 50, sum(NVEC), generator=g, dtype=torch.float64)
    actions = torch.stack([torch.randint(0, k, (2, 50), generator=g) for k in NVEC], dim=-1)
    dists = _categoricals(head)
    want_logp = sum(d.log_prob(actions[..., i]) for i, d in enumerate(dists))
    torch.testing.assert_close(log_prob(head, None, actions, NVEC), want_logp)
    # The entropy the PPO objective reports (and weighs) is the sum of the entries' entropies.
    batch = Minibatch(actions, want_logp.detach(), torch.zeros(2, 50, dtype=torch.float64),
                      torch.zeros(2, 50, dtype=torch.float64), None, None)
    coef = Coefficients(torch.full((2, 1), 0.2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64),
                        torch.zeros(2, dtype=torch.float64))
    _, terms = ppo_objective(head, torch.zeros(2, 50, dtype=torch.float64), None, batch, coef, NVEC)
    torch.testing.assert_close(terms[:, TERMS.index("entropy")], sum(d.entropy() for d in dists).mean(1))


def test_sampled_entries_follow_their_own_categoricals_and_the_mode_is_each_blocks_argmax():
    g = torch.Generator().manual_seed(1)
    head = torch.randn(1, 1, sum(NVEC), generator=g).expand(1, 40_000, -1).contiguous()
    action, logp = sample(head, None, g, nvec=NVEC)
    assert action.shape == (1, 40_000, len(NVEC)) and action.dtype == torch.long
    for i, dist in enumerate(_categoricals(head[:, :1])):
        freq = torch.bincount(action[0, :, i], minlength=NVEC[i]).double() / 40_000
        # 40,000 draws: the standard error of a frequency is at most 0.0025
        torch.testing.assert_close(freq, dist.probs[0, 0].double(), atol=0.012, rtol=0)
    want = sum(d.log_prob(action[..., i]) for i, d in enumerate(_categoricals(head)))
    torch.testing.assert_close(logp, want)  # the stored log-probability is the entries' joint one
    mode = choose(head[:, :1], None, None, nvec=NVEC)
    assert mode[0, 0].tolist() == [int(block.argmax()) for block in head[0, 0].split(NVEC)]
    # A rollout's `out=` buffer receives the same actions.
    noise = draw_noise(head.shape, True, torch.Generator().manual_seed(2), head.device)
    out = torch.empty(1, 40_000, len(NVEC), dtype=torch.long)
    choose(head, noise, None, out=out, nvec=NVEC)
    assert torch.equal(out, choose(head, noise, None, nvec=NVEC))


def test_actions_reach_the_env_in_its_space():
    """MultiDiscrete([3, 2, 4], start=[-1, 5, 0]) and MultiBinary(3): the env asserts that each action
    lies in its space."""
    env = EnvBatch(EnvConfig(id="MultiDiscreteAct-v0", backend="gymnasium"), 2)
    try:
        assert env.action.nvec == (3, 2, 4) and env.action.n == 9
        assert env.env_actions(np.array([[0, 0, 0], [2, 1, 3]])).tolist() == [[-1, 5, 0], [1, 6, 3]]
        env.reset(seed=0)
        env.step(np.array([[0, 1, 3], [2, 0, 0]]))
    finally:
        env.close()
    env = EnvBatch(EnvConfig(id="MultiBinaryAct-v0", backend="gymnasium"), 2)
    try:
        assert env.action.nvec == (2, 2, 2)
        env.reset(seed=0)
        env.step(np.array([[0, 1, 1], [1, 0, 0]]))
    finally:
        env.close()


@pytest.fixture(scope="module")
def bits_run(tmp_path_factory):
    """A run on MatchBits (observation: 3 bits; action MultiDiscrete([2, 3, 2]); reward: the share of
    entries equal to their bit, 8 steps an episode): guessing earns 3.6, reading every bit 8."""
    run = tmp_path_factory.mktemp("bits") / "run"
    config = build_train_config({
        "env": {"name": "bits", "id": "MatchBits-v0", "num_envs": 4, "backend": "gymnasium", "target": 7.0},
        "population": {"size": 2}, "algo": {"rollout_steps": 32, "batch_size": 64, "lr": 1e-2}, "hp_config": {},
        "evolution": {"evo_steps": 256, "selection_episodes": 4, "confirm_episodes": 20}, "max_steps": 40_000,
        "progress": False, "device": "cpu", "plot": {"on_finish": False}})
    return run, train(config, run, Console(quiet=True))


def test_a_multi_discrete_task_is_learned(bits_run):
    run, result = bits_run
    assert result.reached_target and result.best_score >= 7.0, result.best_score
    agent = evorl_cli.load(run)
    bits = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], np.float32)
    action, _ = agent.act(bits, deterministic=True)
    assert action.shape == (8, 3)
    assert (action == bits).mean() >= 0.85, action  # each entry follows its own bit


def test_the_checkpoint_records_each_entrys_choices(bits_run):
    """(The exact round trip of a trained MultiDiscrete population, against the live one, is
    test_checkpoint.py's test_round_trip_is_exact[bits-multi-discrete].)"""
    run, _ = bits_run
    assert checkpoint.load(run, prefer="latest").meta["action"]["nvec"] == [2, 3, 2]
