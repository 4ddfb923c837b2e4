"""Action distributions over the population's head outputs, written as plain tensor ops.

Discrete: a categorical over logits. Continuous: a diagonal Gaussian with a state-independent,
per-member log-std. Plain ops (rather than `torch.distributions` objects) keep the per-step
overhead low and take an explicit generator, so sampling is reproducible.
"""

from __future__ import annotations

import math

import torch

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def sample(head: torch.Tensor, log_std: torch.Tensor | None, gen: torch.Generator,
           deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw actions and their log-probabilities. `head` [P, B, n]; `log_std` [P, n] or None (discrete)."""
    if log_std is None:
        logp_all = torch.log_softmax(head, dim=-1)
        if deterministic:
            action = head.argmax(dim=-1)
        else:
            # Gumbel-max: argmax(logits + Gumbel noise) is an exact categorical sample, and
            # -log(E) with E ~ Exp(1) is Gumbel noise: argmax(logits - log E).
            e = torch.empty_like(head).exponential_(generator=gen)
            action = (head - e.log_()).argmax(dim=-1)
        return action, logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1)
    if deterministic:
        action = head
    else:
        noise = torch.randn(head.shape, generator=gen, device=head.device, dtype=head.dtype)
        action = head + noise * log_std.exp().unsqueeze(1)
    return action, gaussian_log_prob(head, log_std, action)


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    ls = log_std.unsqueeze(1)
    z = (action - mean) * torch.exp(-ls)
    return (-0.5 * z * z - ls - _LOG_SQRT_2PI).sum(-1)


def log_prob_entropy(head: torch.Tensor, log_std: torch.Tensor | None,
                     action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of stored actions and the entropy, both [P, B]."""
    if log_std is None:
        logp_all = torch.log_softmax(head, dim=-1)
        logp = logp_all.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logp, entropy
    logp = gaussian_log_prob(head, log_std, action)
    entropy = (0.5 + _LOG_SQRT_2PI + log_std).sum(-1, keepdim=True).expand_as(logp)
    return logp, entropy
