"""Width buckets: members of very different widths run as separate batches, each cut to its own width,
and compute (and learn) what the same members compute in one batch padded to the widest member."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import CONTINUOUS, DISCRETE, NarrowNet, tiny_config, varied_population
from omegaconf import OmegaConf
from test_ppo import _rollout

from evorl_cli import checkpoint
from evorl_cli.checkpoint import population_payload, restore_population
from evorl_cli.nets.arch import member_buckets
from evorl_cli.ppo import ppo_update

WIDTHS = ([16, 16], [64, 64], [16], [48, 64], [8, 12])
ACTS = ("tanh", "relu", "elu", "tanh", "relu")


def _pair(action=DISCRETE, **kw):
    """The same members twice: in width buckets, and in one padded batch."""
    bucketed = varied_population(action, widths=WIDTHS, activations=ACTS, width_buckets=3, **kw)
    padded = varied_population(action, widths=WIDTHS, activations=ACTS, width_buckets=1, **kw)
    assert torch.equal(bucketed.params, padded.params)
    return bucketed, padded


def _buckets(pop) -> list[list[int]]:
    """Member indices of each bucket (actor rows, which come first)."""
    return [[m for m in b.members.tolist() if m < pop.size] for b in pop.masks.buckets]


def _rule(widths: list[list[int]], max_buckets: int, in_dim: int = 6) -> list[list[int]]:
    """member_buckets on rows of hidden widths (ragged rows padded with 0: layers off)."""
    depth = max(len(w) for w in widths)
    table = np.array([w + [0] * (depth - len(w)) for w in widths])
    return [b.tolist() for b in member_buckets(table, in_dim, max_buckets)]


def test_bucket_rule():
    assert _rule([[64], [256], [64], [256]], 2) == [[0, 2], [1, 3]]
    assert _rule([[64], [256], [64], [256]], 1) == [[0, 1, 2, 3]]
    assert _rule([[64], [64]], 4) == [[0, 1]]  # one shape: one batch
    # Three shapes, room for two: the cheapest merge (16 with 64: the 16-unit member pays for 48
    # more units; 64 with 512 would cost 448) goes first.
    assert _rule([[512], [16], [64]], 2) == [[1, 2], [0]]
    assert _rule([[512], [16], [64]], 3) == [[1], [2], [0]]
    # Depth splits too: one member a layer deeper would make the other three run that layer.
    assert _rule([[64, 64], [64, 64, 64], [64, 64], [64, 64]], 2) == [[0, 2, 3], [1]]
    # 96 units beside 64 cost the 64s 2.25x their hidden arithmetic: a bucket of their own.
    assert _rule([[64, 64]] * 3 + [[96, 96]], 2) == [[0, 1, 2], [3]]
    # A difference that saves under MIN_SAVING of the arithmetic is not worth a bucket's own ops.
    assert _rule([[64, 64]] * 10 + [[65, 65]], 4) == [list(range(11))]


@pytest.mark.parametrize("action", [DISCRETE, CONTINUOUS], ids=["discrete", "continuous"])
@pytest.mark.parametrize("share_encoder", [False, True], ids=["separate", "shared"])
def test_bucketed_members_act_like_the_padded_batch_and_their_narrow_nets(action, share_encoder):
    bucketed, padded = _pair(action, share_encoder=share_encoder)
    assert _buckets(bucketed) == [[0, 2, 4], [1, 3]] and padded.masks.buckets is None
    assert [b.width for b in bucketed.masks.buckets] == [16, 64]
    assert [b.depth for b in bucketed.masks.buckets] == [2, 2]
    obs = torch.randn(bucketed.size, 6, bucketed.net.obs_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # the rollout path: prepared bucket blocks
        got, want = bucketed.forward_normalized(obs), padded.forward_normalized(obs)
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], want[1], atol=1e-5, rtol=1e-5)
    for p in range(bucketed.size):
        head, value = NarrowNet(bucketed, p).forward(obs[p])
        torch.testing.assert_close(got[0][p], head, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got[1][p], value, atol=1e-5, rtol=1e-5)
    # The training path (autograd through the blocks) gives the same outputs and gradients.
    seq = obs.unsqueeze(2)
    grads = []
    for pop in (bucketed, padded):
        head, value = pop.forward_sequence(seq, None, None)
        grads.append(pop.flat_grad((head.square().sum() + value.sum())))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("action", [DISCRETE, CONTINUOUS], ids=["discrete", "continuous"])
def test_bucketed_update_equals_the_padded_update(action):
    bucketed, padded = _pair(action)
    bucketed.hp["batch_size"][:] = [16, 32, 8, 32, 16]  # members with their own minibatches too
    padded.hp["batch_size"][:] = bucketed.hp["batch_size"]
    ro = _rollout(padded, steps=8, envs=4, seed=3)
    cfg = tiny_config().algo
    for _ in range(2):
        stats_b = ppo_update(bucketed, ro, cfg, torch.Generator().manual_seed(7))
        stats_p = ppo_update(padded, ro, cfg, torch.Generator().manual_seed(7))
    torch.testing.assert_close(bucketed.params, padded.params, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(bucketed.adam.exp_avg, padded.adam.exp_avg, atol=1e-6, rtol=1e-3)
    torch.testing.assert_close(stats_b.policy_loss, stats_p.policy_loss, atol=1e-5, rtol=1e-4)
    # Units a member does not use stay exactly zero (the encoders' invariant) in the bucketed run.
    unused = (bucketed.params == 0) != (padded.params == 0)
    assert not unused.any()


def test_selection_moves_members_across_buckets():
    bucketed, padded = _pair()
    obs = torch.randn(bucketed.size, 5, bucketed.net.obs_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = bucketed.forward_normalized(obs)[0]
    idx = np.array([1, 1, 0, 3, 3])  # a wide member into a narrow bucket's slot and the other way round
    for pop in (bucketed, padded):
        pop.gather(idx)
    assert _buckets(bucketed) == [[2], [0, 1, 3, 4]]
    with torch.no_grad():
        after, want = bucketed.forward_normalized(obs)[0], padded.forward_normalized(obs)[0]
        torch.testing.assert_close(after, want, atol=1e-5, rtol=1e-5)
        # Member p now computes what member idx[p] computed before, on the same observations.
        shuffled = bucketed.forward_normalized(obs[idx])[0]
    torch.testing.assert_close(shuffled, before[idx], atol=1e-5, rtol=1e-5)
    # Everyone the same width again: one padded batch, the common case.
    bucketed.gather(np.array([1, 1, 1, 1, 1]))
    assert bucketed.masks.buckets is None


def test_bucketed_population_round_trips_through_a_checkpoint(tmp_path):
    bucketed, _ = _pair(CONTINUOUS)
    config = tiny_config(**{"net.width_buckets": 3, "net.max_width": 96,
                             "net.max_layers": 3, "population.size": 5})
    tensors, meta = population_payload(bucketed)
    path = tmp_path / "pop.safetensors"
    doc = OmegaConf.to_container(OmegaConf.structured(config))
    checkpoint.save(path, tensors, {**meta, "kind": "population", "config": doc})
    restored = restore_population(checkpoint.load(path), checkpoint.load(path).config, torch.device("cpu"))
    assert _buckets(restored) == _buckets(bucketed)
    obs = torch.randn(5, 7, bucketed.net.obs_dim, generator=torch.Generator().manual_seed(4))
    a = bucketed.act(obs, torch.Generator().manual_seed(9))
    b = restored.act(obs, torch.Generator().manual_seed(9))
    assert torch.equal(a.action, b.action) and torch.equal(a.logp, b.logp) and torch.equal(a.value, b.value)
