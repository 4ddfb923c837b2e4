"""One LSTM layer over a sequence, for every member at once, with back-propagation through time
written out by hand.

Autograd would record about a dozen small ops per time step and replay each one backwards with
its own bookkeeping; at our sizes that overhead, not the arithmetic, is the cost. Here the forward
pass keeps only what the backward needs (the gate activations, the cell states and the inputs of
each step), and the backward pass runs one short loop of fused ops per step. Everything that does
not depend on the recurrence (gate derivatives, the recurrent weight gradient) is done for all
steps in one op. The result equals autograd through `torch.nn.LSTMCell` (tests check it with
gradcheck and against the cells).

Inside, the forward's tensors are time-major ([L, P, B, ...]), so each step reads and writes one
contiguous block. The gate gradients are member-major ([P, L, B, 4H], as the input projection comes
in), so they are the input's gradient as they are, and the recurrent weight gradient is a single
batched matmul over all L*B rows. Gate order is i, f, g, o (as `torch.nn.LSTM`); the g gate's
weights come in doubled (`prescale`), so that one sigmoid serves all four gates.
"""

from __future__ import annotations

import torch

from evorl_cli.nets.functional import tanh_values


def _gate_scale(four_h: int, like: torch.Tensor) -> torch.Tensor:
    """2 for the g gate's pre-activations, 1 elsewhere: tanh(z) = 2 sigmoid(2z) - 1 lets one sigmoid
    serve all four gates."""
    scale = like.new_ones(four_h)
    scale[four_h // 2: 3 * four_h // 4] = 2.0
    return scale


def prescale(*weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Input/recurrent weights or biases [..., 4H] with the g gate's columns doubled, as `_cell`
    (and so `lstm_step` and `lstm_sequence`) reads them."""
    scale = _gate_scale(weights[0].shape[-1], weights[0])
    return tuple(w * scale for w in weights)


def _cell(gates: torch.Tensor, c: torch.Tensor, c_out: torch.Tensor | None = None,
          h_out: torch.Tensor | None = None, tanh_c_out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The cell update from prescaled pre-activations `gates` [..., 4H], which become the gate
    activations (i, f, g, o) in place. Returns (h, c); tanh(c) goes to `tanh_c_out` when given."""
    hidden = c.shape[-1]
    gates.sigmoid_()
    gates[..., 2 * hidden: 3 * hidden].mul_(2.0).sub_(1.0)
    i, f, g, o = gates.unflatten(-1, (4, hidden)).unbind(-2)
    c = torch.addcmul(f * c, i, g, out=c_out)
    return torch.mul(o, tanh_values(c, out=tanh_c_out), out=h_out), c


def lstm_step(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
              bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step without autograd (rollouts, evaluation): `x` [P, B, in], state `h`, `c` [P, B, H],
    weights `prescale`d, `bias` [P, 1, 4H] both biases summed. Returns (h, c)."""
    gates = torch.baddbmm(bias, x, w_ih).baddbmm_(h, w_hh)
    return _cell(gates, c)


def _forward(gi: torch.Tensor, w_hh: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
             keep: torch.Tensor | None):
    """Returns (hs, cs, tanh_cs, gates), each [L, P, B, ...]: h, c and tanh(c) after every step
    and the gate activations (i, f, g, o) of every step."""
    size, length, batch, four_h = gi.shape
    hs, cs, tanh_cs = (gi.new_empty(length, size, batch, four_h // 4) for _ in range(3))
    gates_all = gi.new_empty(length, size, batch, four_h)
    for t in range(length):
        if keep is not None:  # an episode starts here: the state it gets is zero
            h = h * keep[:, t]
            c = c * keep[:, t]
        gates = torch.baddbmm(gi[:, t], h, w_hh, out=gates_all[t])
        h, c = _cell(gates, c, cs[t], hs[t], tanh_cs[t])
    return hs, cs, tanh_cs, gates_all


def _state_fed(first: torch.Tensor, after: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """The state each step was fed, [L, P, B, H]: the state before it, zeroed where an episode started."""
    fed = torch.cat([first.unsqueeze(0), after[:-1]])
    return fed if keep is None else fed * keep.transpose(0, 1)


class _LSTMSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gi, w_hh, h, c, keep):
        hs, cs, tanh_cs, gates = _forward(gi, w_hh, h, c, keep)
        ctx.save_for_backward(w_hh, h, c, keep, hs, cs, tanh_cs, gates)
        return hs.transpose(0, 1), hs[-1].clone(), cs[-1].clone()

    @staticmethod
    def backward(ctx, d_hs, d_h_last, d_c_last):
        w_hh, h0, c0, keep, hs, cs, tc, gates = ctx.saved_tensors
        length, size, batch, four_h = gates.shape
        hidden = four_h // 4
        i, f, g, o = gates.unflatten(-1, (4, hidden)).unbind(-2)
        c_in = _state_fed(c0, cs, keep)
        # Per step, with dh and dc the gradients reaching h_t and c_t:
        #   dc += dh * o * (1 - tanh(c)^2)
        #   d pre-activation = [dc * g * i(1-i), dc * c_prev * f(1-f), dc * i * (1-g^2), dh * tanh(c) * o(1-o)]
        # The factors after dc and dh do not depend on the recurrence: all steps at once, each one
        # fused op (sigmoid_backward(x, s) = x * s(1-s), tanh_backward(x, t) = x * (1-t^2)).
        sigmoid_backward, tanh_backward = torch.ops.aten.sigmoid_backward, torch.ops.aten.tanh_backward
        dc_from_h = tanh_backward(o, tc)
        factors = gates.new_empty(length, size, batch, 3, hidden)
        sigmoid_backward.grad_input(g, i, grad_input=factors[..., 0, :])
        sigmoid_backward.grad_input(c_in, f, grad_input=factors[..., 1, :])
        # (the g gate's inputs come in doubled, so its gradient with respect to them is halved)
        tanh_backward.grad_input(i, g, grad_input=factors[..., 2, :]).mul_(0.5)
        factor_o = sigmoid_backward(tc, o)
        keep_t = None if keep is None else keep.transpose(0, 1)
        # c_{t-1} reaches c_t through the forget gate and `keep` (0 where an episode started at t).
        carry_c = f if keep is None else f * keep_t
        # Member-major ([P, L, B, 4H], as `gi` comes in): the gradient of `gi` and the rows of the
        # weight gradient's matmul are then this tensor as it is, with no copies.
        d_gates = gates.new_empty(size, length, batch, four_h)
        w_hh_t = w_hh.transpose(1, 2)
        d_hs = None if d_hs is None else d_hs.transpose(0, 1)
        dh = torch.zeros_like(h0) if d_h_last is None else d_h_last
        dc = torch.zeros_like(c0) if d_c_last is None else d_c_last
        for t in range(length - 1, -1, -1):
            if d_hs is not None:
                dh = dh + d_hs[t]
            dc = torch.addcmul(dc, dh, dc_from_h[t])
            d_t = d_gates[:, t]
            torch.mul(dc.unsqueeze(-2), factors[t], out=d_t[..., : 3 * hidden].unflatten(-1, (3, hidden)))
            torch.mul(dh, factor_o[t], out=d_t[..., 3 * hidden:])
            dh = torch.bmm(d_t, w_hh_t)
            if keep_t is not None:
                dh = dh * keep_t[t]
            dc = dc * carry_c[t]
        h_in = _state_fed(h0, hs, keep).transpose(0, 1).reshape(size, length * batch, hidden)
        d_w_hh = torch.bmm(h_in.transpose(1, 2), d_gates.view(size, length * batch, four_h))
        return d_gates, d_w_hh, dh, dc, None


def lstm_sequence(gi: torch.Tensor, w_hh: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
                  keep: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run one LSTM layer over L steps for every member.

    `gi` [P, L, B, 4H]: each step's input projection plus both biases; `w_hh` [P, H, 4H]; both
    `prescale`d (the input weights and biases can be prescaled before the projection, which spares
    scaling `gi` itself). Gradients are with respect to these prescaled inputs;
    `h`, `c` [P, B, H]: the state before the first step; `keep` [P, L, B, 1] or None: 0 where an
    episode starts at step t (the state fed to that step is zeroed).
    Returns (h of every step [P, L, B, H], last h, last c)."""
    if torch.is_grad_enabled() and any(x.requires_grad for x in (gi, w_hh, h, c)):
        return _LSTMSequence.apply(gi, w_hh, h, c, keep)
    hs, cs, _, _ = _forward(gi, w_hh, h, c, keep)
    return hs.transpose(0, 1), hs[-1], cs[-1]
