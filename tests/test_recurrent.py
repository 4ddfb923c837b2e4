"""Recurrent and convolutional members against independent oracles: torch.nn cells, separate
sequences for state resets, stock PyTorch PPO for the batched update, per-member conv2d."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import CONTINUOUS, DISCRETE, NarrowNet, tiny_config, varied_population
from test_ppo import VARIED_HPS, assert_batched_equals_alone

from evorl_cli.config import MutationConfig, NetConfig, PPOConfig
from evorl_cli.evolve.mutate import Mutator
from evorl_cli.hparams import RolloutCap
from evorl_cli.nets.policy import ActionSpec
from evorl_cli.population import Population

KINDS = ["lstm", "gru"]


def _sequences(pop, batch=5, length=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(pop.size, batch, length, pop.net.obs_dim, generator=g)
    state = torch.randn(pop.size, batch, pop.net.state_size, generator=g) * 0.5
    starts = (torch.rand(pop.size, batch, length, generator=g) < 0.2).float()
    return obs, state * _active_state(pop), starts


def _active_state(pop):
    """A state mask that is zero on the units each member does not use (as real states are)."""
    mask = torch.zeros(pop.size, 1, pop.net.state_size)
    cap = pop.net.cap.hidden
    per = 2 if pop.net.net_cfg.recurrent == "lstm" else 1
    for p in range(pop.size):
        h = int(pop.arch.hidden[p])
        for block in range(pop.net.state_size // cap):
            mask[p, 0, block * cap:block * cap + h] = 1.0
    assert pop.net.state_size % (cap * per) == 0
    return mask


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("share_encoder", [False, True], ids=["separate", "shared"])
def test_recurrent_members_equal_torch_cells(kind, share_encoder):
    pop = varied_population(DISCRETE, recurrent=kind, share_encoder=share_encoder, rnn_layers=2)
    obs, state, starts = _sequences(pop)
    with torch.no_grad():
        head, value = pop.forward_sequence(obs, state, starts)
        for p in range(pop.size):
            want_head, want_value = NarrowNet(pop, p).forward_sequence(obs[p], state[p], starts[p])
            assert torch.allclose(head[p], want_head, atol=1e-5), p
            assert torch.allclose(value[p], want_value, atol=1e-5), p


@pytest.mark.parametrize("kind", KINDS)
def test_two_episodes_in_one_sequence_equal_two_sequences(kind):
    pop = varied_population(CONTINUOUS, recurrent=kind)
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(pop.size, 2, 10, pop.net.obs_dim, generator=g)
    state = torch.randn(pop.size, 2, pop.net.state_size, generator=g) * _active_state(pop)
    starts = torch.zeros(pop.size, 2, 10)
    starts[:, :, 6] = 1.0  # the second episode begins at step 6
    with torch.no_grad():
        joined_head, joined_value = pop.forward_sequence(obs, state, starts)
        first_head, first_value = pop.forward_sequence(obs[:, :, :6], state, starts[:, :, :6])
        second_head, second_value = pop.forward_sequence(obs[:, :, 6:], torch.zeros_like(state),
                                                         torch.zeros(pop.size, 2, 4))
    # Equal up to float rounding: the matrix products run over 10 and 6 steps' rows, and some CPUs'
    # kernels round a row differently with the number of rows.
    assert torch.allclose(joined_head[:, :, :6], first_head, atol=1e-7)
    assert torch.allclose(joined_value[:, :, :6], first_value, atol=1e-7)
    assert torch.allclose(joined_head[:, :, 6:], second_head, atol=1e-7)
    assert torch.allclose(joined_value[:, :, 6:], second_value, atol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("action", [DISCRETE, CONTINUOUS], ids=["discrete", "continuous"])
@pytest.mark.parametrize("share_encoder", [False, True], ids=["separate", "shared"])
def test_stepping_equals_replaying_the_sequence(kind, action, share_encoder):
    """What the rollout computes step by step (prepared weights, no autograd) is what the update
    replays."""
    pop = varied_population(action, recurrent=kind, rnn_layers=2, share_encoder=share_encoder)
    obs, state, starts = _sequences(pop, length=6)
    with torch.no_grad():
        head, value = pop.forward_sequence(obs, state, starts)
        s = state
        for t in range(6):
            s = s * (1 - starts[:, :, t, None])
            step_head, step_value, s = pop.forward_normalized(obs[:, :, t], s)
            assert torch.allclose(step_head, head[:, :, t], atol=1e-6)
            assert torch.allclose(step_value, value[:, :, t], atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_hidden_growth_is_gate_aware_and_keeps_outputs(kind):
    pop = varied_population(DISCRETE, recurrent=kind, rnn_layers=2)
    obs, state, starts = _sequences(pop)
    state = state * 0  # episodes start from zero state here
    with torch.no_grad():
        before = pop.forward_sequence(obs, state, starts)
    cfg = MutationConfig(no_mutation=0.0, parameters=0.0, architecture=1.0, activation=0.0, rl_hp=0.0,
                         remove_prob=0.0)  # growth only: it must keep the function
    mutator = Mutator(cfg, NetConfig(recurrent=kind, max_hidden_size=128), {}, RolloutCap(4, 32),
                      np.random.default_rng(0), torch.Generator().manual_seed(0))
    hidden_before = pop.arch.hidden.copy()
    notes = mutator.mutate(pop, protected=set())
    assert all(n.startswith("hidden") for n in notes) and (pop.arch.hidden > hidden_before).all()
    assert pop.net.cap.hidden == int(pop.arch.hidden.max())
    zero_state = torch.zeros(pop.size, obs.shape[1], pop.net.state_size)
    with torch.no_grad():
        after = pop.forward_sequence(obs, zero_state, starts)
    assert torch.allclose(before[0], after[0], atol=1e-6) and torch.allclose(before[1], after[1], atol=1e-6)
    for p in range(pop.size):  # the grown member is still exactly its narrow torch network
        want_head, _ = NarrowNet(pop, p).forward_sequence(obs[p], zero_state[p], starts[p])
        assert torch.allclose(after[0][p], want_head, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_hidden_removal_keeps_shapes_and_adam_state_consistent(kind):
    """Shrinking the recurrent state (remove_prob=1): the layout shrinks to the widest state left,
    Adam's moments follow their parameters (those of the entries the surgery rewrote are zero, the
    rest carry on), unused units stay exactly zero, and each member is its narrow torch network."""
    from evorl_cli.nets.layout import relayout
    from evorl_cli.ppo import ppo_update
    from test_ppo import _rollout

    pop = varied_population(DISCRETE, recurrent=kind, rnn_layers=2, hidden=(32, 24, 16))
    ppo_update(pop, _rollout(pop, steps=8, envs=4, seed=1), PPOConfig(max_seq_len=4), torch.Generator().manual_seed(0))
    assert (pop.adam.exp_avg != 0).any()
    params_before, layout_before = pop.params.detach().clone(), pop.net.layout
    moments_before = pop.adam.exp_avg.clone(), pop.adam.exp_avg_sq.clone()
    cfg = MutationConfig(no_mutation=0.0, parameters=0.0, architecture=1.0, activation=0.0, rl_hp=0.0,
                         remove_prob=1.0, node_choices=[16])
    mutator = Mutator(cfg, NetConfig(recurrent=kind, min_width=8), {}, RolloutCap(4, 32),
                      np.random.default_rng(0), torch.Generator().manual_seed(0))
    notes = mutator.mutate(pop, protected={2})
    assert notes == ["hidden 32->16", "hidden 24->12", "elite"]  # a step of 16 keeps at least half of 24
    assert pop.arch.hidden.tolist() == [16, 12, 16] and pop.net.cap.hidden == 16  # the layout shrank
    size = pop.net.num_params
    assert pop.params.shape == pop.adam.exp_avg.shape == pop.adam.exp_avg_sq.shape == (3, size)
    assert pop.net.state_size == 2 * 2 * 16 * (2 if kind == "lstm" else 1)  # towers x layers x units (x c)

    params = relayout(params_before, layout_before, pop.net.layout)
    for moments, before in zip((pop.adam.exp_avg, pop.adam.exp_avg_sq), moments_before):
        carried = relayout(before, layout_before, pop.net.layout)
        kept = pop.params.detach() == params  # entries the surgery left as they were
        assert torch.equal(moments[kept], carried[kept])
        assert (moments[~kept] == 0).all()
        assert torch.equal(moments[2], carried[2])  # the elite is untouched
    assert (~(pop.params.detach() == params))[:2].any()  # the surgery did rewrite entries
    for p in range(pop.size):  # units a member does not use are zero: it is exactly its narrow network
        assert int((pop.params[p] != 0).sum()) <= sum(t.numel() for t in NarrowNet(pop, p).parameters())
    obs, _, starts = _sequences(pop)
    zero_state = torch.zeros(pop.size, obs.shape[1], pop.net.state_size)
    with torch.no_grad():
        head, value = pop.forward_sequence(obs, zero_state, starts)
    for p in range(pop.size):
        want_head, want_value = NarrowNet(pop, p).forward_sequence(obs[p], zero_state[p], starts[p])
        assert torch.allclose(head[p], want_head, atol=1e-5) and torch.allclose(value[p], want_value, atol=1e-5)


@pytest.mark.parametrize("kind, bptt", [("lstm", "chunked"), ("gru", "chunked"), ("lstm", "overlap"),
                                        ("lstm", "whole")])
def test_batched_recurrent_update_equals_each_member_alone(kind, bptt):
    pop = varied_population(CONTINUOUS if kind == "gru" else DISCRETE, recurrent=kind)
    # batch_size counts steps: 2, 3, 4 sequences of 4 steps (whole: 1, 1, 2 rollouts of 8)
    hps = dict(VARIED_HPS, batch_size=[8, 12, 16])
    assert_batched_equals_alone(pop, PPOConfig(bptt=bptt, max_seq_len=4), hps, steps=8, envs=4)


def test_grouped_convolution_equals_each_members_conv():
    config = tiny_config(**{"population.size": 3, "net.cnn": {"channels": [4, 6], "kernels": [3, 2],
                                                             "strides": [1, 2]}, "net.hidden_sizes": [16]})
    pop = Population.create(config, 2 * 7 * 7, ActionSpec(True, 2), torch.device("cpu"),
                            torch.Generator().manual_seed(0), image=(2, 7, 7))
    x = torch.randn(3, 5, 2 * 7 * 7)
    branch = pop.net.branches["actor"]
    with torch.no_grad():
        got = branch.cnn.forward(pop.views, x)
        for p in range(3):
            h = x[p].view(5, 2, 7, 7)
            for layer, (_, _, _, stride) in enumerate(branch.cnn.convs):
                w = pop.views[f"actor.cnn.w{layer}"][p]
                b = pop.views[f"actor.cnn.b{layer}"][p]
                h = F.relu(F.conv2d(h, w, b, stride=stride))
            assert torch.allclose(got[p], h.reshape(5, -1), atol=1e-6)
    assert branch.cnn.out_dim == 6 * 2 * 2


def test_recurrent_minibatches_are_whole_sequences():
    from evorl_cli.config import sequence_length
    from evorl_cli.errors import EvorlError

    c = tiny_config(**{"net.recurrent": "lstm", "algo.rollout_steps": 32, "algo.max_seq_len": 8,
                       "algo.batch_size": 16, "env.num_envs": 2})
    assert sequence_length(c) == 8  # a minibatch of 16 steps is 2 whole sequences
    with pytest.raises(EvorlError, match="one BPTT sequence"):
        tiny_config(**{"net.recurrent": "lstm", "algo.rollout_steps": 32, "algo.max_seq_len": 8,
                       "algo.batch_size": 4, "env.num_envs": 2})
    with pytest.raises(EvorlError, match="max_seq_len"):
        tiny_config(**{"net.recurrent": "lstm", "algo.rollout_steps": 30, "algo.max_seq_len": 8})


def test_cnn_population_learns_the_image_task(tmp_path):
    """evorl/PixelQuadrant-v0 from pixels: guessing scores 4 of 16; a CNN population gets to 15."""
    from hydra import compose, initialize_config_dir
    from rich.console import Console

    from evorl_cli.cli import CONF_DIR
    from evorl_cli.config import build_train_config
    from evorl_cli.train import train

    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose("train", overrides=["env=pixel_quadrant", "net=cnn", "progress=false", "max_steps=60000"])
    result = train(build_train_config(cfg), tmp_path, Console(quiet=True))
    assert result.reached_target and result.best_score >= 15, result
