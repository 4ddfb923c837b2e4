"""The hand-written gradient of the PPO objective against autograd on the plain formulas."""

from __future__ import annotations

import math

import pytest
import torch

from evorl_cli.ppo_loss import APPROX_KL, Coefficients, Minibatch, ppo_objective


NVEC = (3, 2, 4)  # multi-discrete: independent categoricals over blocks of 3, 2 and 4 logits


def _plain_objective(head, value, log_std, batch: Minibatch, coef: Coefficients, nvec=None):
    """The textbook objective, written the obvious way, for autograd to differentiate."""
    if nvec is not None:  # one torch Categorical per action entry; the joint is their product
        dists = [torch.distributions.Categorical(logits=block) for block in head.split(nvec, -1)]
        logp = sum(d.log_prob(batch.actions[..., i]) for i, d in enumerate(dists))
        entropy = sum(d.entropy() for d in dists)
    elif log_std is None:
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


@pytest.mark.parametrize("kind", ["discrete", "multi-discrete", "continuous"])
@pytest.mark.parametrize("clip_vloss", [False, True], ids=["plain-value", "clipped-value"])
@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
def test_objective_and_gradient_match_autograd(kind, clip_vloss, masked):
    g = torch.Generator().manual_seed(7)
    continuous, nvec = kind == "continuous", NVEC if kind == "multi-discrete" else None
    size, samples = 3, 64
    n = 2 if continuous else sum(NVEC) if nvec else 4
    head = torch.randn(size, samples, n, generator=g, dtype=torch.float64, requires_grad=True)
    value = torch.randn(size, samples, generator=g, dtype=torch.float64, requires_grad=True)
    log_std = (0.3 * torch.randn(size, n, generator=g, dtype=torch.float64)).requires_grad_() if continuous else None
    if continuous:
        actions = torch.randn(size, samples, n, generator=g, dtype=torch.float64)
    elif nvec:
        actions = torch.stack([torch.randint(0, k, (size, samples), generator=g) for k in nvec], dim=-1)
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

    loss, terms = ppo_objective(head, value, log_std, batch, coef, nvec)
    kl = terms[:, APPROX_KL]
    grads = torch.autograd.grad((loss * member_weight).sum(), inputs)
    want_loss, want_kl = _plain_objective(head, value, log_std, batch, coef, nvec)
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


def test_diagnostics_of_a_hand_made_minibatch_equal_hand_computed_values():
    """Two equally likely actions (logp = log 1/2) and old log-probabilities that make the ratios
    2, 1, 1/2 and 1.1: with clip 0.2 two of four leave the clip range, and the approximate KL is
    the mean of (r - 1) - log r, written out here by hand."""
    from evorl_cli.ppo_loss import TERMS

    head = torch.zeros(1, 4, 2, dtype=torch.float64, requires_grad=True)
    ratios = torch.tensor([[2.0, 1.0, 0.5, 1.1]], dtype=torch.float64)
    old_logp = math.log(0.5) - ratios.log()
    batch = Minibatch(torch.zeros(1, 4, dtype=torch.long), old_logp, torch.ones(1, 4, dtype=torch.float64),
                      torch.tensor([[1.0, 2.0, 0.0, 0.0]], dtype=torch.float64), None, None)
    coef = Coefficients(torch.full((1, 1), 0.2, dtype=torch.float64), torch.zeros(1, dtype=torch.float64),
                        torch.ones(1, dtype=torch.float64))
    value = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
    _, terms = ppo_objective(head, value, None, batch, coef)
    got = dict(zip(TERMS, terms[0].tolist()))
    kl = ((2 - 1 - math.log(2)) + 0.0 + (0.5 - 1 - math.log(0.5)) + (1.1 - 1 - math.log(1.1))) / 4
    assert got["clip_fraction"] == pytest.approx(0.5)
    assert got["approx_kl"] == pytest.approx(kl)
    assert got["policy_loss"] == pytest.approx((-1.2 - 1.0 - 0.5 - 1.1) / 4)  # max(-A r, -A clip(r)), A = 1
    assert got["value_loss"] == pytest.approx(0.5 * (1 + 4) / 4)
    assert got["entropy"] == pytest.approx(math.log(2))

    # With sample weights only the weighted samples count: the first and the last, half each.
    batch.sample_weight = torch.tensor([[0.5, 0.0, 0.0, 0.5]], dtype=torch.float64)
    _, terms = ppo_objective(head, value, None, batch, coef)
    got = dict(zip(TERMS, terms[0].tolist()))
    assert got["clip_fraction"] == pytest.approx(0.5)
    assert got["approx_kl"] == pytest.approx(((1 - math.log(2)) + (0.1 - math.log(1.1))) / 2)
