"""PPO maths against independent oracles: hand-computed GAE, and the batched population update
against each member trained alone with stock PyTorch (nn maths, torch.optim.Adam, clip_grad_norm_)."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from helpers import CONTINUOUS, DISCRETE, NarrowNet, varied_population

from evorl_cli.config import PPOConfig
from evorl_cli.nets.distributions import log_prob_entropy
from evorl_cli.ppo import compute_gae, ppo_update
from evorl_cli.rollout import Rollout


def test_gae_matches_hand_computation():
    # T=3 steps, two members with their own gamma/lambda, one env; the episode ends at t=1.
    rewards = torch.tensor([[1.0], [2.0], [3.0]]).unsqueeze(1).repeat(1, 2, 1)  # [T, P, N]
    values = torch.tensor([[0.5], [1.0], [1.5]]).unsqueeze(1).repeat(1, 2, 1)
    dones = torch.tensor([[0.0], [1.0], [0.0]]).unsqueeze(1).repeat(1, 2, 1)
    last_value = torch.full((2, 1), 2.0)
    adv, ret = compute_gae(rewards, values, dones, last_value, torch.tensor([0.9, 0.5]), torch.tensor([0.8, 1.0]))
    # member 0: t2: 3 + .9*2 - 1.5 = 3.3; t1 (episode end): 2 - 1 = 1; t0: 1 + .9*1 - .5 + .9*.8*1 = 2.12
    # member 1: t2: 3 + .5*2 - 1.5 = 2.5; t1: 1;                       t0: 1 + .5*1 - .5 + .5*1*1 = 1.5
    expected = torch.tensor([[2.12, 1.5], [1.0, 1.0], [3.3, 2.5]]).unsqueeze(-1)
    assert torch.allclose(adv, expected, atol=1e-6)
    assert torch.allclose(ret, expected + values, atol=1e-6)


def _rollout(pop, steps: int, envs: int, seed: int) -> Rollout:
    """A rollout with random observations and episode ends, actions drawn from the members' policies
    (recurrent members carry and reset their state as the collector does), random rewards."""
    g = torch.Generator().manual_seed(seed)
    size, obs_dim = pop.size, pop.net.obs_dim
    obs = torch.randn(steps, size, envs, obs_dim, generator=g)
    dones = (torch.rand(steps, size, envs, generator=g) < 0.1).float()
    starts = torch.cat([torch.ones(1, size, envs), dones[:-1]])
    state = pop.initial_state(envs)
    logps, values, actions, states = [], [], [], []
    for t in range(steps):
        if state is not None:
            state = state * (1 - starts[t]).unsqueeze(-1)
            states.append(state)
        step = pop.act(obs[t], g, state=state)
        state = step.state
        actions.append(step.action)
        logps.append(step.logp)
        values.append(step.value)
    return Rollout(obs=obs, raw_obs=obs, actions=torch.stack(actions), logp=torch.stack(logps),
                   values=torch.stack(values), rewards=torch.randn(steps, size, envs, generator=g),
                   dones=dones, last_value=torch.randn(size, envs, generator=g), starts=starts,
                   states=torch.stack(states) if states else None)


def _reference_update(pop, p, ro, cfg: PPOConfig, perms: list[torch.Tensor]) -> NarrowNet:
    """Member p trained on its own with plain torch: the textbook PPO loop."""
    net = NarrowNet(pop, p)
    hp = pop.hyperparameters(p)
    opt = torch.optim.Adam(net.parameters(), lr=hp["lr"], eps=1e-5)
    adv_all, ret_all = compute_gae(ro.rewards[:, p:p + 1], ro.values[:, p:p + 1], ro.dones[:, p:p + 1],
                                   ro.last_value[p:p + 1], torch.tensor([hp["gamma"]]), torch.tensor([hp["gae_lambda"]]))
    flat = lambda x: x[:, p].reshape(-1, *x.shape[3:])  # noqa: E731  [T, N, ...] -> [T*N, ...]
    obs, actions, old_logp = flat(ro.obs), flat(ro.actions), flat(ro.logp)
    adv_all, ret_all = adv_all[:, 0].reshape(-1), ret_all[:, 0].reshape(-1)
    batch, samples = hp["batch_size"], obs.shape[0]
    for epoch in range(hp["update_epochs"]):
        perm = perms[epoch][p]
        for k in range(samples // batch):
            idx = perm[k * batch:(k + 1) * batch]
            head, value = net.forward(obs[idx])
            log_std = None if net.log_std is None else net.log_std.unsqueeze(0)
            logp, entropy = log_prob_entropy(head.unsqueeze(0), log_std, actions[idx].unsqueeze(0))
            logratio = logp[0] - old_logp[idx]
            ratio = logratio.exp()
            adv = adv_all[idx]
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            clip = hp["clip_coef"]
            pg = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - clip, 1 + clip)).mean()
            v_loss = 0.5 * ((value - ret_all[idx]) ** 2).mean()
            loss = pg - hp["ent_coef"] * entropy[0].mean() + hp["vf_coef"] * v_loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), hp["max_grad_norm"])
            opt.step()
    return net


@pytest.mark.parametrize("action", [DISCRETE, CONTINUOUS], ids=["discrete", "continuous"])
@pytest.mark.parametrize("share_encoder", [False, True], ids=["separate", "shared"])
def test_batched_update_equals_each_member_alone(action, share_encoder):
    pop = varied_population(action, share_encoder=share_encoder)
    hp = {"batch_size": [8, 16, 32], "update_epochs": [2, 3, 1], "lr": [1e-3, 3e-3, 5e-4],
          "ent_coef": [0.0, 0.01, 0.05], "clip_coef": [0.2, 0.1, 0.3], "vf_coef": [0.5, 1.0, 0.25],
          "max_grad_norm": [0.5, 0.05, 10.0], "gamma": [0.99, 0.9, 0.95], "gae_lambda": [0.95, 0.8, 1.0]}
    for name, values in hp.items():
        pop.hp[name] = np.array(values, dtype=pop.hp[name].dtype)
    ro = _rollout(pop, steps=8, envs=4, seed=1)
    before = pop.params.detach().clone()

    cfg = PPOConfig()
    gen = torch.Generator().manual_seed(123)
    ppo_update(pop, ro, cfg, gen)

    # The batched loop draws one permutation per member per epoch; replay the same draws.
    replay = torch.Generator().manual_seed(123)
    samples = 8 * 4
    perms = [torch.rand(pop.size, samples, generator=replay).argsort(dim=1) for _ in range(max(hp["update_epochs"]))]
    for p in range(pop.size):
        reference = _reference_update(_with_params(pop, before), p, ro, cfg, perms)
        trained = NarrowNet(pop, p)
        for got, want in zip(trained.parameters(), reference.parameters()):
            assert torch.allclose(got, want.detach(), atol=2e-5, rtol=1e-4), f"member {p} differs"
        # Units a member does not use stay exactly zero.
        active = sum(t.numel() for t in trained.parameters())
        assert int((pop.params[p] != 0).sum()) <= active


def _with_params(pop, params):
    """The same population object viewed with other parameters (for rebuilding the oracle)."""
    clone = type(pop).__new__(type(pop))
    clone.__dict__.update(pop.__dict__)
    clone.params = params
    return clone


def test_kl_early_stop_freezes_only_that_member():
    pop = varied_population(DISCRETE, widths=([32], [32]), activations=("tanh", "tanh"))
    pop.hp["lr"] = np.array([0.05, 0.05])
    pop.hp["update_epochs"] = np.array([10, 10])
    pop.hp["batch_size"] = np.array([8, 8])
    ro = _rollout(pop, steps=8, envs=4, seed=2)
    cfg = PPOConfig(target_kl=1e-4)
    stats = ppo_update(pop, ro, cfg, torch.Generator().manual_seed(0))
    full = 10 * (32 // 8)
    assert (stats.steps < full).all(), "a huge learning rate must trip the KL stop before all steps"
    assert (stats.steps >= 1).all()
    assert np.isfinite(stats.approx_kl).all() and (stats.approx_kl >= 0).all()
