"""Action distributions over the population's head outputs, written as plain tensor ops.

Discrete: a categorical over logits. Multi-discrete (`nvec`, e.g. (3, 2) for MultiDiscrete([3, 2])):
independent categoricals, one per action entry, over consecutive blocks of the logits; the joint
log-probability is the sum of theirs. Continuous: a diagonal Gaussian with a state-independent,
per-member log-std. Plain ops (rather than `torch.distributions` objects) keep the per-step
overhead low and take an explicit generator, so sampling is reproducible.

A sample is `choose(head, noise, std)` with noise drawn up front: a rollout draws the noise of all
its steps in one call and takes the log-probabilities of all its actions in one pass afterwards, so
each env step runs only the op or two that pick the action. The head outputs may carry any leading
axes as long as the member axis comes right before the batch axis ([..., P, B, n]).
"""

from __future__ import annotations

import math

import torch

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def draw_noise(shape: tuple[int, ...], discrete: bool, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """Noise for action choices of `shape` [..., n]: Gumbel noise (discrete: argmax(logits + Gumbel)
    is an exact categorical sample; -log E with E ~ Exp(1) is Gumbel) or standard normal."""
    if discrete:
        return torch.empty(shape, device=device).exponential_(generator=gen).log_().neg_()
    return torch.randn(shape, generator=gen, device=device)


def choose(head: torch.Tensor, noise: torch.Tensor | None, std: torch.Tensor | None,
           out: torch.Tensor | None = None, nvec: tuple[int, ...] | None = None) -> torch.Tensor:
    """Actions from head outputs [..., n] and `draw_noise` noise (None: the most likely action).
    `std` [P, 1, n] for Gaussian policies, None for discrete ones; `nvec` for multi-discrete ones
    (actions [..., len(nvec)])."""
    if std is None:
        scores = head if noise is None else head + noise
        if nvec is not None:  # each entry's argmax over its own block (Gumbel: an exact sample per entry)
            return torch.stack([block.argmax(-1) for block in scores.split(nvec, -1)], dim=-1, out=out)
        return torch.argmax(scores, dim=-1, out=out)
    if noise is None:
        return head if out is None else out.copy_(head)
    return torch.addcmul(head, noise, std, out=out)


def log_prob(head: torch.Tensor, log_std: torch.Tensor | None, action: torch.Tensor,
             nvec: tuple[int, ...] | None = None) -> torch.Tensor:
    """Log-probability of `action` under head outputs [..., P, B, n]; `log_std` [P, n] or None;
    `nvec`: multi-discrete (the sum over the action's entries)."""
    if nvec is not None:
        return sum(log_prob(block, None, action[..., i]) for i, block in enumerate(head.split(nvec, -1)))
    if log_std is None:
        return torch.log_softmax(head, dim=-1).gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
    return gaussian_terms(head, log_std, action)[0]


def gaussian_terms(mean: torch.Tensor, log_std: torch.Tensor,
                   action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log-probability, standardised action z = (a - mean) / std, 1 / std) of a diagonal Gaussian;
    the PPO objective's gradient reuses z and 1 / std."""
    ls = log_std.unsqueeze(1)
    inv_std = torch.exp(-ls)
    z = (action - mean) * inv_std
    return (-0.5 * z * z - ls - LOG_SQRT_2PI).sum(-1), z, inv_std


def sample(head: torch.Tensor, log_std: torch.Tensor | None, gen: torch.Generator,
           deterministic: bool = False, nvec: tuple[int, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw actions and their log-probabilities. `head` [P, B, n]; `log_std` [P, n] or None (discrete);
    `nvec`: multi-discrete."""
    std = None if log_std is None else log_std.exp().unsqueeze(1)
    noise = None if deterministic else draw_noise(head.shape, log_std is None, gen, head.device)
    action = choose(head, noise, std, nvec=nvec)
    return action, log_prob(head, log_std, action, nvec)
