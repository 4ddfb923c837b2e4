"""GAE and the clipped-surrogate PPO update of every member at once.

The loss is the sum of the members' own losses, so one backward pass gives each member exactly its
own gradient. Members differ in batch size, epochs and KL early stop through a per-step `active`
mask: a member whose schedule has no minibatch at this step contributes no loss and its optimiser
state does not move, so the batched update equals each member's update run on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from evorl_cli.config import PPOConfig
from evorl_cli.population import Population
from evorl_cli.ppo_loss import APPROX_KL, TERMS, Coefficients, Minibatch, ppo_objective, weighted_mean
from evorl_cli.rollout import Rollout


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, last_value: torch.Tensor,
                gamma: torch.Tensor, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over [T, P, N] tensors with per-member `gamma`, `lam` [P].

    `dones[t]` marks the last step of an episode (its truncation value is already in `rewards[t]`),
    so nothing is bootstrapped across an episode boundary. Returns (advantages, returns).
    """
    gamma = gamma.view(-1, 1)
    carry = 1.0 - dones
    next_values = torch.cat([values[1:], last_value.unsqueeze(0)])
    # Everything but the backward recursion is computed for all steps at once; the loop is then
    # one fused op per step: A_t = delta_t + gamma * lambda * carry_t * A_{t+1}.
    deltas = torch.addcmul(rewards - values, gamma * next_values, carry)
    decay = carry * (gamma * lam.view(-1, 1))
    advantages = torch.empty_like(rewards)
    running = torch.zeros_like(last_value)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = torch.addcmul(deltas[t], decay[t], running, out=advantages[t])
    return advantages, advantages + values


# The learner's diagnostics of one update, per member, in the order `UpdateStats.as_dict` gives them.
DIAGNOSTICS = (*TERMS, "explained_variance", "grad_norm", "optimizer_steps")


@dataclass
class UpdateStats:
    """What one `ppo_update` did to each member, as CPU tensors [P] (moved off the device once, at
    the end of the update). Losses, entropy, KL, clip fraction and the gradient norm (before
    clipping) are means over the member's own optimiser steps; explained variance is of the value
    predictions the rollout was collected with (1 - Var(R - V) / Var(R), over the whole rollout)."""

    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    entropy: torch.Tensor
    approx_kl: torch.Tensor
    clip_fraction: torch.Tensor
    explained_variance: torch.Tensor
    grad_norm: torch.Tensor
    steps: torch.Tensor  # optimiser steps the member took (fewer than scheduled after a KL stop)

    def as_dict(self) -> dict[str, np.ndarray]:
        """Name -> [P] array, named as `DIAGNOSTICS`."""
        values = [getattr(self, n) for n in DIAGNOSTICS[:-1]] + [self.steps]
        return {name: v.numpy() for name, v in zip(DIAGNOSTICS, values)}

    @staticmethod
    def combine(updates: list["UpdateStats"]) -> dict[str, np.ndarray]:
        """The diagnostics of several updates (a generation's), as `as_dict`: optimiser steps
        summed, every other figure averaged over the updates."""
        if not updates:
            return {}
        each = [u.as_dict() for u in updates]
        out = {k: np.mean([d[k] for d in each], axis=0) for k in DIAGNOSTICS}
        out["optimizer_steps"] = np.sum([d["optimizer_steps"] for d in each], axis=0)
        return out


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """1 - Var(R - V) / Var(R) per member over [T, P, N] tensors (NaN where the returns do not vary)."""
    v, r = values.transpose(0, 1).flatten(1), returns.transpose(0, 1).flatten(1)
    var = r.var(dim=1)
    return torch.where(var > 0, 1 - (r - v).var(dim=1) / var, torch.full_like(var, float("nan")))


def _take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Per-member rows `idx` [P, B] of `x` [P, U, ...]."""
    if x.dim() == 2:
        return x.gather(1, idx)
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:]))


@dataclass
class SequencePlan:
    """How a rollout is cut into training units: unit u replays `time[u]` of env `env[u]`.

    Feed-forward nets use units of one step (L = 1). Recurrent nets use BPTT sequences: chunks of
    `max_seq_len`, chunks overlapping by half (the first half of a later chunk only warms the state
    up, it carries no loss), or each env's whole rollout."""

    env: torch.Tensor  # [U] long
    time: torch.Tensor  # [U, L] long
    loss_mask: torch.Tensor | None  # [U, L] float, None when every step counts

    @classmethod
    def build(cls, steps: int, envs: int, cfg: PPOConfig, recurrent: bool, device: torch.device) -> "SequencePlan":
        if not recurrent:  # unit t * N + n: the same order as `members_first`
            t = torch.arange(steps, device=device).repeat_interleave(envs)
            return cls(torch.arange(envs, device=device).repeat(steps), t.view(-1, 1), None)
        length = steps if cfg.bptt == "whole" else cfg.max_seq_len
        stride = length // 2 if cfg.bptt == "overlap" else length
        first = torch.arange(0, steps - length + 1, stride, device=device)
        env = torch.arange(envs, device=device).repeat(len(first))
        start = first.repeat_interleave(envs)
        time = start.view(-1, 1) + torch.arange(length, device=device).view(1, -1)
        mask = None
        if cfg.bptt == "overlap":
            mask = torch.ones(len(start), length, device=device)
            mask[start > 0, : length - stride] = 0.0
        return cls(env, time, mask)

    def units(self, x: torch.Tensor) -> torch.Tensor:
        """Rollout tensor [T, P, N, ...] -> [P, U, L, ...]."""
        return x.transpose(0, 1)[:, self.time, self.env.view(-1, 1)]


def minibatch_schedule(batch: np.ndarray, epochs: np.ndarray, samples: int) -> list[tuple[int, int, np.ndarray]]:
    """(epoch, minibatch index, which members step) for every step of the joint update loop.

    `batch` and `samples` count training units (steps, or BPTT sequences). Member p takes
    `ceil(samples / batch[p])` minibatches per epoch for `epochs[p]` epochs, the last one short when
    `batch[p]` does not divide `samples`: every unit is used once per epoch, so a batch-size mutation
    changes how the data is cut, not how much of it is used. The loop runs as long as the longest
    member's schedule and idles the others; steps nobody takes are skipped.
    """
    per_epoch = -(-samples // batch)
    plan = []
    for epoch in range(int(epochs.max())):
        for k in range(int(per_epoch.max())):
            scheduled = (epoch < epochs) & (k < per_epoch)
            if scheduled.any():
                plan.append((epoch, k, scheduled))
    return plan


def minibatch_sizes(batch: np.ndarray, samples: int, k: int) -> np.ndarray:
    """Units in each member's k-th minibatch of an epoch: `batch`, the remainder for the short last
    one, and 0 for members whose epoch has already ended."""
    return np.clip(samples - k * batch, 0, batch)


# Members per pass of the update. One pass over all members serves small populations best (one op
# per layer whatever P), but a minibatch's activations grow with P: at 256 members x 256 samples x
# 64 units x 2 towers each is 33 MB, beyond the caches, and the elementwise ops (activations, their
# gradients, Adam) then run at memory speed; from 32 MiB on, glibc also maps every such block afresh
# and faults its pages in (heap.py). A pass holds as many members as keep the largest activation
# near SLICE_BYTES. Measured on 2 cores: Acrobot (MLP 64x64, batch 256: 64 members a pass) updated
# in 50 ms a member at P=256 in one pass, 24 ms at P=64; pendulum_novel's LSTM (64 units, batch 512:
# 16 members a pass) trained P=64 at 46,500 env-steps/s in passes of 16, 40,700 in 32, 32,900 in 64
# (one run each, under load).
SLICE_BYTES = 8 << 20


def members_per_pass(pop: Population) -> int:
    """How many members one pass of the update trains: `SLICE_BYTES` over one member's largest
    minibatch activation (its batch x the MLP's width, or an LSTM's four gates, for each tower).
    A CNN's feature maps are not counted: its members convolve in one grouped call."""
    net = pop.net
    widest = max(net.cap.width, 4 * net.cap.hidden) * net.towers
    per_member = int(pop.hp["batch_size"].max()) * widest * pop.params.element_size()
    return max(1, SLICE_BYTES // per_member)


def ppo_update(pop: Population, ro: Rollout, cfg: PPOConfig, gen: torch.Generator,
               lr_factor: float = 1.0) -> UpdateStats:
    """Train every member on its share of `ro`: epochs x shuffled minibatches of its own size, each
    member at its own lr times `lr_factor` (the run's lr schedule, `evorl_cli.schedule`).

    Members learn independently, so a large population trains in slices of `members_per_pass`
    members (`Population.rows`, sharing its storage); every member's shuffles are drawn first, in
    the same order whatever the slicing, so slicing changes no member's update."""
    device = pop.device
    # Rewards in the units the value function learns: scaled per member, plus truncation bootstraps
    # (already value-sized).
    rewards = ro.rewards * pop.reward_scale.scale().view(1, -1, 1) + ro.bootstrap
    advantages, returns = compute_gae(rewards, ro.values, ro.dones, ro.last_value,
                                      pop.hp_tensor("gamma"), pop.hp_tensor("gae_lambda"))
    steps, size, envs = rewards.shape
    explained = explained_variance(ro.values, returns)
    plan = SequencePlan.build(steps, envs, cfg, pop.net.recurrent, device)
    data = _UnitData(plan.units(ro.obs), plan.units(ro.actions), plan.units(ro.logp), plan.units(advantages),
                     plan.units(returns), plan.units(ro.values),
                     plan.units(ro.starts) if pop.net.recurrent else None,
                     # The stored state at each unit's first step: the replay starts there.
                     ro.states.transpose(0, 1)[:, plan.time[:, 0], plan.env] if pop.net.recurrent else None)
    units = data.old_logp.shape[1]
    # Every member shuffles its units afresh each epoch (randperm: a tenth of argsort's cost).
    perms = [torch.stack([torch.randperm(units, generator=gen, device=device) for _ in range(size)])
             for _ in range(int(pop.hp["update_epochs"].max()))]
    per_pass = members_per_pass(pop)
    if size <= per_pass:
        stats = _train(pop, data, plan.loss_mask, perms, cfg, lr_factor)
    else:
        parts = [_train(pop.rows(a, min(a + per_pass, size)), data.rows(a, a + per_pass), plan.loss_mask,
                        [perm[a:a + per_pass] for perm in perms], cfg, lr_factor)
                 for a in range(0, size, per_pass)]
        stats = torch.cat(parts, dim=1)

    # One transfer off the device for all the diagnostics.
    stats = torch.cat([stats, explained.unsqueeze(0)]).cpu()
    *terms_mean, grad_norm, steps_cpu, explained_cpu = stats
    return UpdateStats(*terms_mean, explained_variance=explained_cpu, grad_norm=grad_norm, steps=steps_cpu)


@dataclass
class _UnitData:
    """A rollout cut into training units, all [P, U, L, ...] (`states` [P, U, S])."""

    obs: torch.Tensor
    actions: torch.Tensor
    old_logp: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    old_values: torch.Tensor
    starts: torch.Tensor | None
    states: torch.Tensor | None

    def rows(self, start: int, stop: int) -> "_UnitData":
        """Members start..stop-1 (views)."""
        return _UnitData(**{f.name: None if (x := getattr(self, f.name)) is None else x[start:stop]
                            for f in fields(self)})


def _train(pop: Population, data: _UnitData, loss_mask: torch.Tensor | None, perms: list[torch.Tensor],
           cfg: PPOConfig, lr_factor: float) -> torch.Tensor:
    """The joint minibatch loop of `pop`'s members over `data`, each epoch in the order `perms[epoch]`
    [P, U], at each member's lr times `lr_factor`. Returns [len(TERMS) + 2, P]: each member's mean terms and grad norm per optimiser step,
    then its optimiser steps."""
    device, size = pop.device, pop.size
    units, length = data.old_logp.shape[1], data.old_logp.shape[2]
    # batch_size counts env steps; a recurrent minibatch holds that many steps in whole sequences.
    batch = np.maximum(1, pop.hp["batch_size"] // length)
    lr = pop.hp_tensor("lr") * lr_factor
    coef = Coefficients(pop.hp_tensor("clip_coef").view(-1, 1), pop.hp_tensor("ent_coef"), pop.hp_tensor("vf_coef"),
                        cfg.clip_vloss)
    max_norm = pop.hp_tensor("max_grad_norm")
    kl_limit = None if cfg.target_kl is None else 1.5 * cfg.target_kl
    kl_ok = torch.ones(size, dtype=torch.bool, device=device)
    terms_total = torch.zeros(size, len(TERMS), device=device)  # summed over each member's own steps
    norm_total = torch.zeros(size, device=device)
    n_steps = torch.zeros(size, device=device)
    batch_t = torch.as_tensor(batch, device=device).view(-1, 1)
    flat = lambda x: x.reshape(size, -1, *x.shape[3:])  # noqa: E731  [P, B, L, ...] -> [P, B*L, ...]

    full_counts: dict[int, torch.Tensor] = {}  # per minibatch width, made once
    for epoch, k, scheduled in minibatch_schedule(batch, pop.hp["update_epochs"], units):
        perm = perms[epoch]
        sizes = minibatch_sizes(batch, units, k)
        width = int(sizes[scheduled].max())
        offsets = torch.arange(width, device=device).view(1, -1)
        positions = (k * batch_t + offsets).clamp_max(units - 1)  # past a member's minibatch: masked below
        idx = perm.gather(1, positions)
        scheduled_t = torch.as_tensor(scheduled, device=device)
        if bool(scheduled.all() and (sizes == width).all()) and loss_mask is None:
            # Every member takes a minibatch of the same size: plain means.
            count = full_counts.setdefault(width, torch.full((size,), float(width * length), device=device))
            sample_weight = None
        else:  # members with smaller (or no) minibatches, and burn-in steps, are masked out
            sizes_t = torch.as_tensor(sizes, device=device).view(-1, 1)
            valid = ((offsets < sizes_t) & scheduled_t.view(-1, 1)).float()
            weights = valid.unsqueeze(-1).expand(-1, -1, length)
            if loss_mask is not None:
                weights = weights * loss_mask[idx]
            weights = weights.reshape(size, -1)
            count = weights.sum(1).clamp_min(1.0)
            sample_weight = weights / count.view(-1, 1)  # per-member mean over its own samples

        head, value = pop.forward_sequence(_take(data.obs, idx), None if data.states is None else _take(data.states, idx),
                                           None if data.starts is None else _take(data.starts, idx))
        adv = flat(_take(data.advantages, idx))
        if cfg.normalize_advantages:
            centred = adv - weighted_mean(adv, sample_weight).view(-1, 1)
            adv_std = torch.sqrt(weighted_mean(centred.square(), sample_weight) * count
                                 / (count - 1).clamp_min(1.0))  # unbiased
            adv = centred / (adv_std.view(-1, 1) + 1e-8)
        minibatch = Minibatch(flat(_take(data.actions, idx)), flat(_take(data.old_logp, idx)), adv,
                              flat(_take(data.returns, idx)),
                              flat(_take(data.old_values, idx)) if cfg.clip_vloss else None, sample_weight)
        member_loss, terms = ppo_objective(flat(head), flat(value), pop.log_std(), minibatch, coef,
                                           pop.net.action.nvec)
        approx_kl = terms[:, APPROX_KL]
        with torch.no_grad():
            if kl_limit is not None:
                # As SB3: a member whose policy moved too far stops before taking this step.
                kl_ok &= ~(approx_kl > kl_limit)
            active = scheduled_t & kl_ok
            weight = active.float()
        grad = pop.flat_grad((member_loss * weight).sum())

        with torch.no_grad():
            norm = grad.norm(dim=1)
            grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0).unsqueeze(1))
            pop.adam.step(pop.params, grad, lr, weight)
            n_steps += weight
            terms_total.addcmul_(terms, weight.unsqueeze(1))
            norm_total.addcmul_(norm, weight)

    per_step = torch.cat([terms_total, norm_total.unsqueeze(1)], dim=1) / n_steps.clamp_min(1.0).unsqueeze(1)
    return torch.cat([per_step, n_steps.unsqueeze(1)], dim=1).t()
