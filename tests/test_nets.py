"""The padded, masked population network computes exactly what each member's narrow network computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import CONTINUOUS, DISCRETE, NarrowNet, varied_population

from evorl_cli.evolve import architecture as surgery
from evorl_cli.nets.layout import ParamLayout
from evorl_cli.nets.policy import Capacity


def _outputs(pop, obs):
    with torch.no_grad():
        return pop.forward_normalized(obs.expand(pop.size, -1, -1))[:2]


@pytest.mark.parametrize("action", [DISCRETE, CONTINUOUS], ids=["discrete", "continuous"])
@pytest.mark.parametrize("share_encoder", [False, True], ids=["separate", "shared"])
@pytest.mark.parametrize("init", ["orthogonal", "uniform"])
def test_masked_members_equal_their_narrow_networks(action, share_encoder, init):
    pop = varied_population(action, share_encoder=share_encoder, init=init)
    obs = torch.randn(1, 7, pop.net.obs_dim)
    head, value = _outputs(pop, obs)
    for p in range(pop.size):
        want_head, want_value = NarrowNet(pop, p).forward(obs[0])
        assert torch.allclose(head[p], want_head, atol=1e-5)
        assert torch.allclose(value[p], want_value, atol=1e-5)


@pytest.mark.parametrize("init", ["orthogonal", "uniform"])
def test_growing_units_keeps_outputs_and_layer_changes_reach_the_batch(init):
    pop = varied_population(DISCRETE, init=init)
    obs = torch.randn(1, 5, pop.net.obs_dim)
    head0, value0 = _outputs(pop, obs)
    pop.set_capacity(Capacity(96, 3))  # re-laying the parameters out for more room changes nothing
    assert pop.params.shape[1] > pop.net.resized(Capacity(64, 2)).num_params
    head_room, value_room = _outputs(pop, obs)
    assert torch.equal(head0, head_room) and torch.equal(value0, value_room)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in range(pop.size):
            last = int(pop.arch.n_layers[p]) - 1
            for layer in range(last + 1):
                new = int(pop.arch.widths[p, layer]) + 16
                surgery.grow_units(pop.net, pop.params[p], pop.arch, p, layer, new, gen)
    pop.refresh_masks()
    head1, value1 = _outputs(pop, obs)
    assert torch.allclose(head0, head1, atol=1e-6) and torch.allclose(value0, value1, atol=1e-6)
    assert pop.arch.widths[0, 0] == 80  # the batch really got wider

    # Adding a layer changes the function, and the batch then equals the narrow deeper network.
    with torch.no_grad():
        surgery.add_layer(pop.net, pop.params[2], pop.arch, 2, gen)
    assert pop.arch.widths[2, 1] == pop.arch.widths[2, 0]  # as wide as the layer before
    pop.refresh_masks()
    head2, _ = _outputs(pop, obs)
    assert not torch.allclose(head2[2], head1[2])
    assert torch.allclose(head2[2], NarrowNet(pop, 2).forward(obs[0])[0], atol=1e-5)
    assert torch.allclose(head2[:2], head1[:2])  # other members untouched

    # Removing units and layers: the batch still equals each narrow network.
    with torch.no_grad():
        surgery.shrink_units(pop.net, pop.params[0], pop.arch, 0, 1, 40)
        surgery.remove_layer(pop.net, pop.params[1], pop.arch, 1)
    assert pop.arch.widths[0, 1] == 40 and pop.arch.widths[1, 1] == 0
    pop.refresh_masks()
    head3, value3 = _outputs(pop, obs)
    for p in (0, 1):
        want_head, want_value = NarrowNet(pop, p).forward(obs[0])
        assert torch.allclose(head3[p], want_head, atol=1e-5)
        assert torch.allclose(value3[p], want_value, atol=1e-5)


def test_uniform_init_is_pytorchs_linear_default_on_active_units_only():
    pop = varied_population(CONTINUOUS, init="uniform", widths=([64, 64], [32, 48], [16]))
    layout = pop.net.layout
    for p, (fan_in, width) in enumerate([(5, 64), (5, 32), (5, 16)]):
        w0, b0 = layout.view(pop.params[p], "actor.w0"), layout.view(pop.params[p], "actor.b0")
        bound = 1 / np.sqrt(fan_in)
        active = w0[:fan_in, :width]
        assert active.abs().max() <= bound and active.abs().max() > 0.8 * bound
        assert abs(float(active.std()) - bound / np.sqrt(3)) < 0.15 * bound  # U(-b, b) has std b/sqrt(3)
        assert b0[:width].abs().max() <= bound and b0[:width].abs().max() > 0.5 * bound
        if width == 64:  # enough biases to check their spread too
            assert abs(float(b0[:width].std()) - bound / np.sqrt(3)) < 0.15 * bound
        assert not w0[:, width:].any() and not b0[width:].any()  # inactive units stay exactly zero
    # The policy head is drawn like any other linear layer, not shrunk by gain 0.01.
    last = 48
    pi_w = layout.view(pop.params[1], "pi.w")
    assert pi_w[:last].abs().max() > 0.5 / np.sqrt(last) and not pi_w[last:].any()
    assert layout.view(pop.params[1], "pi.b").abs().max() > 0
    ortho = varied_population(CONTINUOUS, init="orthogonal")
    assert ortho.net.layout.view(ortho.params[1], "pi.w").abs().max() < 0.02


def test_layout_fits_the_widest_and_deepest_member():
    pop = varied_population(DISCRETE, widths=([16, 16], [24]), activations=("tanh", "tanh"), max_width=256)
    assert pop.masks.width == 24 and pop.masks.depth == 2
    assert pop.net.cap == Capacity(24, 2)
    obs = torch.randn(1, 3, pop.net.obs_dim)
    head, _ = _outputs(pop, obs)
    pop.gather(np.array([1, 1]))  # the deep member is gone: the layout shrinks, outputs stay
    pop.refresh_masks()
    assert pop.net.cap == Capacity(24, 1)
    assert torch.equal(_outputs(pop, obs)[0], head[[1, 1]])


def test_layout_views_share_storage():
    layout = ParamLayout()
    layout.add("a", (2, 3))
    layout.add("b", (4,))
    flat = torch.zeros(5, layout.size)
    layout.view(flat, "b")[1] = 7.0
    assert layout.size == 10 and flat[1, 6:].eq(7.0).all() and flat[0].eq(0).all()
    with pytest.raises(ValueError):
        layout.add("a", (1,))


def test_per_member_activation_matches_each_function():
    pop = varied_population(DISCRETE, widths=([8], [8], [8]), activations=("relu", "tanh", "elu"))
    assert pop.net.towers == 2  # the masks serve actor rows, then critic rows
    z = torch.randn(6, 4, 8)
    out = pop.masks.activate(z)
    for tower in (0, 3):
        assert torch.equal(out[tower], torch.relu(z[tower]))
        assert torch.equal(out[tower + 1], torch.tanh(z[tower + 1]))
        assert torch.equal(out[tower + 2], torch.nn.functional.elu(z[tower + 2]))
    assert np.array_equal(pop.arch.n_layers, [1, 1, 1])


@pytest.mark.parametrize("majority", [None, "gelu", "relu"])
def test_mixed_activations_have_each_functions_gradient(majority):
    """Every activation a member can have, six groups in one batch: values and gradients equal
    each function applied to its own rows by autograd. With a majority, its function runs on every
    row first and the others overwrite their rows (arch._grouped): the oracle is unchanged."""
    from evorl_cli.config import ACTIVATIONS
    from evorl_cli.nets.arch import ACTIVATION_FNS, Architecture

    acts = [i % len(ACTIVATIONS) for i in range(2 * len(ACTIVATIONS))]
    if majority is not None:
        acts += [ACTIVATIONS.index(majority)] * 5
    size, acts = len(acts), np.array(acts)
    arch = Architecture(np.full((size, 1), 8), acts, np.zeros(size, dtype=np.int64))
    masks = arch.compile(torch.device("cpu"), 8, 1)
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(size, 5, 8, generator=g, dtype=torch.float64) * 2).requires_grad_()
    grad = torch.randn(size, 5, 8, generator=g, dtype=torch.float64)
    (got,) = torch.autograd.grad(masks.activate(z), z, grad)
    want = torch.stack([ACTIVATION_FNS[ACTIVATIONS[a]](z[p]) for p, a in enumerate(acts)])
    (want_grad,) = torch.autograd.grad(want, z, grad)
    with torch.no_grad():
        torch.testing.assert_close(masks.activate(z), want)
    torch.testing.assert_close(got, want_grad)


def test_fast_tanh_matches_torch_tanh_in_value_and_gradient():
    from evorl_cli.nets.functional import tanh

    x = (torch.randn(4, 256, 64) * 3).requires_grad_()  # large enough for the sigmoid form
    ref = x.detach().clone().requires_grad_()
    y, y_ref = tanh(x), torch.tanh(ref)
    assert (y - y_ref).abs().max() < 3e-7
    grad = torch.randn_like(y)
    y.backward(grad)
    y_ref.backward(grad)
    # the derivative 1 - y^2 inherits y's error of a few float32 ulps
    assert ((x.grad - ref.grad).abs() <= 1e-6 * grad.abs()).all()
    with torch.no_grad():
        assert (tanh(x) - y_ref).abs().max() < 3e-7


@pytest.mark.parametrize("starts", [False, True], ids=["no-resets", "resets"])
def test_hand_written_lstm_bptt_passes_gradcheck(starts):
    from evorl_cli.nets.lstm_bptt import lstm_sequence

    g = torch.Generator().manual_seed(0)
    size, length, batch, hidden = 2, 5, 3, 4
    args = [torch.randn(size, length, batch, 4 * hidden, generator=g, dtype=torch.float64),
            torch.randn(size, hidden, 4 * hidden, generator=g, dtype=torch.float64) * 0.5,
            torch.randn(size, batch, hidden, generator=g, dtype=torch.float64),
            torch.randn(size, batch, hidden, generator=g, dtype=torch.float64)]
    args = [a.requires_grad_() for a in args]
    keep = (torch.rand(size, length, batch, 1, generator=g) > 0.3).double() if starts else None
    # every output (all h, last h, last c) gets a gradient, as in training
    assert torch.autograd.gradcheck(lambda *a: lstm_sequence(*a, keep), args)


def test_stacked_towers_follow_in_place_parameter_changes():
    """Rollouts reuse the stacked actor/critic parameters until the parameters change; an in-place
    write (optimiser step, mutation) must be seen by the next step, as a fresh stack sees it."""
    pop = varied_population(DISCRETE)
    obs = torch.randn(pop.size, 5, pop.net.obs_dim)
    with torch.no_grad():
        before = pop.forward_normalized(obs)[0]
        pop.params.add_(0.1 * torch.randn_like(pop.params))
        after = pop.forward_normalized(obs)[0]
        fresh = pop.net.forward(pop.views, obs, pop.masks, None, pop.net.step_params(pop.views, pop.masks))[0]
    assert not torch.allclose(before, after)
    assert torch.equal(after, fresh)
    # The optimiser's step (PyTorch's fused kernel on the CPU, which writes without bumping the
    # version counter by itself) is seen too.
    for fused in (True, False):
        grad = torch.randn_like(pop.params)
        pop.adam.step(pop.params, grad, torch.full((pop.size,), 0.1), torch.ones(pop.size), fused=fused)
        with torch.no_grad():
            stepped = pop.forward_normalized(obs)[0]
            fresh = pop.net.forward(pop.views, obs, pop.masks, None, pop.net.step_params(pop.views, pop.masks))[0]
        assert not torch.allclose(stepped, after) and torch.equal(stepped, fresh)
        after = stepped
