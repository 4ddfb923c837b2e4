"""GAE and the clipped-surrogate PPO update of every member at once.

The loss is the sum of the members' own losses, so one backward pass gives each member exactly its
own gradient. Members differ in batch size, epochs and KL early stop through a per-step `active`
mask: a member whose schedule has no minibatch at this step contributes no loss and its optimiser
state does not move, so the batched update equals each member's update run on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from evorl_cli.config import PPOConfig
from evorl_cli.nets.distributions import log_prob_entropy
from evorl_cli.population import Population
from evorl_cli.rollout import Rollout, members_first


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, last_value: torch.Tensor,
                gamma: torch.Tensor, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over [T, P, N] tensors with per-member `gamma`, `lam` [P].

    `dones[t]` marks the last step of an episode (its truncation value is already in `rewards[t]`),
    so nothing is bootstrapped across an episode boundary. Returns (advantages, returns).
    """
    gamma = gamma.view(-1, 1)
    gamma_lam = gamma * lam.view(-1, 1)
    advantages = torch.empty_like(rewards)
    running = torch.zeros_like(last_value)
    next_value = last_value
    for t in range(rewards.shape[0] - 1, -1, -1):
        carry = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * carry - values[t]
        running = delta + gamma_lam * carry * running
        advantages[t] = running
        next_value = values[t]
    return advantages, advantages + values


@dataclass
class UpdateStats:
    approx_kl: np.ndarray  # per member, mean over its own gradient steps
    steps: np.ndarray  # gradient steps each member took


def _take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Per-member rows `idx` [P, B] of `x` [P, S, ...]."""
    if x.dim() == 2:
        return x.gather(1, idx)
    return x.gather(1, idx.view(*idx.shape, 1).expand(-1, -1, *x.shape[2:]))


def minibatch_schedule(batch: np.ndarray, epochs: np.ndarray, samples: int) -> list[tuple[int, int, np.ndarray]]:
    """(epoch, minibatch index, which members step) for every step of the joint update loop.

    Member p takes `samples // batch[p]` minibatches per epoch for `epochs[p]` epochs; the loop runs
    as long as the longest member's schedule and idles the others; steps nobody takes are skipped.
    """
    per_epoch = samples // batch
    plan = []
    for epoch in range(int(epochs.max())):
        for k in range(int(per_epoch.max())):
            scheduled = (epoch < epochs) & (k < per_epoch)
            if scheduled.any():
                plan.append((epoch, k, scheduled))
    return plan


def ppo_update(pop: Population, ro: Rollout, cfg: PPOConfig, gen: torch.Generator) -> UpdateStats:
    """Train every member on its share of `ro`: epochs x shuffled minibatches of its own size."""
    device = pop.device
    advantages, returns = compute_gae(ro.rewards, ro.values, ro.dones, ro.last_value,
                                      pop.hp_tensor("gamma"), pop.hp_tensor("gae_lambda"))
    obs, actions, old_logp = members_first(ro.obs), members_first(ro.actions), members_first(ro.logp)
    advantages, returns = members_first(advantages), members_first(returns)
    old_values = members_first(ro.values)
    size, samples = old_logp.shape

    batch = pop.hp["batch_size"]
    lr, clip = pop.hp_tensor("lr"), pop.hp_tensor("clip_coef").view(-1, 1)
    ent_coef, vf_coef = pop.hp_tensor("ent_coef"), pop.hp_tensor("vf_coef")
    max_norm = pop.hp_tensor("max_grad_norm")
    kl_limit = None if cfg.target_kl is None else 1.5 * cfg.target_kl
    kl_ok = torch.ones(size, dtype=torch.bool, device=device)
    kl_total = torch.zeros(size, device=device)
    n_steps = torch.zeros(size, device=device)
    batch_t = torch.as_tensor(batch, device=device).view(-1, 1)

    perm = None
    for epoch, k, scheduled in minibatch_schedule(batch, pop.hp["update_epochs"], samples):
        if k == 0:
            perm = torch.rand(size, samples, generator=gen, device=device).argsort(dim=1)
        width = int(batch[scheduled].max())
        offsets = torch.arange(width, device=device).view(1, -1)
        positions = (k * batch_t + offsets).clamp_max(samples - 1)
        idx = perm.gather(1, positions)
        uniform = bool(scheduled.all() and (batch == width).all())
        if uniform:  # every member takes a full minibatch of the same size: plain means
            count = torch.full((size,), float(width), device=device)
            mean = lambda x: x.mean(1)  # noqa: E731
        else:  # members with smaller (or no) minibatches mask the padding out
            valid = (offsets < batch_t) & torch.as_tensor(scheduled, device=device).view(-1, 1)
            mask = valid.float()
            count = mask.sum(1).clamp_min(1.0)
            mean = lambda x: (x * mask).sum(1) / count  # noqa: E731  per-member mean over its own samples

        head, value = pop.forward_normalized(_take(obs, idx))
        logp, entropy = log_prob_entropy(head, pop.log_std(), _take(actions, idx))
        logratio = logp - _take(old_logp, idx)
        ratio = logratio.exp()

        with torch.no_grad():
            approx_kl = mean((ratio - 1) - logratio)
            if kl_limit is not None:
                # As SB3: a member whose policy moved too far stops before taking this step.
                kl_ok &= ~(approx_kl > kl_limit)
            active = torch.as_tensor(scheduled, device=device) & kl_ok
            weight = active.float()

        adv = _take(advantages, idx)
        if cfg.normalize_advantages:
            centred = adv - mean(adv).view(-1, 1)
            adv_std = torch.sqrt(mean(centred.square()) * count / (count - 1).clamp_min(1.0))  # unbiased
            adv = centred / (adv_std.view(-1, 1) + 1e-8)
        pg_loss = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - clip, 1 + clip))
        ret = _take(returns, idx)
        v_loss = (value - ret) ** 2
        if cfg.clip_vloss:
            old_v = _take(old_values, idx)
            v_clipped = old_v + torch.clamp(value - old_v, -clip, clip)
            v_loss = torch.max(v_loss, (v_clipped - ret) ** 2)
        v_loss = 0.5 * v_loss
        member_loss = mean(pg_loss) - ent_coef * mean(entropy) + vf_coef * mean(v_loss)
        (grad,) = torch.autograd.grad((member_loss * weight).sum(), pop.params)

        with torch.no_grad():
            norm = grad.norm(dim=1)
            grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0).unsqueeze(1))
            pop.adam.step(pop.params, grad, lr, weight)
            n_steps += weight
            kl_total += approx_kl * weight

    return UpdateStats((kl_total / n_steps.clamp_min(1.0)).cpu().numpy(), n_steps.cpu().numpy())
