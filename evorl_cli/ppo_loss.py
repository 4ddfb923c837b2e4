"""The clipped-surrogate PPO objective of every member, with its gradient written out.

Through autograd, the objective of one minibatch records some forty small ops (log-softmax, ratio,
clip, max, the means) and replays as many backward nodes; on the [P, B] tensors of a minibatch
each of them costs more in dispatch than in arithmetic, together about a third of an update. The
gradient with respect to the network's outputs has a closed form, so `ppo_objective` computes it
in the same pass as the loss, and autograd only scales it by each member's weight on the way to
the parameters. The values and gradients are those of the textbook objective (tests compare them
with autograd on the plain formulas):

    ratio = exp(logp - old_logp)
    loss  = mean(max(-A ratio, -A clip(ratio, 1 - c, 1 + c))) - ent_coef mean(H) + vf_coef mean(0.5 (V - R)^2)

with `max((V - R)^2, (V_clipped - R)^2)` in the value term when value clipping is on.

The same pass also measures the learner's diagnostics (`TERMS`), per member, without a gradient:
they come from tensors the objective already holds, so they cost a few reductions on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evorl_cli.nets.distributions import LOG_SQRT_2PI, gaussian_terms


# What `ppo_objective` measures besides the loss, per member: the columns of its `terms` [P, 5].
TERMS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")
APPROX_KL = TERMS.index("approx_kl")


@dataclass
class Minibatch:
    """What the objective compares the network's outputs with, all [P, M] (actions [P, M, n]
    when continuous). `sample_weight` [P, M] weighs each sample in its member's mean (weights over
    the member's counted samples, summing to 1), or is None for plain means over M."""

    actions: torch.Tensor
    old_logp: torch.Tensor
    advantages: torch.Tensor  # already normalised if normalisation is on
    returns: torch.Tensor
    old_values: torch.Tensor | None  # needed only for value clipping
    sample_weight: torch.Tensor | None


@dataclass
class Coefficients:
    """Per-member coefficients of the objective: `clip` [P, 1], `ent` and `vf` [P]."""

    clip: torch.Tensor
    ent: torch.Tensor
    vf: torch.Tensor
    clip_vloss: bool = False


def ppo_objective(head: torch.Tensor, value: torch.Tensor, log_std: torch.Tensor | None,
                  batch: Minibatch, coef: Coefficients,
                  nvec: tuple[int, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member loss [P] (differentiable in `head` [P, M, n], `value` [P, M] and `log_std` [P, n]
    for Gaussian policies) and, without a gradient, the `terms` [P, len(TERMS)]: each member's mean
    policy loss, value loss (0.5 squared error, clipped as the loss is), entropy, approximate KL of
    the new policy from the old (mean of (r - 1) - log r) and clip fraction (share of samples with
    |r - 1| > clip). `nvec`: multi-discrete actions [P, M, len(nvec)], one categorical per entry."""
    return _Objective.apply(head, value, log_std, batch, coef, nvec)


def weighted_mean(x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Each member's mean of `x` [P, M] under `Minibatch.sample_weight` (None: the plain mean)."""
    return x.mean(1) if weight is None else (x * weight).sum(1)


class _Objective(torch.autograd.Function):
    @staticmethod
    def forward(ctx, head, value, log_std, batch: Minibatch, coef: Coefficients, nvec):
        weight = batch.sample_weight
        if nvec is not None:
            logp, entropy, head_grad = _independent_categoricals(head, batch.actions, nvec)
        elif log_std is None:
            logp, entropy, head_grad = _categorical(head, batch.actions)
        else:
            logp, entropy, head_grad = _gaussian(head, log_std, batch.actions)
        logratio = logp - batch.old_logp
        ratio = logratio.exp()
        adv = batch.advantages
        unclipped = -adv * ratio
        clipped = -adv * ratio.clamp(1 - coef.clip, 1 + coef.clip)
        policy_loss = torch.maximum(unclipped, clipped)
        # d policy_loss / d logp: the clipped branch is flat where it wins, so only the samples
        # where the unclipped branch is the max pass a gradient (-A * ratio, times d ratio/d logp).
        dlogp = unclipped * (unclipped >= clipped)

        error = value - batch.returns
        if coef.clip_vloss:
            change = value - batch.old_values
            moved = batch.old_values + change.clamp(-coef.clip, coef.clip) - batch.returns
            value_loss = 0.5 * torch.maximum(error.square(), moved.square())
            # d value_loss / d value: from whichever branch is larger; the clipped one moves with the
            # value only inside the clip range.
            error = torch.where(error.square() >= moved.square(), error, moved * (change.abs() <= coef.clip))
        else:
            value_loss = 0.5 * error.square()

        ent, vf = coef.ent.view(-1, 1), coef.vf.view(-1, 1)
        loss = weighted_mean(policy_loss + vf * value_loss - ent * entropy, weight)
        scale = (1.0 / head.shape[1]) if weight is None else weight  # d mean / d sample
        grads = head_grad(dlogp * scale, (ent * scale).expand_as(logp))
        ctx.save_for_backward(*grads, vf * error * scale)
        ratio_change = ratio - 1
        clipped_out = (ratio_change.abs() > coef.clip).to(ratio.dtype)
        per_sample = torch.stack((policy_loss, value_loss, entropy, ratio_change - logratio, clipped_out), dim=1)
        terms = per_sample.mean(2) if weight is None else (per_sample * weight.unsqueeze(1)).sum(2)  # one reduction
        ctx.mark_non_differentiable(terms)
        return loss, terms

    @staticmethod
    def backward(ctx, grad_loss, _grad_terms):
        head_grad, log_std_grad, value_grad = ctx.saved_tensors
        g = grad_loss.view(-1, 1)
        return (head_grad * g.unsqueeze(-1), value_grad * g,
                None if log_std_grad is None else log_std_grad * g, None, None, None)


def _categorical(logits: torch.Tensor, actions: torch.Tensor):
    """log pi(a), entropy H, and the map (dL/dlogp, entropy weight) -> (dL/dlogits, None)."""
    log_pi = torch.log_softmax(logits, dim=-1)
    pi = log_pi.exp()
    index = actions.long().unsqueeze(-1)
    logp = log_pi.gather(-1, index).squeeze(-1)
    entropy = -(pi * log_pi).sum(-1)

    def head_grad(dlogp: torch.Tensor, entropy_weight: torch.Tensor):
        # d logp / d logits = onehot(a) - pi;  d H / d logits = -pi * (log pi + H), and the loss
        # holds -entropy_weight * H.
        grad = pi * (entropy_weight.unsqueeze(-1) * (log_pi + entropy.unsqueeze(-1)) - dlogp.unsqueeze(-1))
        return grad.scatter_add_(-1, index, dlogp.unsqueeze(-1)), None

    return logp, entropy, head_grad


def _independent_categoricals(logits: torch.Tensor, actions: torch.Tensor, nvec: tuple[int, ...]):
    """`_categorical` of a product of independent categoricals, one per block of `nvec` logits:
    log pi(a) and H are the sums of the blocks'. A block's logits reach the loss only through its
    own log-probability and entropy, and d logp / d logp_i = d H / d H_i = 1, so each block's
    gradient is its own categorical's, given the same (dL/dlogp, entropy weight)."""
    blocks = [_categorical(block, actions[..., i]) for i, block in enumerate(logits.split(nvec, -1))]
    logp = sum(b[0] for b in blocks)
    entropy = sum(b[1] for b in blocks)

    def head_grad(dlogp: torch.Tensor, entropy_weight: torch.Tensor):
        return torch.cat([b[2](dlogp, entropy_weight)[0] for b in blocks], dim=-1), None

    return logp, entropy, head_grad


def _gaussian(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor):
    """log pi(a), entropy H of a diagonal Gaussian with state-independent log-std, and the map
    (dL/dlogp, entropy weight) -> (dL/dmean, dL/dlog_std)."""
    logp, z, inv_std = gaussian_terms(mean, log_std, actions)
    entropy = (0.5 + LOG_SQRT_2PI + log_std).sum(-1, keepdim=True).expand_as(logp)

    def head_grad(dlogp: torch.Tensor, entropy_weight: torch.Tensor):
        # d logp / d mean = z / std;  d logp / d log_std = z^2 - 1;  d H / d log_std = 1, and the
        # loss holds -entropy_weight * H.
        d = dlogp.unsqueeze(-1)
        mean_grad = d * z * inv_std
        log_std_grad = (d * (z * z - 1)).sum(1) - entropy_weight.sum(1, keepdim=True)
        return mean_grad, log_std_grad

    return logp, entropy, head_grad
