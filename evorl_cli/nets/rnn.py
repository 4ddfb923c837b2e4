"""A population of stacked LSTM or GRU cells written as explicit gate matmuls (vmap does not cover
`nn.LSTM`), batched over the leading member axis.

Weights are laid out gate-aware: `w_ih` is [in, gates, hidden] and `w_hh` [hidden, gates, hidden],
so widening the hidden state (and re-laying parameters out for more room) adds units to every gate
at once. Invariant, as in the MLP: the weights and biases of hidden units a member does not use are
zero. An unused LSTM unit then has i = f = o = 0.5 and g = 0, so its cell and hidden state stay
exactly 0 and it never influences anything; the same holds for GRU (n = 0, h' = h / 2 = 0).
"""

from __future__ import annotations

import torch

from evorl_cli.nets.functional import tanh
from evorl_cli.nets.layout import ParamLayout
from evorl_cli.nets.lstm_bptt import lstm_sequence, lstm_step, prescale
from evorl_cli.nets.mlp import orthogonal

GATES = {"lstm": 4, "gru": 3}


class RNNCore:
    """`layers` stacked cells of `hidden` units (the population's capacity) reading `in_dim` features."""

    def __init__(self, prefix: str, kind: str, in_dim: int, hidden: int, layers: int, layout: ParamLayout) -> None:
        if kind not in GATES:
            raise ValueError(f"unknown recurrent cell {kind}")
        self.prefix, self.kind, self.in_dim, self.hidden, self.layers = prefix, kind, in_dim, hidden, layers
        self.gates = GATES[kind]
        self.layout = layout
        for layer in range(layers):
            fan_in = in_dim if layer == 0 else hidden
            layout.add(f"{prefix}.w_ih{layer}", (fan_in, self.gates, hidden))
            layout.add(f"{prefix}.w_hh{layer}", (hidden, self.gates, hidden))
            layout.add(f"{prefix}.b_ih{layer}", (self.gates, hidden))
            layout.add(f"{prefix}.b_hh{layer}", (self.gates, hidden))

    @property
    def state_size(self) -> int:
        """Floats of recurrent state per env: h (and c for LSTM) of every layer."""
        return self.layers * self.hidden * (2 if self.kind == "lstm" else 1)

    def step_weights(self, p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What an LSTM `step` reads, made once per change of the parameters: per layer, the weights
        with the g gate prescaled (see `lstm_bptt`) and both biases folded into one."""
        if self.kind != "lstm":
            return {}
        weights = {}
        for layer in range(self.layers):
            w_ih, w_hh, b_ih, b_hh = self._weights(p, layer)
            names = (f"{self.prefix}.step_w_ih{layer}", f"{self.prefix}.step_w_hh{layer}", f"{self.prefix}.step_b{layer}")
            weights.update(zip(names, prescale(w_ih, w_hh, b_ih + b_hh)))
        return weights

    def step(self, p: dict[str, torch.Tensor], x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step. `x` [P, B, in], `state` [P, B, state_size] -> (top layer h [P, B, H], new state).
        Reads `step_weights` from `p` when they are there (passes without autograd)."""
        if f"{self.prefix}.step_b0" not in p:
            out, state = self.sequence(p, x.unsqueeze(2), state, None)
            return out[:, :, 0], state
        hidden, final = self.hidden, []
        for layer in range(self.layers):
            s = state[..., 2 * layer * hidden:2 * (layer + 1) * hidden]
            x, c = lstm_step(x, s[..., :hidden], s[..., hidden:], p[f"{self.prefix}.step_w_ih{layer}"],
                             p[f"{self.prefix}.step_w_hh{layer}"], p[f"{self.prefix}.step_b{layer}"])
            final += [x, c]
        return x, torch.cat(final, dim=-1)

    def _weights(self, p: dict[str, torch.Tensor], layer: int) -> tuple[torch.Tensor, ...]:
        """Layer `layer`'s w_ih [P, in, G*H], w_hh [P, H, G*H], b_ih and b_hh [P, 1, G*H]."""
        size, width = p[f"{self.prefix}.w_hh{layer}"].shape[0], self.gates * self.hidden
        return (p[f"{self.prefix}.w_ih{layer}"].view(size, -1, width), p[f"{self.prefix}.w_hh{layer}"].view(size, -1, width),
                p[f"{self.prefix}.b_ih{layer}"].view(size, 1, width), p[f"{self.prefix}.b_hh{layer}"].view(size, 1, width))

    def sequence(self, p: dict[str, torch.Tensor], x: torch.Tensor, state: torch.Tensor,
                 starts: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """`x` [P, B, L, in] from `state` [P, B, S], zeroing the state where `starts` [P, B, L] is 1.

        Layer by layer (as cuDNN does): each layer's input projections for all L steps are one
        matmul, so only the recurrent matmul and the gate arithmetic run per step. Inside, the
        steps are time-major ([P, L, B, ...]) so that each step is one contiguous block.
        Returns (top layer h for every step [P, B, L, H], state after the last step)."""
        size, batch, length = x.shape[:3]
        hidden = self.hidden
        lstm = self.kind == "lstm"
        per_layer = hidden * (2 if lstm else 1)
        x = x.transpose(1, 2)
        keep = None if starts is None else (1.0 - starts).transpose(1, 2).unsqueeze(-1)  # [P, L, B, 1]
        final = []
        for layer in range(self.layers):
            s = state[..., layer * per_layer:(layer + 1) * per_layer]
            h = s[..., :hidden]
            w_ih, w_hh, b_ih, b_hh = self._weights(p, layer)
            if lstm:  # both biases folded into the input projection, the g gate doubled (lstm_bptt)
                w_ih, w_hh, bias = prescale(w_ih, w_hh, b_ih + b_hh)
            else:
                bias = b_ih
            gi = torch.baddbmm(bias, x.reshape(size, length * batch, -1), w_ih).view(size, length, batch, -1)
            if lstm:  # gate order i, f, g, o (as torch.nn.LSTM), back-propagated by hand
                x, h, c = lstm_sequence(gi, w_hh, h, s[..., hidden:], keep)
                final += [h, c]
            else:
                x, h = self._gru_sequence(gi, w_hh, b_hh, h, keep)
                final.append(h)
        return x.transpose(1, 2), torch.cat(final, dim=-1)

    def _gru_sequence(self, gi: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor, h: torch.Tensor,
                      keep: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """GRU layer over time-major `gi` [P, L, B, 3H] (gate order r, z, n, as torch.nn.GRU)."""
        size, length, batch = gi.shape[:3]
        # unbind, not indexing: each index's backward would write a full-size zero tensor.
        gi_steps = gi.view(size, length, batch, 3, self.hidden).unbind(1)
        keeps = None if keep is None else keep.unbind(1)
        outs = []
        for t in range(length):
            if keeps is not None:
                h = h * keeps[t]
            gh = torch.baddbmm(b_hh, h, w_hh).view(size, batch, 3, self.hidden)
            gi_r, gi_z, gi_n = gi_steps[t].unbind(2)
            gh_r, gh_z, gh_n = gh.unbind(2)
            r, z = torch.sigmoid(gi_r + gh_r), torch.sigmoid(gi_z + gh_z)
            n = tanh(gi_n + r * gh_n)
            h = n + z * (h - n)
            outs.append(h)
        return torch.stack(outs, dim=1), h

    # --- per-member surgery --------------------------------------------------------------------

    def init_member(self, row: torch.Tensor, in_active: int, hidden: int, gen: torch.Generator) -> None:
        """Orthogonal weights (gain 1) on member `row`'s first `hidden` units, zero biases."""
        for name in self.layout.names(f"{self.prefix}."):
            self.layout.view(row, name).zero_()
        self.grow(row, in_active, 0, hidden, gen)

    def shrink(self, row: torch.Tensor, new: int) -> None:
        """Switch off hidden units [new, max) in every gate of every layer: what feeds them (input
        and recurrent columns, biases) and what they feed (their recurrent rows, the next layer's
        input rows) is zeroed, so they stay exactly 0 (see the module docstring). The member's
        function changes: selection judges it."""
        for layer in range(self.layers):
            w_ih = self.layout.view(row, f"{self.prefix}.w_ih{layer}")
            w_hh = self.layout.view(row, f"{self.prefix}.w_hh{layer}")
            w_ih[:, :, new:] = 0.0
            w_hh[:, :, new:] = 0.0
            w_hh[new:] = 0.0
            if layer > 0:
                w_ih[new:] = 0.0
            self.layout.view(row, f"{self.prefix}.b_ih{layer}")[:, new:] = 0.0
            self.layout.view(row, f"{self.prefix}.b_hh{layer}")[:, new:] = 0.0

    def grow(self, row: torch.Tensor, in_active: int, old: int, new: int, gen: torch.Generator) -> None:
        """Switch on hidden units [old, new) in every gate of every layer, keeping the function.

        The new units get weights *from* the active inputs and units; everything *from* them (their
        recurrent rows, the next layer's input rows, whatever reads the top layer) stays zero, so
        the member's outputs are unchanged until training gives those weights a value."""
        for layer in range(self.layers):
            # Growing, new units read the previous layer's old units only (its new units feed
            # nothing yet); a fresh cell reads all of them.
            fan_in = in_active if layer == 0 else (old or new)
            w_ih = self.layout.view(row, f"{self.prefix}.w_ih{layer}")
            w_hh = self.layout.view(row, f"{self.prefix}.w_hh{layer}")
            if fan_in:
                w_ih[:fan_in, :, old:new] = orthogonal(fan_in, self.gates * (new - old), 1.0, gen).view(
                    fan_in, self.gates, new - old)
            if old:
                w_hh[:old, :, old:new] = orthogonal(old, self.gates * (new - old), 1.0, gen).view(
                    old, self.gates, new - old)
            if not old:  # a fresh cell: its own recurrence too
                w_hh[:new, :, :new] = orthogonal(new, self.gates * new, 1.0, gen).view(new, self.gates, new)
