"""PPO maths against independent oracles: hand-computed GAE, and the batched population update
against each member trained alone with stock PyTorch (nn maths, torch.optim.Adam, clip_grad_norm_)."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from helpers import CONTINUOUS, DISCRETE, NarrowNet, varied_population

from evorl_cli.config import PPOConfig
from evorl_cli import ppo as ppo_module
from evorl_cli.ppo import SequencePlan, compute_gae, ppo_update
from evorl_cli.rollout import Rollout
from evorl_cli.schedule import lr_factor


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
    bootstrap = dones * torch.randn(steps, size, envs, generator=g)  # as if some episodes hit a time limit
    return Rollout(obs=obs, raw_obs=obs, actions=torch.stack(actions), logp=torch.stack(logps),
                   values=torch.stack(values), rewards=torch.randn(steps, size, envs, generator=g) * 5,
                   bootstrap=bootstrap, dones=dones, last_value=torch.randn(size, envs, generator=g), starts=starts,
                   states=torch.stack(states) if states else None)


def _reference_update(pop, p, ro, cfg: PPOConfig, perms: list[torch.Tensor], lr_factor: float = 1.0) -> NarrowNet:
    """Member p trained on its own with plain torch: the textbook PPO loop over the same units
    (single steps, or BPTT sequences replayed from their stored state), at `lr_factor` times its lr."""
    net = NarrowNet(pop, p)
    hp = pop.hyperparameters(p)
    opt = torch.optim.Adam(net.parameters(), lr=hp["lr"] * lr_factor, eps=1e-5)
    scale = float(pop.reward_scale.scale()[p])  # the member's reward scaling (1 when off)
    rewards = ro.rewards[:, p:p + 1] * scale + ro.bootstrap[:, p:p + 1]
    adv_all, ret_all = compute_gae(rewards, ro.values[:, p:p + 1], ro.dones[:, p:p + 1],
                                   ro.last_value[p:p + 1], torch.tensor([hp["gamma"]]), torch.tensor([hp["gae_lambda"]]))
    steps, _, envs = ro.rewards.shape
    plan = SequencePlan.build(steps, envs, cfg, net.kind is not None, torch.device("cpu"))
    unit = lambda x: plan.units(x)[0]  # noqa: E731  member p's [T, 1, N, ...] -> [U, L, ...]
    mine = lambda x: unit(x[:, p:p + 1])  # noqa: E731
    obs, actions, old_logp, starts = mine(ro.obs), mine(ro.actions), mine(ro.logp), mine(ro.starts)
    adv_all, ret_all = unit(adv_all), unit(ret_all)
    states = None if ro.states is None else ro.states[plan.time[:, 0], p, plan.env]
    loss_mask = torch.ones_like(old_logp) if plan.loss_mask is None else plan.loss_mask
    batch, units = max(1, hp["batch_size"] // obs.shape[1]), obs.shape[0]  # whole sequences of L steps
    for epoch in range(hp["update_epochs"]):
        perm = perms[epoch][p]
        for k in range(-(-units // batch)):  # the last minibatch is short when batch does not divide units
            idx = perm[k * batch:(k + 1) * batch]
            if states is None:
                head, value = net.forward(obs[idx])
            else:
                head, value = net.forward_sequence(obs[idx], states[idx], starts[idx])
            w = loss_mask[idx]
            wmean = lambda x: (x * w).sum() / w.sum()  # noqa: E731
            if net.log_std is None:
                dist = torch.distributions.Categorical(logits=head)
                logp, entropy = dist.log_prob(actions[idx]), dist.entropy()
            else:
                dist = torch.distributions.Normal(head, net.log_std.exp())
                logp, entropy = dist.log_prob(actions[idx]).sum(-1), dist.entropy().sum(-1)
            logp, entropy = logp.view_as(w), entropy.view_as(w)
            ratio = (logp - old_logp[idx]).exp()
            adv = adv_all[idx]
            mu = wmean(adv)
            adv = (adv - mu) / (torch.sqrt(((adv - mu) ** 2 * w).sum() / (w.sum() - 1)) + 1e-8)
            clip = hp["clip_coef"]
            pg = wmean(torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - clip, 1 + clip)))
            v_loss = 0.5 * wmean((value - ret_all[idx]) ** 2)
            loss = pg - hp["ent_coef"] * wmean(entropy) + hp["vf_coef"] * v_loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), hp["max_grad_norm"])
            opt.step()
    return net


VARIED_HPS = {"batch_size": [8, 16, 32], "update_epochs": [2, 3, 1], "lr": [1e-3, 3e-3, 5e-4],
              "ent_coef": [0.0, 0.01, 0.05], "clip_coef": [0.2, 0.1, 0.3], "vf_coef": [0.5, 1.0, 0.25],
              "max_grad_norm": [0.5, 0.05, 10.0], "gamma": [0.99, 0.9, 0.95], "gae_lambda": [0.95, 0.8, 1.0]}


def assert_batched_equals_alone(pop, cfg: PPOConfig, hps: dict, steps: int = 8, envs: int = 4,
                                lr_factor: float = 1.0) -> None:
    """Run one batched update and, for every member, the reference update alone; compare weights."""
    for name, values in hps.items():
        pop.hp[name] = np.array(values, dtype=pop.hp[name].dtype)
    pop.reward_scale.enabled = True  # each member scales rewards by its own return statistics
    pop.reward_scale.var = torch.tensor([4.0, 0.25, 1.0])[: pop.size]
    ro = _rollout(pop, steps=steps, envs=envs, seed=1)
    before = pop.params.detach().clone()
    ppo_update(pop, ro, cfg, torch.Generator().manual_seed(123), lr_factor)

    # The batched loop draws one permutation per member per epoch; replay the same draws.
    plan = SequencePlan.build(steps, envs, cfg, pop.net.recurrent, torch.device("cpu"))
    replay = torch.Generator().manual_seed(123)
    perms = [torch.stack([torch.randperm(len(plan.env), generator=replay) for _ in range(pop.size)])
             for _ in range(max(hps["update_epochs"]))]
    for p in range(pop.size):
        reference = _reference_update(_with_params(pop, before), p, ro, cfg, perms, lr_factor)
        for got, want in zip(NarrowNet.narrow_of(pop, p), reference.in_layout()):
            assert got.shape == want.shape
            assert torch.allclose(got, want.detach(), atol=3e-5, rtol=1e-4), f"member {p} differs"


@pytest.mark.parametrize("action", [DISCRETE, CONTINUOUS], ids=["discrete", "continuous"])
@pytest.mark.parametrize("share_encoder", [False, True], ids=["separate", "shared"])
def test_batched_update_equals_each_member_alone(action, share_encoder):
    pop = varied_population(action, share_encoder=share_encoder)
    assert_batched_equals_alone(pop, PPOConfig(), VARIED_HPS)
    for p in range(pop.size):  # units a member does not use stay exactly zero
        active = sum(t.numel() for t in NarrowNet(pop, p).parameters())
        assert int((pop.params[p] != 0).sum()) <= active


def test_lr_schedule_factors_by_hand():
    """constant: always 1; linear: 1 - steps / budget (SB3's lin_<lr>), 0 once the budget is spent."""
    assert [lr_factor("constant", s, 2_000_000) for s in (0, 1_000_000, 2_000_000)] == [1.0, 1.0, 1.0]
    assert [lr_factor("linear", s, 2_000_000) for s in (0, 500_000, 1_500_000, 2_000_000, 2_100_000)] == \
        [1.0, 0.75, 0.25, 0.0, 0.0]


def test_lr_schedule_factor_scales_every_members_own_lr():
    """An annealed update (factor 0.3) equals each member trained alone by torch.optim.Adam at 0.3
    times its own lr; and it is not the unscaled update (the factor acts)."""
    annealed, plain = varied_population(CONTINUOUS), varied_population(CONTINUOUS)
    assert_batched_equals_alone(annealed, PPOConfig(), VARIED_HPS, lr_factor=0.3)
    assert_batched_equals_alone(plain, PPOConfig(), VARIED_HPS)
    assert not torch.allclose(annealed.params, plain.params, atol=1e-4)


# Batch sizes that do not divide the 32 units of an 8-step x 4-env rollout: 12 + 12 + 8, 32, 7 x 4 + 4.
NON_DIVIDING_HPS = dict(VARIED_HPS, batch_size=[12, 32, 7])


@pytest.mark.parametrize("action", [DISCRETE, CONTINUOUS], ids=["discrete", "continuous"])
def test_batched_update_with_short_last_minibatches_equals_each_member_alone(action):
    pop = varied_population(action)
    assert_batched_equals_alone(pop, PPOConfig(), NON_DIVIDING_HPS)


@pytest.mark.parametrize("recurrent", [None, "lstm"], ids=["mlp", "lstm"])
def test_every_sample_is_used_exactly_once_per_epoch(monkeypatch, recurrent):
    """Watch what the update really feeds the loss: each observation carries its unit's id, and a
    sample counts where its weight in the member's mean is positive."""
    pop = varied_population(DISCRETE, recurrent=recurrent)
    steps, envs = 8, 4
    pop.hp["batch_size"] = np.array([12, 32, 7]) if recurrent is None else np.array([12, 8, 20])  # steps
    pop.hp["update_epochs"] = np.array([2, 3, 1])
    ro = _rollout(pop, steps=steps, envs=envs, seed=4)
    ids = torch.arange(steps * envs, dtype=torch.float32).view(steps, 1, envs).expand(steps, pop.size, envs)
    ro.obs = ro.obs.clone()
    ro.obs[..., 0] = ids  # observation of step t, env n carries t * envs + n

    seen_obs, seen_weight = [], []
    forward = pop.forward_sequence
    monkeypatch.setattr(pop, "forward_sequence", lambda obs, *a: (seen_obs.append(obs[..., 0].flatten(1)),
                                                                  forward(obs, *a))[1])
    objective = ppo_module.ppo_objective

    def spy(head, value, log_std, minibatch, coef, nvec=None):
        w = minibatch.sample_weight
        seen_weight.append(torch.ones_like(minibatch.old_logp) if w is None else w)
        return objective(head, value, log_std, minibatch, coef, nvec)

    monkeypatch.setattr(ppo_module, "ppo_objective", spy)
    ppo_update(pop, ro, PPOConfig(max_seq_len=4), torch.Generator().manual_seed(0))

    length = 1 if recurrent is None else 4
    units = steps * envs // length
    batch = np.maximum(1, pop.hp["batch_size"] // length)
    schedule = ppo_module.minibatch_schedule(batch, pop.hp["update_epochs"], units)
    assert len(schedule) == len(seen_obs)
    for p in range(pop.size):
        per_epoch = -(-units // int(batch[p]))
        assert sum(int(s[p]) for _, _, s in schedule) == per_epoch * pop.hp["update_epochs"][p]
        for epoch in range(int(pop.hp["update_epochs"][p])):
            used = torch.cat([obs[p][weight[p] > 0] for (e, _, _), obs, weight in zip(schedule, seen_obs, seen_weight)
                              if e == epoch])
            assert sorted(used.long().tolist()) == list(range(steps * envs)), f"member {p} epoch {epoch}"


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
    assert torch.isfinite(stats.approx_kl).all() and (stats.approx_kl >= 0).all()


def test_update_diagnostics_per_member():
    """Explained variance against its formula; a generation's diagnostics sum the optimiser steps
    and average the rest; a member that steps reports a positive gradient norm."""
    from evorl_cli.ppo import DIAGNOSTICS, UpdateStats, explained_variance

    g = torch.Generator().manual_seed(0)
    returns = torch.randn(6, 2, 3, generator=g)
    values = torch.stack([returns[:, 0], torch.zeros_like(returns[:, 1])], dim=1)
    values[:, 0] += 0.5 * torch.randn(6, 3, generator=g)
    r0 = returns[:, 0].flatten()
    want0 = 1 - (r0 - values[:, 0].flatten()).var() / r0.var()
    torch.testing.assert_close(explained_variance(values, returns), torch.stack([want0, torch.tensor(0.0)]))

    pop = varied_population(DISCRETE, widths=([32], [16]), activations=("tanh", "relu"))
    ro = _rollout(pop, steps=8, envs=4, seed=1)
    stats = ppo_update(pop, ro, PPOConfig(), torch.Generator().manual_seed(0))
    once = stats.as_dict()
    assert list(once) == list(DIAGNOSTICS) and all(v.shape == (2,) for v in once.values())
    assert (once["grad_norm"] > 0).all() and (once["entropy"] > 0).all()
    assert ((once["clip_fraction"] >= 0) & (once["clip_fraction"] <= 1)).all()
    twice = UpdateStats.combine([stats, stats])
    np.testing.assert_array_equal(twice["optimizer_steps"], 2 * once["optimizer_steps"])
    np.testing.assert_allclose(twice["value_loss"], once["value_loss"])


def test_update_in_slices_of_members_equals_one_pass(monkeypatch):
    """A large population trains in slices of members (`members_per_pass`) that share its storage: the
    same shuffles, so each member's update, optimiser state and diagnostics are the same."""
    whole, sliced = varied_population(CONTINUOUS), varied_population(CONTINUOUS)
    for pop in (whole, sliced):
        for name, values in NON_DIVIDING_HPS.items():
            pop.hp[name] = np.array(values, dtype=pop.hp[name].dtype)
    ro = _rollout(whole, steps=8, envs=4, seed=2)
    cfg = PPOConfig(target_kl=0.01)
    stats = [ppo_update(whole, ro, cfg, torch.Generator().manual_seed(5))]
    monkeypatch.setattr(ppo_module, "members_per_pass", lambda pop: 2)  # members 0-1, then member 2
    obs = torch.randn(sliced.size, 3, sliced.net.obs_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = sliced.forward_normalized(obs)[0]  # rollouts' prepared parameters, cached
    stats.append(ppo_update(sliced, ro, cfg, torch.Generator().manual_seed(5)))
    assert not torch.equal(sliced.params, varied_population(CONTINUOUS).params)  # it trained
    # Steps taken on the slices' rows reach the whole population's next rollout (no stale cache).
    with torch.no_grad():
        after = sliced.forward_normalized(obs)[0]
        fresh = sliced.net.forward(sliced.views, obs, sliced.masks, None,
                                   sliced.net.step_params(sliced.views, sliced.masks))[0]
    assert not torch.allclose(before, after) and torch.equal(after, fresh)
    # A slice's masks are compiled once per architecture, and again after it changes.
    assert sliced.rows(0, 2).masks is sliced.rows(0, 2).masks
    before = sliced.rows(2, 4).masks
    sliced.refresh_masks()
    assert sliced.rows(2, 4).masks is not before
    torch.testing.assert_close(sliced.params, whole.params, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sliced.adam.exp_avg_sq, whole.adam.exp_avg_sq, atol=1e-8, rtol=1e-4)
    assert torch.equal(sliced.adam.steps, whole.adam.steps)
    for name, value in stats[0].as_dict().items():
        np.testing.assert_allclose(stats[1].as_dict()[name], value, rtol=1e-4, atol=1e-6, err_msg=name)


def test_members_per_pass_keeps_a_pass_near_the_slice_budget():
    """Acrobot's MLP (64 units, 2 towers, batch 256): 128 KiB a member, 64 a pass; an LSTM of 64
    units (four gates, shared encoder, batch 512): 512 KiB a member, 16 a pass; never below one."""
    from types import SimpleNamespace

    from evorl_cli.nets.policy import Capacity

    def pop(width, hidden, towers, batch):
        net = SimpleNamespace(cap=Capacity(width, 2, hidden), towers=towers)
        return SimpleNamespace(net=net, hp={"batch_size": np.array([batch // 2, batch])}, params=torch.zeros(1))

    assert ppo_module.members_per_pass(pop(64, 0, 2, 256)) == 64
    assert ppo_module.members_per_pass(pop(128, 0, 2, 256)) == 32
    assert ppo_module.members_per_pass(pop(32, 64, 1, 512)) == 16
    assert ppo_module.members_per_pass(pop(4096, 0, 2, 4096)) == 1
