"""Architecture surgery on one member: widen or narrow an MLP layer, add or drop the last layer,
widen or narrow the recurrent state. Each function edits the member's flat parameter row and its
`Architecture` record together, so the two never disagree.

Growth keeps the member's function (new units get incoming weights only; what they feed stays
zero, see `MLPEncoder`); removal changes it (what the removed units computed is gone). The
per-layer block edits are the encoders' own (`MLPEncoder`, `RNNCore`): they know the layout.
"""

from __future__ import annotations

import torch

from evorl_cli.nets.arch import Architecture
from evorl_cli.nets.policy import Branch, PolicyNet


def _mlp_fan_in(branch: Branch, arch: Architecture, p: int, layer: int) -> int:
    if layer > 0:
        return int(arch.widths[p, layer - 1])
    return int(arch.hidden[p]) if branch.rnn else branch.features


def _cut_head_rows(net: PolicyNet, row: torch.Tensor, width: int) -> None:
    """The heads read only the first `width` features (the new last layer's units)."""
    net.layout.view(row, "pi.w")[width:] = 0.0
    net.layout.view(row, "v.w")[width:] = 0.0


def grow_units(net: PolicyNet, row: torch.Tensor, arch: Architecture, p: int, layer: int, new: int,
               gen: torch.Generator) -> None:
    """Widen MLP `layer` of member `p` to `new` units without changing its outputs."""
    old = int(arch.widths[p, layer])
    for branch in net.branches.values():
        branch.mlp.grow_units(row, layer, _mlp_fan_in(branch, arch, p, layer), old, new, gen)
    arch.widths[p, layer] = new


def shrink_units(net: PolicyNet, row: torch.Tensor, arch: Architecture, p: int, layer: int, new: int) -> None:
    """Narrow MLP `layer` of member `p` to its first `new` units (what the others fed is cut too)."""
    for branch in net.branches.values():
        branch.mlp.shrink_units(row, layer, new)
    if layer == int(arch.n_layers[p]) - 1:
        _cut_head_rows(net, row, new)
    arch.widths[p, layer] = new


def add_layer(net: PolicyNet, row: torch.Tensor, arch: Architecture, p: int, gen: torch.Generator) -> int:
    """Append an MLP layer to member `p`, as wide as its last one (fresh orthogonal init); returns its width."""
    depth = int(arch.n_layers[p])
    width = int(arch.widths[p, depth - 1])
    for branch in net.branches.values():
        branch.mlp.init_layer(row, depth, width, width, gen)
    arch.widths[p, depth] = width
    return width


def remove_layer(net: PolicyNet, row: torch.Tensor, arch: Architecture, p: int) -> None:
    """Drop member `p`'s last MLP layer (it must have two or more); the heads then read the layer before."""
    depth = int(arch.n_layers[p])
    assert depth > 1, "a member keeps at least one hidden layer"
    for branch in net.branches.values():
        branch.mlp.zero_layer(row, depth - 1)
    _cut_head_rows(net, row, int(arch.widths[p, depth - 2]))
    arch.widths[p, depth - 1] = 0


def grow_hidden(net: PolicyNet, row: torch.Tensor, arch: Architecture, p: int, new: int,
                gen: torch.Generator) -> None:
    """Widen member `p`'s recurrent state to `new` units, gate-aware and function-preserving."""
    for branch in net.branches.values():
        branch.rnn.grow(row, branch.features, int(arch.hidden[p]), new, gen)
    arch.hidden[p] = new


def shrink_hidden(net: PolicyNet, row: torch.Tensor, arch: Architecture, p: int, new: int) -> None:
    """Narrow member `p`'s recurrent state to its first `new` units in every gate (and cut what the
    MLP read from the others)."""
    for branch in net.branches.values():
        branch.rnn.shrink(row, new)
        branch.mlp.cut_inputs(row, new)
    arch.hidden[p] = new
