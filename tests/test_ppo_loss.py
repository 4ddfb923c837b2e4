"""The hand-written gradient of the PPO objective against autograd on the plain formulas."""

from __future__ import annotations

import math

import pytest
import torch

from evorl_cli.ppo_loss import Coefficients, Minibatch, ppo_objective


def _plain_objective(head, value, log_std, batch: Minibatch, coef: Coefficients):
    """The textbook objective, written the obvious way, for autograd to differentiate."""
    if log_std is None:
        dist = torch.distributions.Categorical(logits=head)
        logp, entropy = dist.log_prob(batch.actions), dist.entropy()
    else:
        dist = torch.distributions.Normal(head, log_std.exp().unsqueeze(1).expand_as(head))
        logp, entropy = dist.log_prob(batch.actions).sum(-1), dist.entropy().sum(-1)
    logratio = logp - batch.old_logp
    ratio = logratio.exp()
    adv = batch.advantages
    policy = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - coef.clip, 1 + coef.clip))
    value_loss = (value - batch.returns) ** 2
    if coef.clip_vloss:
        clipped = batch.old_values + torch.clamp(value - batch.old_values, -coef.clip, coef.clip)
        value_loss = torch.max(value_loss, (clipped - batch.returns) ** 2)
    w = batch.sample_weight
    mean = (lambda x: x.mean(1)) if w is None else (lambda x: (x * w).sum(1))  # noqa: E731
    loss = mean(policy) - coef.ent * mean(entropy) + coef.vf * mean(0.5 * value_loss)
    return loss, mean((ratio - 1) - logratio).detach()


@pytest.mark.parametrize("continuous", [False, True], ids=["discrete", "continuous"])
@pytest.mark.parametrize("clip_vloss", [False, True], ids=["plain-value", "clipped-value"])
@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
def test_objective_and_gradient_match_autograd(continuous, clip_vloss, masked):
    g = torch.Generator().manual_seed(7)
    size, samples, n = 3, 64, 2 if continuous else 4
    head = torch.randn(size, samples, n, generator=g, dtype=torch.float64, requires_grad=True)
    value = torch.randn(size, samples, generator=g, dtype=torch.float64, requires_grad=True)
    log_std = (0.3 * torch.randn(size, n, generator=g, dtype=torch.float64)).requires_grad_() if continuous else None
    if continuous:
        actions = torch.randn(size, samples, n, generator=g, dtype=torch.float64)
    else:
        actions = torch.randint(0, n, (size, samples), generator=g)
    # Old log-probabilities far from the new ones put many ratios outside the clip range, both ways.
    old_logp = torch.randn(size, samples, generator=g, dtype=torch.float64) * 0.5 - math.log(n)
    weight = None
    if masked:  # member 1 counts half its samples, member 2 none but the first
        mask = torch.ones(size, samples, dtype=torch.float64)
        mask[1, samples // 2:] = 0.0
        mask[2, 1:] = 0.0
        weight = mask / mask.sum(1, keepdim=True)
    batch = Minibatch(actions, old_logp, torch.randn(size, samples, generator=g, dtype=torch.float64),
                      torch.randn(size, samples, generator=g, dtype=torch.float64),
                      torch.randn(size, samples, generator=g, dtype=torch.float64), weight)
    coef = Coefficients(torch.tensor([[0.2], [0.1], [0.3]], dtype=torch.float64),
                        torch.tensor([0.0, 0.01, 0.05], dtype=torch.float64),
                        torch.tensor([0.5, 1.0, 0.25], dtype=torch.float64), clip_vloss)
    member_weight = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)  # as the active mask scales them
    inputs = [head, value] + ([log_std] if continuous else [])

    loss, kl = ppo_objective(head, value, log_std, batch, coef)
    grads = torch.autograd.grad((loss * member_weight).sum(), inputs)
    want_loss, want_kl = _plain_objective(head, value, log_std, batch, coef)
    want_grads = torch.autograd.grad((want_loss * member_weight).sum(), inputs)

    torch.testing.assert_close(loss, want_loss)
    torch.testing.assert_close(kl, want_kl)
    for got, want, name in zip(grads, want_grads, ["head", "value", "log_std"]):
        torch.testing.assert_close(got, want, msg=f"d loss / d {name}")
    assert (grads[0] != 0).any() and (grads[1] != 0).any()


def test_clipped_samples_pass_no_policy_gradient():
    """Where the ratio left the clip range in the advantage's favour, that sample's policy gradient
    is exactly zero; elsewhere it is not."""
    size, samples = 1, 2
    head = torch.zeros(size, samples, 2, requires_grad=True)
    actions = torch.zeros(size, samples, dtype=torch.long)
    # logp = log 0.5 now; old logp makes ratio 2 (beyond 1.2) for sample 0 and 1 for sample 1
    old_logp = torch.log(torch.tensor([[0.25, 0.5]]))
    batch = Minibatch(actions, old_logp, torch.ones(size, samples), torch.zeros(size, samples), None, None)
    coef = Coefficients(torch.full((1, 1), 0.2), torch.zeros(1), torch.zeros(1))
    loss, _ = ppo_objective(head, torch.zeros(size, samples, requires_grad=True), None, batch, coef)
    (grad,) = torch.autograd.grad(loss.sum(), [head])
    assert torch.equal(grad[0, 0], torch.zeros(2))
    assert (grad[0, 1] != 0).all()
